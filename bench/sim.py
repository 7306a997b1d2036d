"""Simulator frame-rate benchmark -> bench/results/sim.json.

    .venv/bin/python bench/sim.py [--runs 5] [--frames 45]

Measures, on this machine (2 CPU cores shared with other work: timings are noisy, so every
figure is a median over runs):

* frames_per_s (the bar: >= 5 at 1280x960): frames produced per second by the simulator's frame
  loop on the demo scenario over the real imagery (WorldView-3) — camera pose from the truth,
  perspective warp from the pyramid, all image effects of the scenario, PNG encode and write to
  a dataset folder — i.e. what `terrafix sim run` spends per frame.
* render_only_fps: the warp alone (no effects, no PNG), same poses.
* synthetic_fps: the same frame loop over the procedural world on the long-synthetic scenario,
  including on-demand tile generation along the track.
* end_to_end_fps: one whole `simulate_flight` of the demo scenario cut to 20 s (trajectory,
  sensors, footprint checks, frames, CSV files) divided into its number of frames.
* peak_rss_mb: peak resident memory of this process.
* ratio_to_bar: frames_per_s / 5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from terrafix.sim.dataset import write_frame
from terrafix.sim.flight import (
    camera_poses,
    fly,
    frame_times_ns,
    setup_flight,
    simulate_flight,
)
from terrafix.sim.scenario import load_scenario, with_duration

RESULT = Path(__file__).parent / "results" / "sim.json"
BAR_FPS = 5.0


def _peak_rss_mb() -> float:
    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)  # Windows only
    if peak is None:
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        except ImportError:  # pragma: no cover
            return info.rss / 2**20
    return peak / 2**20


def frame_loop_fps(name: str, n_frames: int, runs: int, effects: bool, write: bool,
                   seed: int = 1) -> list[float]:
    """Frames per second of the frame loop over the first n_frames of a scenario, per run
    (each run renders a different slice of the flight, so tile caches start cold-ish)."""
    sc = load_scenario(name)
    setup = setup_flight(sc, seed)
    truth = fly(setup)
    t_all = frame_times_ns(sc.duration_s, sc.camera.frame_rate_hz)
    intr = setup.camera.processing_intrinsics()
    rates = []
    for run in range(runs):
        start = (run * n_frames) % max(1, len(t_all) - n_frames)
        t_ns = t_all[start:start + n_frames]
        poses = camera_poses(setup, truth, t_ns)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for i, pose in enumerate(poses):
                rng = np.random.default_rng([seed, i])
                img = setup.world.render(pose, intr, setup.frame,
                                         setup.effects if effects else None, rng)
                if write:
                    write_frame(Path(tmp), i, img)
            rates.append(len(poses) / (time.perf_counter() - t0))
    return rates


def end_to_end_fps(runs: int, duration_s: float = 20.0) -> list[float]:
    sc = with_duration(load_scenario("demo"), duration_s)
    n = len(frame_times_ns(sc.duration_s, sc.camera.frame_rate_hz))
    rates = []
    for run in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            simulate_flight(sc, run + 1, Path(tmp) / "d")
            rates.append(n / (time.perf_counter() - t0))
    return rates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--frames", type=int, default=45)
    args = ap.parse_args(argv)

    full = frame_loop_fps("demo", args.frames, args.runs, effects=True, write=True)
    render = frame_loop_fps("demo", args.frames, args.runs, effects=False, write=False)
    synth = frame_loop_fps("long-synthetic", args.frames, args.runs, effects=True, write=True)
    e2e = end_to_end_fps(max(1, args.runs // 2))
    result = {
        "frames_per_s": round(statistics.median(full), 2),
        "render_only_fps": round(statistics.median(render), 2),
        "synthetic_fps": round(statistics.median(synth), 2),
        "end_to_end_fps": round(statistics.median(e2e), 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "ratio_to_bar": round(statistics.median(full) / BAR_FPS, 2),
        "resolution": "1280x960",
        "runs": args.runs,
        "frames_per_run": args.frames,
        "cpu_count": psutil.cpu_count(),
        "load_avg_1m_at_end": round(psutil.getloadavg()[0], 2),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"{'metric':18s} {'median':>8s}  runs")
    for key, runs in (("frames_per_s", full), ("render_only_fps", render),
                      ("synthetic_fps", synth), ("end_to_end_fps", e2e)):
        print(f"{key:18s} {statistics.median(runs):8.2f}  "
              + " ".join(f"{r:.2f}" for r in runs))
    print(f"{'peak_rss_mb':18s} {result['peak_rss_mb']:8.1f}")
    print(f"{'ratio_to_bar':18s} {result['ratio_to_bar']:8.2f}  (bar: {BAR_FPS} frames/s)")
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
