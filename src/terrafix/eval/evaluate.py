"""Evaluate one navigation run folder against its dataset's ground truth (hloc-style step).

`main(conf, paths)` reads `results.jsonl` (+ `events.jsonl`, `run.json` when present) from the
run folder and `truth.csv`, `gnss.csv` and `meta.json` from the dataset, computes the metrics
of `metrics.py` and `detection.py`, writes `summary.json`, the PNGs of `plots.py` and
`report.html` into the run folder (or `paths.out`), and returns the summary.

Only ticks inside the truth's time span with a usable position are scored for accuracy;
explicit no-fix ticks are counted (their share is reported), never scored as errors or
dropped silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from terrafix.eval.detection import (
    attack_intervals,
    blackout_intervals,
    false_closures,
    score_attacks,
    score_blackouts,
)
from terrafix.eval.errors import EvalError
from terrafix.eval.metrics import consistency, error_stats, label_shares, radius95_m
from terrafix.eval.plots import Background, plot_error, plot_timeline, plot_track
from terrafix.eval.records import (
    EVENTS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    ResultTrack,
    load_events,
    load_results,
)
from terrafix.eval.report import write_report
from terrafix.json_values import jsonable
from terrafix.measurements import SourceLabel
from terrafix.sim.dataset import FlightDataset, load_dataset

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
LIVE_FILE = "live.json"
"""What the FC accepted in a live run (`terrafix demo`): next to the run folder or above it."""


@dataclass(frozen=True, slots=True)
class EvalConf:
    """plots: draw PNGs and the HTML report (off for benchmarks that only need numbers).
    background: draw the track over the imagery when the dataset's world can be rendered."""

    plots: bool = True
    background: bool = True


@dataclass(frozen=True, slots=True)
class EvalPaths:
    """run_dir: the replay's output folder. dataset: the flight dataset (default: the one named
    in run.json). out: where to write (default: run_dir)."""

    run_dir: Path
    dataset: Path | None = None
    out: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScoredTrack:
    """Estimate vs truth at the scored ticks. est/truth: (N, 3) NED m; err = est - truth;
    cov: (N, 3, 3); t_ns: (N,); labels: (N,)."""

    t_ns: np.ndarray
    est_ned_m: np.ndarray
    truth_ned_m: np.ndarray
    cov_p_ned_m2: np.ndarray
    labels: np.ndarray

    @property
    def err_ned_m(self) -> np.ndarray:
        return self.est_ned_m - self.truth_ned_m

    @property
    def err_h_m(self) -> np.ndarray:
        return np.hypot(self.err_ned_m[:, 0], self.err_ned_m[:, 1])


def score_track(track: ResultTrack, ds: FlightDataset) -> ScoredTrack:
    """Ticks with a position inside the truth span, converted to the flight's NED frame."""
    t0, t1 = int(ds.truth.t_ns[0]), int(ds.truth.t_ns[-1])
    m = track.has_position & (track.t_ns >= t0) & (track.t_ns <= t1)
    if not np.any(m):
        raise EvalError(f"no tick with a position inside the truth span [{t0}, {t1}] ns: "
                        f"{len(track)} ticks from {track.t_ns[0]} to {track.t_ns[-1]}")
    est = ds.local_frame.lla_to_ned(track.lat_deg[m], track.lon_deg[m], track.alt_m[m])
    truth = ds.truth_p_ned_at(track.t_ns[m])
    return ScoredTrack(track.t_ns[m], est, truth, track.cov_p_ned_m2[m], track.label[m])


def read_run_info(run_dir: Path) -> dict[str, Any]:
    p = Path(run_dir) / RUN_FILE
    if not p.is_file():
        return {}
    return json.loads(p.read_text(encoding="utf-8"))


def read_live(run_dir: Path) -> dict[str, Any] | None:
    """live.json of a live run: in the run folder, or in the folder above (the demo writes
    its report folder next to live.json); None when there is none."""
    for p in (Path(run_dir) / LIVE_FILE, Path(run_dir).parent / LIVE_FILE):
        if p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise EvalError(f"{p}: not JSON ({exc}); expected the live figures of "
                                "terrafix demo") from None
            return data if isinstance(data, dict) else None
    return None


def resolve_dataset(paths: EvalPaths, run_info: dict[str, Any]) -> Path:
    if paths.dataset is not None:
        return Path(paths.dataset)
    if "dataset" in run_info:
        return Path(run_info["dataset"])
    raise EvalError(f"{paths.run_dir}: no dataset given and no {RUN_FILE} naming one; "
                    f"pass --dataset")


def _output_stats(track: ResultTrack) -> dict[str, float]:
    t = track.t_s
    gaps = np.diff(t) if len(t) > 1 else np.array([math.nan])
    span = float(t[-1] - t[0]) if len(t) > 1 else math.nan
    return {"n_ticks": len(track),
            "rate_hz": (len(t) - 1) / span if span and span > 0 else math.nan,
            "max_gap_s": float(np.max(gaps)),
            "gap_std_s": float(np.std(gaps))}


