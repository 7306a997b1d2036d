"""Figures of the evaluation report (matplotlib, Agg backend: no display needed).

Three figures a reviewer reads in this order: where the aircraft went (estimate over truth,
over the imagery when it is available), how wrong it was against what it claimed (error vs
time with the 95% bound), and what it said about itself (source label, GNSS trust, attacks and
blackouts on one timeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from terrafix.eval.detection import Interval
from terrafix.eval.records import LABEL_ORDER, label_codes

_LABEL_COLOURS = {
    "satellite_anchored": "#2ca02c",
    "visual_propagated": "#1f77b4",
    "dead_reckoned": "#ff7f0e",
    "no_fix": "#d62728",
}


@dataclass(frozen=True, slots=True)
class Background:
    """An image under the track: (H, W) or (H, W, 3) uint8, and its extent in local metres
    (east_min, east_max, north_min, north_max), row 0 at north_max."""

    image: np.ndarray
    extent_en_m: tuple[float, float, float, float]


def _shade(ax: plt.Axes, intervals: list[Interval], colour: str, label: str) -> None:
    for i, iv in enumerate(intervals):
        ax.axvspan(iv.start_ns * 1e-9, iv.end_ns * 1e-9, color=colour, alpha=0.15, lw=0,
                   label=label if i == 0 else None)


def plot_track(path: Path, truth_ne_m: np.ndarray, est_ne_m: np.ndarray, labels: np.ndarray,
               background: Background | None = None, fixes_ne_m: np.ndarray | None = None
               ) -> Path:
    """Truth (N, 2) and estimate (M, 2) north/east metres, estimate coloured by label."""
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    if background is not None:
        ax.imshow(background.image, extent=background.extent_en_m, cmap="gray",
                  origin="upper", interpolation="bilinear", alpha=0.85)
    ax.plot(truth_ne_m[:, 1], truth_ne_m[:, 0], "-", color="black", lw=1.2, label="truth")
    for name in LABEL_ORDER:
        m = labels == name
        if np.any(m):
            ax.plot(est_ne_m[m, 1], est_ne_m[m, 0], ".", ms=2.0, color=_LABEL_COLOURS[name],
                    label=f"estimate ({name})")
    if fixes_ne_m is not None and len(fixes_ne_m):
        ax.plot(fixes_ne_m[:, 1], fixes_ne_m[:, 0], "x", ms=3, color="magenta", alpha=0.7,
                label="accepted fixes")
    ax.plot(truth_ne_m[:1, 1], truth_ne_m[:1, 0], "k^", ms=8, label="take-off")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7, markerscale=3)
    ax.set_title("Track: estimate vs truth")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_error(path: Path, t_s: np.ndarray, err_h_m: np.ndarray, r95_m: np.ndarray,
               attacks: list[Interval], blackouts: list[Interval]) -> Path:
    """Horizontal error (N,) and the radius of the reported 95% bound (N,) over time."""
    fig, ax = plt.subplots(figsize=(11, 4), dpi=110)
    ax.fill_between(t_s, 0, r95_m, color="#1f77b4", alpha=0.2, lw=0,
                    label="reported 95% radius")
    ax.plot(t_s, err_h_m, "-", color="#d62728", lw=0.8, label="horizontal error")
    _shade(ax, attacks, "#9467bd", "GNSS attack")
    _shade(ax, blackouts, "#7f7f7f", "visual blackout")
    finite = np.concatenate([err_h_m[np.isfinite(err_h_m)], r95_m[np.isfinite(r95_m)]])
    if finite.size:
        top = float(np.percentile(finite, 99.5)) * 1.2
        ax.set_ylim(0, max(top, 1.0))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("metres")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Horizontal error and the 95% bound")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_timeline(path: Path, t_s: np.ndarray, labels: np.ndarray, gnss_trusted: np.ndarray,
                  failsafe: np.ndarray, attacks: list[Interval], blackouts: list[Interval]
                  ) -> Path:
    """Source label, GNSS trust and failsafe over time, with attacks and blackouts shaded."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 4.5), dpi=110, sharex=True,
                                   gridspec_kw={"height_ratios": [2, 1]})
    codes = label_codes(labels)
    for k, name in enumerate(LABEL_ORDER):
        m = codes == k
        if np.any(m):
            ax1.plot(t_s[m], codes[m], "|", ms=8, color=_LABEL_COLOURS[name])
    ax1.set_yticks(range(len(LABEL_ORDER)), LABEL_ORDER, fontsize=8)
    ax1.set_ylim(-0.5, len(LABEL_ORDER) - 0.5)
    ax1.invert_yaxis()
    ax1.set_title("Source label, GNSS trust, failsafe")
    _shade(ax1, attacks, "#9467bd", "GNSS attack")
    _shade(ax1, blackouts, "#7f7f7f", "visual blackout")
    if attacks or blackouts:
        ax1.legend(loc="upper right", fontsize=7)
    ax2.step(t_s, gnss_trusted.astype(float), where="post", color="#2ca02c",
             label="GNSS trusted")
    ax2.step(t_s, failsafe.astype(float) * 0.5, where="post", color="#d62728",
             label="failsafe")
    _shade(ax2, attacks, "#9467bd", "")
    ax2.set_yticks([0, 0.5, 1], ["no", "failsafe", "trusted"], fontsize=8)
    ax2.set_ylim(-0.1, 1.1)
    ax2.set_xlabel("time (s)")
    ax2.legend(loc="lower right", fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
