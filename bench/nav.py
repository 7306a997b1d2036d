"""Navigation benchmark: the shipped scenarios, several seeds, both estimator backends
(issue "Visual odometry, state estimation and navigation integrity", bars in its text).

Every run is the product path: `terrafix.sim` writes the dataset (`build/datasets/bench/`),
`terrafix.app.replay` runs the navigator on it (registration against the WorldView-2 map for
the real-imagery scenarios, built once under `build/maps/`), `terrafix.eval` scores it
against the truth. Runs are cached under `build/bench/nav/` and skipped when their
`summary.json` was made by the same code (a hash of every source the runs depend on: app,
estimation, vision, inference, eval, sim).

Scenarios and what they measure:
- demo, spoof-pulloff, jam-then-spoof (real imagery, 150 s), long-synthetic (procedural
  farmland, 360 s; no independent map exists for a procedural world, so it runs on odometry
  + IMU after the GNSS is jammed at 30 s: it is the odometry-drift scenario);
- spoof-jump (bench-only, derived from spoof-pulloff): a 150 m GNSS jump at 40 s that the
  receiver does not flag, for the "jump rejected within 1 s" bar (in the shipped
  jam-then-spoof the jump comes while the gate is already closed by jamming);
- long-synthetic-trueyaw (diagnostic, ESKF): the same flights with the FC's yaw error removed
  from the attitude stream (roll/pitch errors kept). The odometry's heading comes from the
  gyro and the images after start-up (navigation.attitude), so the FC's wandering yaw error should
  no longer show in the drift: the two figures should agree;
- clean flights: 10 flights without any attack (procedural farmland, 300 s, GNSS only: no
  frames), for false gate closures; closures outside attacks in every other run count too.

- no-map family (issue 15; procedural farmland 300-600 m AGL, 40 deg banks, sharp turns,
  wind; registration off, so GNSS is tested against the GNSS-free reference only):
  nomap-clean (control), nomap-pulloff-slow/medium/fast (0.5/1/2 m/s unflagged),
  nomap-meaconing-short/long (delay ramped to 2 s / 8 s); one trajectory per seed, frames
  rendered once and linked;
- meaconing-short/long over the real imagery with map fixes (bench-only);
- dead-reckoning-low/mid/high: 150/400/800 m AGL, GNSS denied from 30 s, registration off:
  consistency and drift from the jamming on;
- clean-map: 7 clean flights over the real imagery with map fixes (seeds 41-47); with the
  GNSS-only clean flights and the no-map controls (seeds 1-3, and 4-10 where simulated) they
  are the clean flights of `false_closures`.

Seeds: the benchmark uses seeds 1-3 (clean flights 41-50). The no-map and dead-reckoning
parameters (reference lag, CUSUM allowance/threshold, doubt gain) were set on seed 201 of the
no-map family and the issue's reproduction flight (seed 201), never on these; the heading
calibration's changes of 2026-12-02/03 were developed and checked on seeds 201-205 of the
no-map and dead-reckoning families. Development and tuning otherwise used demo seed 101
and synthetic seeds 3 and 8 (tests).

Timings are wall-clock on the shared 2-core development machine while other work runs on it:
replay speed is pessimistic; the CPU-time speed is reported next to it.

    .venv/bin/python bench/nav.py                       # everything -> bench/results/nav.json
    .venv/bin/python bench/nav.py --scenarios demo --seeds 1 --backends eskf   # a subset
    .venv/bin/python bench/nav.py --scenarios demo jam-then-spoof --clean 0 \
        --out bench/results/nav-signals.json    # operator signals + the blackout label bar
    .venv/bin/python bench/nav.py --only nomap dead-reckoning --out bench/results/nav-integrity.json
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO / "build" / "datasets" / "bench"
RUNS = REPO / "build" / "bench" / "nav"
RESULT = REPO / "bench" / "results" / "nav.json"
SCENARIOS = ("demo", "spoof-pulloff", "jam-then-spoof", "long-synthetic", "spoof-jump")
SHIPPED = ("demo", "spoof-pulloff", "jam-then-spoof", "long-synthetic")
NOMAP_FAMILY = ("nomap-clean", "nomap-pulloff-slow", "nomap-pulloff-medium",
                "nomap-pulloff-fast", "nomap-meaconing-short", "nomap-meaconing-long")
"""Procedural flights, registration off: one trajectory per seed (same world, flight plan and
camera), different GNSS attacks; the frames are rendered once per seed (nomap-clean) and
linked into the others (a frame depends on the trajectory, world and camera only)."""
MEACONING_MAP = ("meaconing-short", "meaconing-long")
"""Bench-only, over the real imagery with map fixes (derived from spoof-pulloff)."""
DEAD_RECKONING = ("dead-reckoning-low", "dead-reckoning-mid", "dead-reckoning-high")
NO_REGISTRATION = NOMAP_FAMILY + DEAD_RECKONING
GROUPS = {
    "classic": SCENARIOS,
    "nomap": NOMAP_FAMILY,
    "meaconing-map": MEACONING_MAP,
    "dead-reckoning": DEAD_RECKONING,
}
BENCH_SEEDS = (1, 2, 3)
CLEAN_SEEDS = tuple(range(41, 51))
BACKENDS = ("eskf", "isam2")
ODOMETRY_WINDOW_S = 300.0
CODE_PATHS = ("src/terrafix/app", "src/terrafix/navigation", "src/terrafix/estimation",
              "src/terrafix/vision", "src/terrafix/inference", "src/terrafix/eval",
              "src/terrafix/sim", "src/terrafix/measurements.py", "src/terrafix/camera.py")


def code_hash() -> str:
    h = hashlib.sha256()
    for root in CODE_PATHS:
        base = REPO / root
        for p in ([base] if base.is_file() else sorted(base.rglob("*.py"))):
            h.update(p.relative_to(REPO).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def scenario_dict(name: str) -> dict[str, Any]:
    from terrafix.sim.scenario import load_scenario

    if name == "spoof-jump":
        d = load_scenario("spoof-pulloff").model_dump(mode="json")
        d["name"] = "spoof-jump"
        d["description"] = "unflagged 150 m GNSS jump at 40 s over the real imagery"
        d["duration_s"] = 90.0
        d["gnss"]["attacks"] = [{"kind": "jump", "start_s": 40.0,
                                 "offset_ned_m": [90.0, 120.0, 0.0], "flag": False}]
        return d
    if name in MEACONING_MAP:
        d = load_scenario("spoof-pulloff").model_dump(mode="json")
        d["name"] = name
        delay, ramp = (2.0, 20.0) if name == "meaconing-short" else (8.0, 60.0)
        d["description"] = (f"unflagged meaconing from 40 s, delay ramped to {delay:.0f} s over "
                            f"{ramp:.0f} s, over the real imagery")
        d["duration_s"] = 120.0
        d["gnss"]["attacks"] = [{"kind": "meaconing", "start_s": 40.0, "delay_s": delay,
                                 "delay_ramp_s": ramp, "flag": False}]
        return d
    if name == "clean-map":
        d = load_scenario("spoof-pulloff").model_dump(mode="json")
        d["name"] = "clean-map"
        d["description"] = "no attack over the real imagery (map fixes), 90 s"
        d["duration_s"] = 90.0
        d["gnss"]["attacks"] = []
        return d
    if name == "clean":
        return {"name": "clean", "description": "no attack, GNSS only (no frames)",
                "duration_s": 300.0,
                "world": {"kind": "synthetic", "origin_lat_deg": 48.2,
                          "origin_lon_deg": 35.6, "ground_alt_m": 120.0},
                "trajectory": {"airspeed_mps": 20.0, "wind_ned_mps": [2.0, -1.0, 0.0],
                               "random": {"count": 8, "radius_m": 2500.0,
                                          "min_leg_m": 600.0}},
                "camera": {"render_frames": False}}
    return load_scenario(name).model_dump(mode="json")


def dataset(name: str, seed: int) -> Path:
    out = DATASETS / f"{name}-s{seed}"
    if (out / "meta.json").is_file():
        return out
    # parallel parts of a run (one process per backend) need the same datasets: the first
    # to take the lock simulates, the others wait for it and then find meta.json
    DATASETS.mkdir(parents=True, exist_ok=True)
    with open(DATASETS / f".{name}-s{seed}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "meta.json").is_file():
            return out
        if out.exists():  # left half-written by a process that was killed
            shutil.rmtree(out)
        return _simulate(name, seed, out)


def _simulate(name: str, seed: int, out: Path) -> Path:
    from terrafix.sim.flight import simulate_flight
    from terrafix.sim.scenario import parse_scenario

    t0 = time.perf_counter()
    d = scenario_dict(name)
    if name in NOMAP_FAMILY and name != NOMAP_FAMILY[0]:
        src = dataset(NOMAP_FAMILY[0], seed)
        d["camera"]["render_frames"] = False
        simulate_flight(parse_scenario(d, name), seed, out)
        link_frames(src, out)
    else:
        simulate_flight(parse_scenario(d, name), seed, out)
    print(f"  simulated {name} seed {seed} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def link_frames(src: Path, out: Path) -> None:
    """Give a dataset simulated without frames the frames of `src` (same seed, trajectory,
    world and camera: the same images); refuses if the two trajectories differ."""
    if (src / "truth.csv").read_bytes() != (out / "truth.csv").read_bytes():
        raise SystemExit(f"{out.name}: trajectory differs from {src.name}; cannot share frames")
    (out / "frames").rmdir() if (out / "frames").is_dir() else None
    (out / "frames").symlink_to((src / "frames").resolve())
    (out / "frames.csv").write_bytes((src / "frames.csv").read_bytes())
    meta_src = json.loads((src / "meta.json").read_text())
    meta = json.loads((out / "meta.json").read_text())
    meta["streams"]["frames"] = meta_src["streams"]["frames"]
    meta["scenario"]["camera"] = meta_src["scenario"]["camera"]
    meta["frames_linked_from"] = src.name
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def true_heading_dataset(name: str, seed: int) -> Path:
    """A copy of a dataset whose FC attitude has its yaw error removed (roll/pitch errors
    kept): isolates the odometry's own drift from the FC heading error, which no downward
    camera can observe. Frames are linked, not copied."""
    from terrafix.sim.dataset import load_dataset, write_attitude
    from terrafix.sim.streams import AttitudeStream

    src = dataset(name, seed)
    out = DATASETS / f"{name}-s{seed}-trueyaw"
    if (out / "meta.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name == "frames":
            (out / "frames").symlink_to(f.resolve())
        elif f.name != "attitude.csv":
            (out / f.name).write_bytes(f.read_bytes())
    ds = load_dataset(src)
    yaw = np.interp(ds.attitude.t_ns, ds.truth.t_ns, np.unwrap(ds.truth.euler_rad[:, 2]))
    euler = ds.attitude.euler_rad.copy()
    euler[:, 2] = (yaw + np.pi) % (2 * np.pi) - np.pi
    write_attitude(out, AttitudeStream(ds.attitude.t_ns.copy(), euler))
    return out


def run_one(name: str, seed: int, backend: str, stamp: str, fresh: bool,
        cached_only: bool = False) -> dict[str, Any] | None:
    """Replay + evaluation of one dataset; returns the summary plus per-tick arrays (None
    with cached_only when this code has not finished that run yet)."""
    from terrafix.app.replay import ReplayConf, ReplayPaths
    from terrafix.app.replay import main as replay
    from terrafix.eval.evaluate import EvalConf, EvalPaths, score_track
    from terrafix.eval.evaluate import main as evaluate
    from terrafix.eval.metrics import CHI2_95_2DOF, mahalanobis_sq
    from terrafix.eval.records import load_results
    from terrafix.navigation.navigator import NavigatorConfig
    from terrafix.sim.dataset import load_dataset

    out = RUNS / f"{name}-s{seed}-{backend}"
    stamp_file = out / "bench_stamp.json"
    cached = (not fresh and stamp_file.is_file()
              and json.loads(stamp_file.read_text()).get("code") == stamp
              and (out / "summary.json").is_file())
    if cached_only and not cached:
        return None
    ds_path = (true_heading_dataset(name.removesuffix("-trueyaw"), seed)
               if name.endswith("-trueyaw") else dataset(name, seed))
    if not cached:
        cfg = NavigatorConfig().with_backend(backend)
        if name in NO_REGISTRATION:
            cfg = cfg.model_copy(update={"registration": cfg.registration.model_copy(
                update={"enabled": False})})
        cpu0, t0 = time.process_time(), time.perf_counter()
        load0 = os.getloadavg()[0]
        replay(ReplayConf(cfg), ReplayPaths(ds_path, out))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        evaluate(EvalConf(plots=False), EvalPaths(out, ds_path))
        stamp_file.write_text(json.dumps({"code": stamp, "cpu_s": cpu, "wall_s": wall,
                                          "load_avg_1min": [load0, os.getloadavg()[0]]}))
        print(f"  {name} s{seed} {backend}: {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    summary = json.loads((out / "summary.json").read_text())
    info = json.loads((out / "run.json").read_text())
    timing = json.loads(stamp_file.read_text())
    ds = load_dataset(ds_path)
    track = load_results(out / "results.jsonl")
    scored = score_track(track, ds)
    d2 = mahalanobis_sq(scored.err_ned_m[:, :2], scored.cov_p_ned_m2[:, :2, :2])
    return {"name": name, "seed": seed, "backend": backend, "summary": summary,
            "run": info, "timing": timing, "ds": ds, "track": track,
            "t_ns": scored.t_ns, "err_h": scored.err_h_m,
            "inside95": (d2 <= CHI2_95_2DOF)[np.isfinite(d2)],
            "inside95_all": np.where(np.isfinite(d2), d2 <= CHI2_95_2DOF, False)}


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy over all ticks of all seeds of one scenario/backend."""
    err = np.concatenate([r["err_h"] for r in runs])
    inside = np.concatenate([r["inside95"] for r in runs])
    return {
        "p95_m": float(np.percentile(err, 95)),
        "max_m": float(np.max(err)),
        "within_20m": float(np.mean(err <= 20.0)),
        "cov_consistency": float(np.mean(inside)),
        "within_5m": float(np.mean(err <= 5.0)),
        "within_50m": float(np.mean(err <= 50.0)),
        "nees_2d_mean": float(np.mean([r["summary"]["consistency"]["nees_mean"]
                                       for r in runs])),
        "anchored_share": float(np.mean([r["summary"]["anchored_share"] for r in runs])),
        "no_fix_share": float(np.mean([r["summary"]["no_fix_share"] for r in runs])),
        "per_seed": {str(r["seed"]): {
            "p95_m": r["summary"]["accuracy"]["p95_m"],
            "max_m": r["summary"]["accuracy"]["max_m"],
            "cov_consistency": r["summary"]["consistency"]["inside_95"],
            "fixes_fused": r["run"]["stats"]["fixes_fused"],
            "registrations": r["run"]["stats"]["registrations"]} for r in runs},
    }


