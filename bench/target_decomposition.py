"""Object localisation error per source, realised vs modelled, on a development seed.

    .venv/bin/python bench/target_decomposition.py --seed 101 [--targets 200]

For each random target of `bench/target.py` (same draws, same replays) the localisation is
repeated with one source replaced by the simulator's truth (navigation position, FC roll and
pitch, heading, gimbal angles, ground relief); the difference is that source's realised
contribution. Printed: the 2D rms of each contribution and of the total error, and the rms of
the locator's modelled per-source sigma (`sigma_by_source_m`, sqrt of the horizontal variance
share). A total below the quadrature sum of its parts means the sources are correlated,
which an independent-terms ellipse does not know. Development seeds only (101): the bench's
seeds are not for looking into. Writes nothing under bench/results (a diagnostic, not a bar).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import target as bench
from terrafix.measurements import AttitudeSample
from terrafix.sim.dataset import load_dataset
from terrafix.sim.world import load_dgsamples_world
from terrafix.targeting import (
    PoseHistory,
    TargetingConfig,
    TargetRequest,
    locate_target,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--targets", type=int, default=200)
    args = ap.parse_args()
    ds_path, out = bench.replay_folder(args.seed)
    ds = load_dataset(ds_path)
    hist = PoseHistory(ds.local_frame, keep_s=1e6, max_items=10_000_000)
    for s in bench.load_solutions(out / "results.jsonl"):
        hist.add_solution(s)
    for t, e in zip(ds.attitude.t_ns, ds.attitude.euler_rad, strict=True):
        hist.add_attitude(AttitudeSample(int(t), float(e[0]), float(e[1]), float(e[2])))
    world = load_dgsamples_world("wv3", ds.ground_alt_m)
    targets, _sim, _ = bench.draw_targets(ds, world, args.targets,
                                          np.random.default_rng(1000 + args.seed))
    cfg, frame, g0 = TargetingConfig(), ds.local_frame, ds.ground_alt_m
    real: dict[str, list[np.ndarray]] = {k: [] for k in ("navigation", "roll_pitch", "heading",
                                                        "gimbal", "ground", "total")}
    model: dict[str, list[float]] = {k: [] for k in ("navigation", "attitude", "gimbal",
                                                     "ground")}
    for tg in targets:
        r = tg["request"]
        pose = hist.at(r["t_ns"])
        if pose is None:
            continue
        req = TargetRequest(r["u_px"], r["v_px"], r["pan_deg"], r["tilt_deg"], r["zoom"],
                            r["roll_deg"], r["t_ns"])
        truth = ds.truth_at(r["t_ns"])
        fix = locate_target(req, pose, cfg, frame, g0)
        p = fix.p_ned_m[:2]
        real["total"].append(p - tg["p_true"][:2])
        euler = pose.euler_rad.copy()
        euler[:2] = truth.euler_rad[:2]
        g = tg["gimbal"]
        for name, (rq, ps, ground) in {
            "navigation": (req, dataclasses.replace(pose, p_ned_m=truth.p_ned_m.copy()), g0),
            "roll_pitch": (req, dataclasses.replace(pose, euler_rad=euler), g0),
            "heading": (req, dataclasses.replace(pose, nav_heading_rad=float(truth.euler_rad[2])),
                        g0),
            "gimbal": (dataclasses.replace(req, pan_deg=g.pan_deg, tilt_deg=g.tilt_deg,
                                           roll_deg=g.roll_deg), pose, g0),
            "ground": (req, pose, g0 + tg["relief_m"]),
        }.items():
            real[name].append(p - locate_target(rq, ps, cfg, frame, ground).p_ned_m[:2])
        for k, v in model.items():
            v.append(fix.sigma_by_source_m[k])
    print(f"demo seed {args.seed}, {len(real['total'])} targets")
    for k, v in real.items():
        a = np.array(v)
        print(f"  realised {k:11s} {np.sqrt((a**2).sum(axis=1).mean()):6.2f} m rms (2D)")
    parts = sum(float((np.array(real[k])**2).sum(axis=1).mean()) for k in real if k != "total")
    print(f"  quadrature sum of the parts {np.sqrt(parts):6.2f} m")
    for k, v in model.items():
        print(f"  modelled {k:11s} {np.sqrt(np.mean(np.square(v))):6.2f} m rms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