def summarise(track: ResultTrack, ds: FlightDataset, events: list[dict[str, Any]],
              run_info: dict[str, Any]) -> tuple[dict[str, Any], ScoredTrack]:
    """All metrics of one run as a JSON-able dict, and the scored track (for plots)."""
    scored = score_track(track, ds)
    acc = error_stats(scored.err_h_m)
    cons = consistency(scored.err_ned_m, scored.cov_p_ned_m2)
    attacks = attack_intervals(ds.gnss.t_ns, ds.gnss.attack)
    blackouts = blackout_intervals(ds.meta)
    gnss_ne = ds.local_frame.lla_to_ned(np.nan_to_num(ds.gnss.lat_deg),
                                        np.nan_to_num(ds.gnss.lon_deg),
                                        np.nan_to_num(ds.gnss.alt_m))[:, :2]
    gnss_ne[~np.isfinite(ds.gnss.lat_deg)] = np.nan
    truth_gnss_ne = ds.truth_p_ned_at(ds.gnss.t_ns)[:, :2]
    detections = score_attacks(track, attacks, ds.gnss.t_ns, gnss_ne, truth_gnss_ne)
    fc = false_closures(track, attacks)
    n = len(track)
    summary: dict[str, Any] = {
        "accuracy": acc.as_dict(),
        "consistency": cons.as_dict(),
        "vertical_p95_m": float(np.percentile(np.abs(scored.err_ned_m[:, 2]), 95.0)),
        "labels": label_shares(track.label),
        "anchored_share": float(np.mean(track.label == SourceLabel.SATELLITE_ANCHORED)),
        "no_fix_share": float(np.mean(~track.has_position)) if n else math.nan,
        "output": _output_stats(track),
        "attacks": [d.as_dict() for d in detections],
        "false_closures": {"count": len(fc), "times_s": [t * 1e-9 for t in fc.tolist()]},
        "blackouts": [b.as_dict() for b in score_blackouts(track, blackouts)],
        "events": _event_counts(events),
        "run_stats": run_info.get("stats", {}),
    }
    return jsonable(summary), scored


def _event_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in events:
        k = str(e.get("kind", "?"))
        counts[k] = counts.get(k, 0) + 1
    return dict(sorted(counts.items()))


def _fix_positions(events: list[dict[str, Any]], ds: FlightDataset) -> np.ndarray | None:
    pts = [(e["lat_deg"], e["lon_deg"]) for e in events
           if e.get("kind") == "fix" and e.get("accepted", True)
           and e.get("lat_deg") is not None and e.get("lon_deg") is not None]
    if not pts:
        return None
    a = np.array(pts, dtype=np.float64)
    return ds.local_frame.lla_to_ned(a[:, 0], a[:, 1], np.full(len(a), ds.local_frame.alt0_m)
                                     )[:, :2]


def draw(out: Path, track: ResultTrack, scored: ScoredTrack, ds: FlightDataset,
         events: list[dict[str, Any]], background: Background | None) -> dict[str, str]:
    """The three PNGs; returns caption -> file name."""
    attacks = attack_intervals(ds.gnss.t_ns, ds.gnss.attack)
    blackouts = blackout_intervals(ds.meta)
    truth_ne = ds.truth.p_ned_m[:, :2][:: max(1, len(ds.truth.t_ns) // 20000)]
    plot_track(out / "track.png", truth_ne, scored.est_ned_m[:, :2], scored.labels,
               background, _fix_positions(events, ds))
    plot_error(out / "error.png", scored.t_ns * 1e-9, scored.err_h_m,
               radius95_m(scored.cov_p_ned_m2[:, :2, :2]), attacks, blackouts)
    plot_timeline(out / "timeline.png", track.t_s, track.label, track.gnss_trusted,
                  track.failsafe, attacks, blackouts)
    return {"Track over the imagery": "track.png",
            "Error vs time with the 95% bound": "error.png",
            "Label and GNSS trust timeline": "timeline.png"}


def main(conf: EvalConf, paths: EvalPaths) -> dict[str, Any]:
    """Evaluate paths.run_dir; write summary.json (+ PNGs and report.html) and return the
    summary."""
    run_dir = Path(paths.run_dir)
    if not (run_dir / RESULTS_FILE).is_file():
        raise EvalError(f"{run_dir} holds no {RESULTS_FILE}: expected a replay output folder")
    run_info = read_run_info(run_dir)
    ds_path = resolve_dataset(paths, run_info)
    ds = load_dataset(ds_path)
    track = load_results(run_dir / RESULTS_FILE)
    events = load_events(run_dir / EVENTS_FILE)
    summary, scored = summarise(track, ds, events, run_info)
    summary = {"run_dir": str(run_dir), "dataset": str(ds_path), **summary}
    live = read_live(run_dir)
    if live is not None:
        summary["live"] = jsonable(live)
    out = Path(paths.out) if paths.out is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n",
                                    encoding="utf-8")
    if conf.plots:
        bg = None
        if conf.background:
            from terrafix.eval.imagery import track_background

            bg = track_background(ds, scored.truth_ned_m[:, :2], scored.est_ned_m[:, :2])
        images = draw(out, track, scored, ds, events, bg)
        write_report(out / REPORT_FILE, summary, images)
    return summary
