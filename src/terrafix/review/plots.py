"""The review page's figures (matplotlib, Agg: no display needed), each from the flight log.

Times on every x axis are seconds since the log's first record. Each function draws one PNG
and returns its path; an input with nothing to draw is the caller's business (the page then
says "not in this log" instead of showing an empty plot).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from terrafix.eval.metrics import radius95_m
from terrafix.eval.records import LABEL_ORDER, ResultTrack

log = logging.getLogger(__name__)

LABEL_COLOURS = {
    "satellite_anchored": "#2ca02c",
    "visual_propagated": "#1f77b4",
    "dead_reckoned": "#ff7f0e",
    "no_fix": "#d62728",
}
_DPI = 100


@dataclass(frozen=True, slots=True)
class MapImage:
    """Cached map imagery under the track: (H, W) uint8, and how lon/lat map to its pixels
    (global Web-Mercator pixels at zoom z minus the image's origin)."""

    image: np.ndarray
    z: int
    px_x0: int
    px_y0: int
    metres_per_px: float

    def to_px(self, lon_deg: np.ndarray, lat_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from terrafix.geo.tiles import lonlat_to_global_px

        x, y = lonlat_to_global_px(np.asarray(lon_deg, float), np.asarray(lat_deg, float),
                                   self.z)
        return np.asarray(x) - self.px_x0, np.asarray(y) - self.px_y0


def map_under(cache_root: Path, lon_deg: np.ndarray, lat_deg: np.ndarray,
              margin_deg: float = 0.0015, max_px: int = 2000) -> tuple[MapImage | None, str]:
    """A mosaic of the cache around the track at the finest zoom that fits `max_px`, opened
    read-only; (None, why) when there is no usable cache."""
    from terrafix.tiles import open_store

    if not Path(cache_root).is_dir():
        return None, f"no map cache at {cache_root}"
    try:
        store = open_store(cache_root, read_only=True, reconcile="none", create=False)
    except Exception as exc:
        return None, f"map cache {cache_root} cannot be opened read-only ({exc})"
    try:
        zooms = sorted(store.summary().zooms, reverse=True)
        if not zooms:
            return None, f"map cache {cache_root} holds no tiles"
        west, east = float(np.min(lon_deg)) - margin_deg, float(np.max(lon_deg)) + margin_deg
        south, north = float(np.min(lat_deg)) - margin_deg, float(np.max(lat_deg)) + margin_deg
        from terrafix.geo.tiles import lonlat_to_global_px

        for z in zooms:
            x0, y0 = lonlat_to_global_px(west, north, z)
            x1, y1 = lonlat_to_global_px(east, south, z)
            if max(x1 - x0, y1 - y0) <= max_px or z == zooms[-1]:
                m = store.mosaic(west, south, east, north, z)
                if not m.valid.any():
                    return None, f"map cache {cache_root} has no tile under the track at z{z}"
                lat_c = math.radians((south + north) / 2)
                mpp = 40075016.686 * math.cos(lat_c) / (256 * 2**z)
                return MapImage(m.image, z, m.px_x0, m.px_y0, mpp), ""
        return None, "no zoom fits"  # pragma: no cover - the loop always returns
    except Exception as exc:
        return None, f"map cache {cache_root}: mosaic failed ({exc})"
    finally:
        store.close()


def _local_en_m(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float
                ) -> tuple[np.ndarray, np.ndarray]:
    r = 6378137.0
    e = np.radians(lon - lon0) * r * math.cos(math.radians(lat0))
    n = np.radians(lat - lat0) * r
    return e, n


def plot_track(path: Path, track: ResultTrack, fixes: list[dict[str, Any]],
               background: MapImage | None, note: str,
               truth_lat_lon: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """The estimate coloured by source label, accepted map fixes as crosses, over the map
    (or on east/north metre axes from the first point without one)."""
    ok = np.isfinite(track.lat_deg) & np.isfinite(track.lon_deg)
    fig, ax = plt.subplots(figsize=(8, 7), dpi=_DPI)
    lat0, lon0 = float(track.lat_deg[ok][0]), float(track.lon_deg[ok][0])

    def xy(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if background is not None:
            return background.to_px(lon, lat)
        return _local_en_m(lat, lon, lat0, lon0)

    if background is not None:
        ax.imshow(background.image, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"track over the cached map (z{background.z}, "
                     f"{background.metres_per_px:.2f} m/px)", fontsize=10)
    else:
        ax.set_xlabel("east (m)")
        ax.set_ylabel("north (m)")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
        ax.set_title(f"track (no map imagery: {note})", fontsize=9)
    if truth_lat_lon is not None:
        tx, ty = xy(*truth_lat_lon)
        ax.plot(tx, ty, "-", color="black", lw=1.0, label="truth")
    for name in LABEL_ORDER:
        m = ok & (track.label == name)
        if np.any(m):
            x, y = xy(track.lat_deg[m], track.lon_deg[m])
            ax.plot(x, y, ".", ms=2.5, color=LABEL_COLOURS[name], label=name)
    acc = [(f["lat_deg"], f["lon_deg"]) for f in fixes
           if f.get("fix_fused") and f.get("lat_deg") is not None]
    if acc:
        a = np.array(acc, dtype=float)
        x, y = xy(a[:, 0], a[:, 1])
        ax.plot(x, y, "x", ms=5, color="white" if background is not None else "black",
                mew=1.2, label="fused map fix")
    x, y = xy(track.lat_deg[ok][:1], track.lon_deg[ok][:1])
    ax.plot(x, y, "^", ms=10, color="yellow", mec="black", label="start")
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    fig.tight_layout()
    return _save(fig, path)


def _label_spans(ax: plt.Axes, t_s: np.ndarray, labels: np.ndarray) -> None:
    """Background colour by label (thin, so the curves stay readable)."""
    if len(t_s) < 2:
        return
    start = 0
    for i in range(1, len(t_s) + 1):
        if i == len(t_s) or labels[i] != labels[start]:
            ax.axvspan(t_s[start], t_s[min(i, len(t_s) - 1)],
                       color=LABEL_COLOURS.get(str(labels[start]), "#999"), alpha=0.10, lw=0)
            start = i


def plot_confidence(path: Path, t_s: np.ndarray, track: ResultTrack,
                    err: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Reported 95% radius (log scale) and anchor age over time; with truth, the error."""
    r95 = radius95_m(track.cov_p_ned_m2[:, :2, :2])
    age = np.where(np.isfinite(track.anchor_age_s), track.anchor_age_s, np.nan)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5.5), dpi=_DPI, sharex=True)
    _label_spans(a1, t_s, track.label)
    a1.plot(t_s, r95, color="#333", lw=1.2, label="reported 95% radius")
    if err is not None:
        a1.plot(err[0], err[1], color="#d62728", lw=0.8, label="error vs truth")
    a1.set_yscale("log")
    a1.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    a1.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 3.0, 5.0)))
    a1.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    a1.set_ylabel("metres")
    a1.grid(alpha=0.3, which="both")
    a1.legend(fontsize=8, loc="upper left")
    _label_spans(a2, t_s, track.label)
    a2.plot(t_s, age, color="#1f77b4", lw=1.2)
    if not np.any(np.isfinite(age)):
        a2.text(0.5, 0.5, "never anchored to the map", transform=a2.transAxes,
                ha="center", va="center", color="#666")
    a2.set_ylabel("anchor age (s)")
    a2.set_xlabel("flight time (s)")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_timeline(path: Path, t_s: np.ndarray, track: ResultTrack,
                  events: list[tuple[float, str]]) -> Path:
    """Source label, GNSS trust and failsafe as bands; integrity events as ticks."""
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=_DPI)
    for name in LABEL_ORDER:
        m = track.label == name
        if np.any(m):
            ax.scatter(t_s[m], np.full(int(m.sum()), 3.0), marker="|", s=120,
                       color=LABEL_COLOURS[name], label=name)
    trusted = track.gnss_trusted.astype(bool)
    ax.scatter(t_s[trusted], np.full(int(trusted.sum()), 2.0), marker="|", s=120,
               color="#2ca02c", label="GNSS trusted")
    ax.scatter(t_s[~trusted], np.full(int((~trusted).sum()), 2.0), marker="|", s=120,
               color="#999999", label="GNSS not trusted")
    fs = track.failsafe.astype(bool)
    if np.any(fs):
        ax.scatter(t_s[fs], np.full(int(fs.sum()), 1.0), marker="|", s=120, color="#d62728",
                   label="failsafe")
    kinds = sorted({k for _, k in events})
    cmap = plt.get_cmap("tab10")
    for i, kind in enumerate(kinds):
        ts = [t for t, k in events if k == kind]
        ax.scatter(ts, np.zeros(len(ts)), marker="v", s=40, color=cmap(i % 10), label=kind)
    ax.set_yticks([0, 1, 2, 3], ["events", "failsafe", "GNSS", "label"])
    ax.set_ylim(-0.6, 3.6)
    ax.set_xlabel("flight time (s)")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.28))
    fig.tight_layout()
    return _save(fig, path)


def plot_output(path: Path, t_s: np.ndarray, topic: str) -> Path:
    """Messages per second and the gap before each message (250 ms limit drawn)."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5), dpi=_DPI, sharex=True)
    edges = np.arange(math.floor(t_s[0]), math.ceil(t_s[-1]) + 1.0)
    counts, _ = np.histogram(t_s, bins=edges) if len(edges) > 1 else (np.array([]), edges)
    a1.step(edges[:-1], counts, where="post", color="#1f77b4")
    a1.axhspan(5, 10, color="#2ca02c", alpha=0.12, label="required 5-10 Hz")
    a1.set_ylabel("messages / s")
    a1.set_ylim(0, max(12.0, float(counts.max()) + 1.0 if len(counts) else 12.0))
    a1.set_title(f"{topic}: output rate and gaps", fontsize=10)
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    gaps = np.diff(t_s) * 1000.0
    a2.plot(t_s[1:], gaps, ".", ms=2, color="#333")
    a2.axhline(250.0, color="#d62728", lw=1, label="max gap 250 ms")
    a2.set_ylabel("gap (ms)")
    a2.set_ylim(0, max(300.0, float(gaps.max()) * 1.1))
    a2.set_xlabel("flight time (s)")
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_latency(path: Path, t_s: np.ndarray, total_ms: np.ndarray, registered: np.ndarray,
                 stage_p50_ms: dict[str, float]) -> Path:
    """Capture -> output latency per frame (400/500 ms limits) and the median per stage."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=_DPI,
                                 gridspec_kw={"width_ratios": [2.2, 1]})
    a1.plot(t_s[~registered], total_ms[~registered], ".", ms=3, color="#1f77b4",
            label="odometry only")
    a1.plot(t_s[registered], total_ms[registered], ".", ms=4, color="#2ca02c",
            label="registered")
    a1.axhline(400, color="#ff7f0e", lw=1, label="p95 limit 400 ms")
    a1.axhline(500, color="#d62728", lw=1, label="max 500 ms")
    a1.set_xlabel("capture time (s)")
    a1.set_ylabel("capture → output (ms)")
    a1.set_ylim(0, max(600.0, float(np.nanmax(total_ms)) * 1.1 if len(total_ms) else 600.0))
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    names = list(stage_p50_ms)
    a2.barh(names[::-1], [stage_p50_ms[k] for k in names][::-1], color="#1f77b4")
    a2.set_xlabel("median ms from the previous stage")
    a2.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, path)


def plot_registration(path: Path, t_s: np.ndarray, outcome: list[str]) -> Path:
    """Each registration attempt as a dot on its outcome's row (fused, rejected by reason)."""
    kinds = sorted(set(outcome), key=lambda k: (k != "fused", k))
    row = {k: i for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.35 * len(kinds)), dpi=_DPI)
    ys = np.array([row[k] for k in outcome])
    colours = np.where(np.array(outcome) == "fused", "#2ca02c", "#d62728")
    ax.scatter(t_s, ys, c=colours, s=10, marker="o")
    ax.set_yticks(range(len(kinds)), [k[:40] for k in kinds], fontsize=8)
    ax.set_ylim(-0.7, len(kinds) - 0.3)
    ax.set_xlabel("capture time (s)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, path)


def plot_thermal(path: Path, t_temp_s: np.ndarray, temp_c: np.ndarray, t_load_s: np.ndarray,
                 load: np.ndarray) -> Path:
    """Accelerator temperature when the thermal source reports one, and the CPU load."""
    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=_DPI)
    load_ax = ax
    if np.any(np.isfinite(temp_c)):
        ax.plot(t_temp_s, temp_c, color="#d62728", label="accelerator °C")
        ax.set_ylabel("°C")
        load_ax = ax.twinx()
    if len(load):
        load_ax.plot(t_load_s, load, color="#555", lw=1.0, label="CPU load (1 min)")
        load_ax.set_ylabel("CPU load average (1 min)")
        load_ax.set_ylim(0, max(1.0, float(np.nanmax(load)) * 1.15))
    ax.set_xlabel("flight time (s)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
