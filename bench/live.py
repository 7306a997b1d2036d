"""Live benchmark: the demo flight in real time, simulated FC and onboard program as two
processes over signed MAVLink/UDP (`terrafix demo`'s run), scored from both ends.

Writes bench/results/live.json with: gps_input_rate_hz, gps_input_max_gap_ms,
gps_input_jitter_ms (as the FC received them while the flight played), latency_p95_ms
(camera capture -> solution published to the GPS_INPUT sender; the sender's own tick adds at
most one period), frame_drop_rate, p95_m / max_m (the onboard solutions against truth), plus
fc_error_p95_m / fc_error_max_m (what the autopilot actually received, against truth at
arrival) and takeoff_load_s. One real-time run per seed (each takes ~3 minutes): medians over
the seeds given.

    .venv/bin/python bench/live.py [--seeds 1] [--backend eskf]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
from pathlib import Path

from terrafix.app.live_demo import run_live

KEYS = ("gps_input_rate_hz", "gps_input_max_gap_ms", "gps_input_jitter_ms", "latency_p95_ms",
        "frame_drop_rate", "p95_m", "max_m", "fc_error_p95_m", "fc_error_max_m",
        "takeoff_load_s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--backend", default="eskf", choices=["eskf", "isam2"])
    ap.add_argument("--out", type=Path, default=Path("build/bench-live"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    load_before = os.getloadavg()
    runs = [run_live(args.out / f"seed{s}", s, args.backend) for s in args.seeds]
    result = {k: statistics.median(r[k] for r in runs) for k in KEYS}
    result.update({"seeds": args.seeds, "backend": args.backend, "runs": runs,
                   "load_avg_before_after": [load_before, os.getloadavg()],
                   "cpu_count": os.cpu_count()})
    out = Path(__file__).parent / "results" / "live.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'metric':<24}{'value':>12}")
    for k in KEYS:
        print(f"{k:<24}{result[k]:>12.3f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
