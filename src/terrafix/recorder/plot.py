"""A one-page overview of a flight log: record rates per topic, the track, chosen fields.

What a reviewer looks at first after a flight: did every component keep recording (rates per
topic, gaps show as dips), where did the aircraft go, and how did a few chosen values evolve.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from terrafix.recorder.errors import RecorderError
from terrafix.recorder.export import track_topic
from terrafix.recorder.reader import FlightLog


def _get(payload: object, dotted: str) -> float | None:
    value = payload
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, (int, float)) else None


def plot_flight(
    log: FlightLog,
    out: Path,
    fields: Sequence[str] = (),
    track: str | None = None,
) -> Path:
    """Write the overview PNG to `out`. fields: 'topic:dotted.field' series to plot."""
    t0 = log.header.start_t_ns
    times: dict[str, list[int]] = {}
    series: dict[str, tuple[list[float], list[float]]] = {f: ([], []) for f in fields}
    wanted = {f.split(":", 1)[0] for f in fields}
    for f in fields:
        if ":" not in f:
            raise RecorderError(f"field {f!r}: expected 'topic:field' (e.g. /nav/solution:alt_m)")
    try:
        track = track or track_topic(log)
    except RecorderError:
        track = None
    lat: list[float] = []
    lon: list[float] = []
    for m in log.messages():
        times.setdefault(m.topic, []).append(m.t_ns)
        if m.topic in wanted or m.topic == track:
            p = m.payload()
            for f in fields:
                topic, name = f.split(":", 1)
                if topic == m.topic and (v := _get(p, name)) is not None:
                    series[f][0].append((m.t_ns - t0) / 1e9)
                    series[f][1].append(v)
            if m.topic == track:
                la, lo = _get(p, "lat_deg"), _get(p, "lon_deg")
                if la is not None and lo is not None:
                    lat.append(la)
                    lon.append(lo)
    panels = 1 + (track is not None) + len(fields)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3.2 * panels), squeeze=False)
    ax = axes[0][0]
    for topic, ts in sorted(times.items()):
        rel = (np.asarray(ts, dtype=np.int64) - t0) / 1e9
        if rel.size == 0:
            continue
        edges = np.arange(np.floor(rel.min()), np.ceil(rel.max()) + 1.0, 1.0)
        if edges.size < 2:
            edges = np.array([rel.min(), rel.min() + 1.0])
        counts, _ = np.histogram(rel, bins=edges)
        ax.step(edges[:-1], counts, where="post", label=topic)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("records / s")
    ax.set_title(f"flight {log.header.flight_id}: record rates")
    ax.legend(fontsize="small", ncol=2)
    k = 1
    if track is not None:
        ax = axes[k][0]
        ax.plot(lon, lat, "-", lw=1)
        ax.set_xlabel("longitude (deg)")
        ax.set_ylabel("latitude (deg)")
        ax.set_title(f"track ({track}, {len(lat)} points)")
        if lat:  # metres east and north on the same scale
            ax.set_aspect(1.0 / max(0.01, np.cos(np.radians(np.mean(lat)))), adjustable="datalim")
        k += 1
    for f in fields:
        ax = axes[k][0]
        xs, ys = series[f]
        ax.plot(xs, ys, ".-", ms=2, lw=0.8)
        ax.set_xlabel("time since start (s)")
        ax.set_title(f)
        k += 1
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