def odometry_drift_pct(r: dict[str, Any]) -> float:
    """Horizontal error 5 minutes after the GNSS is lost (it includes the error at the
    moment of loss, ~2 m), over the distance flown in those 5 minutes, in percent
    (long-synthetic: no absolute fix after the jamming)."""
    ds = r["ds"]
    attacks = [a for a in r["summary"]["attacks"] if a["kind"] == "jamming"]
    t0 = round(attacks[0]["start_s"] * 1e9)
    t1 = t0 + round(ODOMETRY_WINDOW_S * 1e9)
    if t1 > int(ds.truth.t_ns[-1]):
        raise SystemExit(f"{r['name']}: flight too short for a {ODOMETRY_WINDOW_S:.0f} s "
                         f"odometry window")
    t, err = r["t_ns"], r["err_h"]
    e1 = float(np.interp(t1, t, err))
    tt = np.arange(t0, t1 + 1, 100_000_000)
    p = ds.truth_p_ned_at(tt)[:, :2]
    flown = float(np.sum(np.linalg.norm(np.diff(p, axis=0), axis=1)))
    return 100.0 * e1 / flown if flown > 0 else math.nan


def operator_signals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """`demo_label_changes` and `demo_hint_requests`: the most LabelChanged and HintRequested
    events of one demo flight (any seed, either backend), read from each run's events.jsonl
    (what the recorder and the ground station get). A label change must mean something
    changed for the operator; a hint request, that registration really kept failing or the
    radius grew too wide (issue bars: <= 12 and <= 1 per flight)."""
    from terrafix.eval.records import EVENTS_FILE, iter_jsonl

    per_run = []
    for r in runs:
        if r["name"] != "demo":
            continue
        kinds = [e["kind"] for e in iter_jsonl(RUNS / f"demo-s{r['seed']}-{r['backend']}"
                                               / EVENTS_FILE)]
        per_run.append({"seed": r["seed"], "backend": r["backend"],
                        "label_changes": kinds.count("LabelChanged"),
                        "hint_requests": kinds.count("HintRequested"),
                        "flight_s": r["run"]["stats"]["flight_s"]})
    if not per_run:
        return {}
    return {"demo_label_changes": max(x["label_changes"] for x in per_run),
            "demo_hint_requests": max(x["hint_requests"] for x in per_run),
            "operator_signals_per_run": per_run}


