"""GNSS gate events of the no-map and dead-reckoning bench runs, finished or still running.

Why: on a loaded machine the replays of `bench/nav.py --only nomap dead-reckoning` can take
longer than the session; the detection of each attack (first gate closure, its reason, the
GNSS offset from the truth then) is already in each run's events.jsonl long before the
replay ends. This script reads those (it replays nothing) and says, per run, how far the
replay had got (`replayed_to_s`) and whether it finished (`finished`: its summary.json
exists). Figures from unfinished runs are what the gate did up to that time, not the
bench's scored result.

    .venv/bin/python bench/nav_integrity_events.py   # -> bench/results/nav-integrity-events.json
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "build" / "bench" / "nav"
DATASETS = REPO / "build" / "datasets" / "bench"
OUT = REPO / "bench" / "results" / "nav-integrity-events.json"
PREFIXES = ("nomap-", "dead-reckoning-")


def last_tick_s(results: Path) -> float:
    with results.open("rb") as f:
        f.seek(max(0, results.stat().st_size - 4000))
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    for ln in reversed(lines):
        try:
            return float(json.loads(ln)["t_ns"]) * 1e-9
        except (ValueError, KeyError):
            continue
    return math.nan


def gnss_offset_m(ds: Any, t_ns: int) -> float:
    """GNSS minus truth, horizontal, at the last GNSS sample at or before t_ns."""
    g = ds.gnss
    i = int(np.searchsorted(g.t_ns, t_ns, side="right")) - 1
    if i < 0 or not math.isfinite(g.lat_deg[i]):
        return math.nan
    p = np.asarray(ds.local_frame.lla_to_ned(g.lat_deg[i], g.lon_deg[i], g.alt_m[i]))[:2]
    q = ds.truth_p_ned_at(np.array([g.t_ns[i]]))[0, :2]
    return float(np.hypot(*(p - q)))


def main() -> None:
    from terrafix.sim.dataset import load_dataset

    rows = []
    for run in sorted(RUNS.iterdir()):
        if not run.name.startswith(PREFIXES) or not (run / "events.jsonl").is_file():
            continue
        name, rest = run.name.rsplit("-s", 1)
        seed, backend = rest.split("-", 1)
        ds = load_dataset(DATASETS / f"{name}-s{seed}")
        attacks = [a for a in ds.meta["scenario"]["gnss"]["attacks"]]
        events = [json.loads(ln) for ln in (run / "events.jsonl").read_text().splitlines()
                  if ln.strip()]
        closures = [e for e in events if e["kind"] == "GnssTrustChanged" and not e["trusted"]]
        resets = [e for e in events if e["kind"] == "FilterReset"]
        row: dict[str, Any] = {
            "scenario": name, "seed": int(seed), "backend": backend,
            "finished": (run / "summary.json").is_file(),
            "replayed_to_s": last_tick_s(run / "results.jsonl"),
            "attacks": [{k: a[k] for k in ("kind", "start_s", "rate_mps", "delay_s",
                                            "delay_ramp_s") if k in a} for a in attacks],
            "closures": [{"t_s": e["t_ns"] * 1e-9, "reason": e["reason"],
                          "gnss_offset_m": gnss_offset_m(ds, int(e["t_ns"]))}
                         for e in closures],
            "resets": [{"t_s": e["t_ns"] * 1e-9, "reason": e["reason"],
                        "shift_m": e["shift_m"]} for e in resets],
        }
        spoof = [a for a in attacks if a["kind"] in ("pulloff", "meaconing")]
        if spoof:
            t0 = spoof[0]["start_s"]
            det = [c for c in row["closures"] if c["t_s"] >= t0]
            row["detected_by_replayed_time"] = bool(det)
            row["detection_latency_s"] = det[0]["t_s"] - t0 if det else None
            row["offset_at_detection_m"] = det[0]["gnss_offset_m"] if det else None
        row["closures_before_any_attack"] = [
            c for c in row["closures"]
            if not attacks or c["t_s"] < min(a["start_s"] for a in attacks)]
        rows.append(row)
    out = {"runs": rows, "command": "bench/nav_integrity_events.py",
           "source_command": "bench/nav.py --only nomap|dead-reckoning --scenarios NAME "
                             "--seeds S (one process per scenario and seed, nice 10)",
           "load_avg_1min": os.getloadavg()[0], "written_utc": time.strftime(
               "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    OUT.write_text(json.dumps(out, indent=2, sort_keys=True, default=float) + "\n")
    print(f"{'run':34s} {'to s':>6s} {'detect s':>9s} {'offset m':>9s}  first closure")
    for r in rows:
        c = r["closures"][0] if r["closures"] else None
        lat = r.get("detection_latency_s")
        off = r.get("offset_at_detection_m")
        print(f"{r['scenario'] + '-s' + str(r['seed']) + '-' + r['backend']:34s} "
              f"{r['replayed_to_s']:6.1f} {'' if lat is None else f'{lat:9.1f}':>9s} "
              f"{'' if off is None else f'{off:9.1f}':>9s}  "
              f"{'' if c is None else c['reason']}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