CLEAN_NOMAP_EXTRA_SEEDS = tuple(range(4, 11))
"""More clean procedural flights with frames (no map), for the false-closure count."""
CLEAN_MAP_SEEDS = tuple(range(41, 48))
"""Clean flights over the real imagery with map fixes (bench-only clean-map)."""


def dead_reckoning_phase(r: dict[str, Any]) -> dict[str, float]:
    """Consistency and drift of a dead-reckoning run from the jamming onwards: the share of
    ticks inside the 95% ellipse, and the final error over the distance flown since."""
    ds = r["ds"]
    jam = [a for a in r["summary"]["attacks"] if a["kind"] == "jamming"]
    t0 = round(jam[0]["start_s"] * 1e9)
    t, err, inside_all = r["t_ns"], r["err_h"], r["inside95_all"]
    m = t >= t0
    tt = np.arange(t0, int(t[-1]) + 1, 100_000_000)
    p = ds.truth_p_ned_at(tt)[:, :2]
    flown = float(np.sum(np.linalg.norm(np.diff(p, axis=0), axis=1)))
    return {"inside95": float(np.mean(inside_all[m])), "n": int(m.sum()),
            "drift_pct": 100.0 * float(err[-1]) / flown, "flown_m": flown,
            "final_error_m": float(err[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", choices=[*GROUPS, "clean", "clean-map"],
                    default=[*GROUPS, "clean", "clean-map"],
                    help="groups to run (default: all); the JSON is rewritten after each")
    ap.add_argument("--scenarios", nargs="*", default=None,
                    help="restrict the scenario groups to these scenarios")
    ap.add_argument("--seeds", nargs="*", type=int, default=list(BENCH_SEEDS))
    ap.add_argument("--backends", nargs="*", default=list(BACKENDS))
    ap.add_argument("--clean", type=int, default=len(CLEAN_SEEDS),
                    help="number of GNSS-only clean flights (0: skip)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached runs")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--collect", action="store_true",
                    help="only gather the runs this code has finished (parallel parts of a "
                         "run, or one cut short); the JSON says which")
    args = ap.parse_args()
    stamp = code_hash()

    def run(name: str, seed: int, backend: str, stamp: str, fresh: bool) -> Any:
        r = run_one(name, seed, backend, stamp, fresh, args.collect)
        if r is None:
            missing.append(f"{name}-s{seed}-{backend}")
        return r

    missing: list[str] = []
    t_start = time.perf_counter()
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    odo_true: list[dict[str, Any]] = []
    clean: list[dict[str, Any]] = []
    done: list[str] = []
    for group in args.only:
        print(f"== {group}", flush=True)
        if group in GROUPS:
            names = [n for n in GROUPS[group] if args.scenarios is None or n in args.scenarios]
            for name in names:
                for backend in args.backends:
                    for seed in args.seeds:
                        r = run(name, seed, backend, stamp, args.fresh)
                        if r is not None:
                            by.setdefault((name, backend), []).append(r)
            if "long-synthetic" in names and "eskf" in args.backends:
                # ESKF only: a part run for the other backend must not write the same runs
                # (parallel parts corrupted each other's events.jsonl)
                odo_true = [r for seed in args.seeds
                            if (r := run("long-synthetic-trueyaw", seed, "eskf", stamp,
                                         args.fresh)) is not None]
            if group == "nomap":
                for seed in CLEAN_NOMAP_EXTRA_SEEDS:
                    if (DATASETS / f"nomap-clean-s{seed}" / "meta.json").is_file():
                        for backend in args.backends:
                            clean.append(run("nomap-clean", seed, backend, stamp,
                                             args.fresh))
                clean = [r for r in clean if r is not None]
        elif group == "clean":
            for seed in CLEAN_SEEDS[: args.clean]:
                for backend in args.backends:
                    clean.append(run("clean", seed, backend, stamp, args.fresh))
            clean = [r for r in clean if r is not None]
        else:  # clean-map
            for seed in CLEAN_MAP_SEEDS:
                for backend in args.backends:
                    clean.append(run("clean-map", seed, backend, stamp, args.fresh))
            clean = [r for r in clean if r is not None]
        done.append(group)
        write_result(args, stamp, t_start, by, odo_true, clean, done,
                     complete=len(done) == len(args.only) and not missing, missing=missing)


def write_result(args: argparse.Namespace, stamp: str, t_start: float,
                 by: dict[tuple[str, str], list[dict[str, Any]]],
                 odo_true: list[dict[str, Any]], clean: list[dict[str, Any]],
                 done: list[str], complete: bool, missing: list[str]) -> None:
    result: dict[str, Any] = {}
    for backend in args.backends:
        result[backend] = {name: pooled(runs) for (name, b), runs in by.items()
                           if b == backend}
    all_runs = [r for rs in by.values() for r in rs]

    def attacks_of(names: tuple[str, ...], kind: str) -> list[dict[str, Any]]:
        return [dict(a, seed=r["seed"], backend=r["backend"], scenario=r["name"])
                for r in all_runs if r["name"] in names
                for a in r["summary"]["attacks"] if a["kind"] == kind]

    def worst_detected(attacks: list[dict[str, Any]]) -> float | None:
        if not attacks:
            return None
        if any(not a["detected"] for a in attacks):
            return math.inf
        return worst([a["offset_at_detection_m"] for a in attacks])

    pull = attacks_of(("spoof-pulloff",), "pulloff")
    pull_nomap = attacks_of(NOMAP_FAMILY, "pulloff")
    meaconing = attacks_of(NOMAP_FAMILY + MEACONING_MAP, "meaconing")
    jump = attacks_of(("spoof-jump",), "jump")
    blackouts = [dict(b, seed=r["seed"], backend=r["backend"]) for r in all_runs
                 if r["name"] == "jam-then-spoof" for b in r["summary"]["blackouts"]]
    odo = [(r["seed"], r["backend"], odometry_drift_pct(r)) for r in all_runs
           if r["name"] == "long-synthetic"]
    dr = [dict(dead_reckoning_phase(r), scenario=r["name"], seed=r["seed"],
               backend=r["backend"]) for r in all_runs if r["name"] in DEAD_RECKONING]
    dr_pooled = {}
    for (name, b), runs in by.items():
        if name in DEAD_RECKONING:
            ph = [dead_reckoning_phase(r) for r in runs]
            dr_pooled[f"{name}/{b}"] = float(sum(x["inside95"] * x["n"] for x in ph)
                                             / max(sum(x["n"] for x in ph), 1))
    eskf_speed = [r for r in all_runs if r["backend"] == "eskf" and r["name"] in
                  ("demo", "spoof-pulloff", "jam-then-spoof")]
    consistency = {f"{name}/{b}": pooled(runs)["cov_consistency"]
                   for (name, b), runs in by.items()}
    clean_all = clean + [r for r in all_runs if r["name"] == "nomap-clean"]
    clean_flights = {(r["name"], r["seed"]) for r in clean_all}
    with_map = {f for f in clean_flights if f[0] == "clean-map"}

    result.update({
        "odometry_drift_pct": worst([x for _, _, x in odo]),
        "pulloff_offset_at_detection_m": worst_detected(pull),
        "pulloff_nomap_offset_at_detection_m": worst_detected(pull_nomap),
        "meaconing_offset_at_detection_m": worst_detected(meaconing),
        "jump_detection_s": (math.inf if any(not a["detected"] for a in jump)
                             else worst([a["latency_s"] for a in jump])) if jump else None,
        "blackout_label_latency_s": (math.inf if any(b["label_latency_s"] is None
                                                     for b in blackouts)
                                     else worst([b["label_latency_s"] for b in blackouts]))
        if blackouts else None,
        "false_closures": int(sum(r["summary"]["false_closures"]["count"]
                                  for r in clean_all)),
        "clean_flights": len(clean_flights),
        "clean_flights_without_map": len(clean_flights - with_map),
        "dead_reckoning_cov_consistency_min": min(dr_pooled.values()) if dr_pooled else None,
        "dead_reckoning_drift_pct": worst([x["drift_pct"] for x in dr]),
        "cov_consistency_min": min(consistency.values()) if consistency else None,
        "cov_consistency_max": max(consistency.values()) if consistency else None,
        "replay_speed_x": (float(np.mean([r["run"]["stats"]["replay_speed_x"]
                                          for r in eskf_speed])) if eskf_speed else None),
    })
    result.update(operator_signals(all_runs))
    result["extras"] = {
        "complete": complete, "groups_run": done, "runs_missing": missing,
        "command": " ".join(["bench/nav.py", *sys.argv[1:]]),
        "seeds": list(args.seeds), "clean_seeds": list(CLEAN_SEEDS[: args.clean]),
        "clean_map_seeds": list(CLEAN_MAP_SEEDS),
        "clean_flights_list": sorted(f"{n}-s{s}" for n, s in clean_flights),
        "dev_seeds_never_benchmarked": {"demo": [101], "synthetic_tests": [3, 8],
                                        "nomap_and_dead_reckoning": [201, 202, 203, 204,
                                                                     205]},
        "cov_consistency_per_scenario": consistency,
        "dead_reckoning_cov_consistency": dr_pooled,
        "dead_reckoning_per_run": dr,
        "pulloff_nomap": pull_nomap, "meaconing": meaconing,
        "false_closures_per_flight": [
            {"flight": f"{r['name']}-s{r['seed']}", "backend": r["backend"],
             "count": r["summary"]["false_closures"]["count"]} for r in clean_all
            if r["summary"]["false_closures"]["count"]],
        "odometry_drift_pct_per_run": [{"seed": s, "backend": b, "pct": x} for s, b, x in odo],
        "odometry_window_s": ODOMETRY_WINDOW_S,
        "odometry_drift_pct_fc_heading_error_removed": [
            {"seed": r["seed"], "backend": r["backend"], "pct": odometry_drift_pct(r)}
            for r in odo_true],
        "pulloff": pull, "jump": jump, "blackouts": blackouts,
        "undetected_attacks": [a for a in pull + pull_nomap + meaconing + jump
                               if not a["detected"]],
        "false_closures_in_scenario_runs": int(sum(
            r["summary"]["false_closures"]["count"] for r in all_runs)),
        "replay_speed_x_cpu": (float(np.mean([r["run"]["stats"]["flight_s"]
                                              / r["timing"]["cpu_s"] for r in eskf_speed]))
                               if eskf_speed else None),
        "replay_load_avg_1min": (float(np.mean([np.mean(r["timing"]["load_avg_1min"])
                                                for r in all_runs])) if all_runs else None),
        "registration_policy": "odometry on every frame; registration on every textured "
                               "frame while the 95% radius > 30 m or no fix yet, otherwise "
                               "when the last fused fix is >= 1.5 s old and the last attempt "
                               ">= 0.6 s old (about every 5th frame at 3 Hz); off for the "
                               "procedural no-map and dead-reckoning scenarios",
        "registration_ms_mean": (float(np.mean([r["run"]["stats"]["registration_ms_mean"]
                                                for r in eskf_speed])) if eskf_speed
                                 else None),
        "vo_ms_mean": (float(np.mean([r["run"]["stats"]["vo_ms_mean"] for r in eskf_speed]))
                       if eskf_speed else None),
        "code_hash": stamp, "bench_wall_s": time.perf_counter() - t_start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_count": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_jsonable(result), indent=2, sort_keys=True) + "\n")
    print_table(result, args.backends)
    print(f"wrote {args.out} ({'complete' if complete else 'partial: ' + ', '.join(done)})",
          flush=True)


def worst(values: list[float]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return max(v) if v else None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else "inf"
    return obj


def print_table(result: dict[str, Any], backends: list[str]) -> None:
    print(f"{'backend':8s} {'scenario':16s} {'p95 m':>7s} {'max m':>7s} {'<=20 m':>7s} "
          f"{'in 95%':>7s}")
    for b in backends:
        for name, m in result.get(b, {}).items():
            print(f"{b:8s} {name:16s} {m['p95_m']:7.2f} {m['max_m']:7.2f} "
                  f"{100 * m['within_20m']:6.1f}% {100 * m['cov_consistency']:6.1f}%")
    for k in ("odometry_drift_pct", "pulloff_offset_at_detection_m", "jump_detection_s",
              "blackout_label_latency_s", "false_closures", "clean_flights",
              "clean_flights_without_map", "pulloff_nomap_offset_at_detection_m",
              "meaconing_offset_at_detection_m", "dead_reckoning_cov_consistency_min",
              "dead_reckoning_drift_pct", "cov_consistency_min", "cov_consistency_max",
              "replay_speed_x", "demo_label_changes",
              "demo_hint_requests"):
        print(f"{k:32s} {result.get(k)}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
