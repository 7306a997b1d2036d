"""GPS_INPUT output benchmark -> bench/results/gps_input.json.

    .venv/bin/python bench/gps_input.py [--duration 30] [--rate 10] [--imu-hz 200] [--runs 1]

What it measures, on this machine (2 shared CPU cores: timings are noisy): the companion's
ArduPilotLink (signed MAVLink 2 over UDP loopback) sends GPS_INPUT at `--rate` Hz from a solution
an estimator stand-in publishes at 20 Hz, while a separate FC process (FcEmulator: ArduPilot's
signing and GPS_INPUT rules) streams RAW_IMU + ATTITUDE at `--imu-hz` back at it, so the link's
reader thread competes with the sender for the GIL as in flight. Everything is measured at the FC
side, on GPS_INPUT arrival times:

* rate_hz: 1 / mean gap; max_gap_ms; jitter_ms: population standard deviation of the gaps;
  p99_gap_ms; gaps_over_245ms (ArduPilot's consecutive-late threshold);
* unhealthy_arrivals: arrivals at which ArduPilot's health rule (mean of the last 10 gaps
  < 215 ms, fewer than 2 consecutive gaps > 245 ms) did not hold;
* decoded_fraction: share of GPS_INPUT with fix_type >= 3 and time_week > 0;
* signing_handshake_s: time of the signing handshake (part of the 5 s take-off budget);
* sender_skipped_ticks: ticks the sender skipped after stalls longer than a period.
Bars (issue "Bars"): 5-10 Hz, max gap <= 250 ms, jitter < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # bench/link_drive.py beside this script
from link_drive import drive_link
from terrafix.autopilot import constants as C
from terrafix.autopilot.ardupilot import ArduPilotLink, ArduPilotLinkConfig, FcCallbacks
from terrafix.autopilot.fc_emulation import FcEmulator

RESULT = Path(__file__).parent / "results" / "gps_input.json"
mavlink = C.DIALECT


def fc_process(conn, imu_hz: float) -> None:
    """The FC: emulator + IMU/attitude stream; reports arrivals of GPS_INPUT when stopped."""
    fc = FcEmulator("udpin:127.0.0.1:0")
    fc.start()
    conn.send(fc.local_address())
    period = 1.0 / imu_hz
    next_t = time.monotonic()
    while not conn.poll(0):
        now = time.monotonic()
        if now < next_t:
            time.sleep(next_t - now)
        next_t += period
        fc.send(mavlink.MAVLink_raw_imu_message(fc.boot_us(), 1, -2, -1000, 3, 4, 5, 0, 0, 0, 0,
                                                0))
        fc.send(mavlink.MAVLink_attitude_message(fc.boot_ms(), 0.01, 0.02, 1.0, 0, 0, 0))
    conn.recv()
    arrivals = [r.arrival_ns for r in fc.acceptance.records]
    conn.send({
        "arrivals_ns": arrivals,
        "decoded": sum(r.decoded for r in fc.acceptance.records),
        "summary": fc.acceptance.summary(),
    })
    fc.close()


def one_run(duration_s: float, rate_hz: float, imu_hz: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=fc_process, args=(child, imu_hz), daemon=True)
    proc.start()
    port = parent.recv()[1]
    imu_count = [0]
    link = ArduPilotLink(
        ArduPilotLinkConfig(connection=f"udpout:127.0.0.1:{port}", gps_input_rate_hz=rate_hz),
        FcCallbacks(on_imu=lambda s: imu_count.__setitem__(0, imu_count[0] + 1)),
    )
    handshake, out = drive_link(link, duration_s, 50.45, 30.52, 180.0)
    parent.send("stop")
    fc = parent.recv()
    proc.join(10)
    gaps = np.diff(np.array(fc["arrivals_ns"], dtype=np.int64)) / 1e6
    return {
        "count": len(fc["arrivals_ns"]),
        "rate_hz": 1000.0 / float(np.mean(gaps)),
        "max_gap_ms": float(np.max(gaps)),
        "mean_gap_ms": float(np.mean(gaps)),
        "jitter_ms": float(np.std(gaps)),
        "p99_gap_ms": float(np.percentile(gaps, 99)),
        "gaps_over_245ms": int(np.sum(gaps > C.ARDUPILOT_MAX_GAP_S * 1000)),
        "unhealthy_arrivals": int(fc["summary"]["unhealthy_arrivals"]),
        "decoded_fraction": fc["decoded"] / max(1, len(fc["arrivals_ns"])),
        "signing_handshake_s": handshake.elapsed_s,
        "sender_skipped_ticks": out.skipped_ticks,
        "imu_samples_received": imu_count[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--imu-hz", type=float, default=200.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    runs = [one_run(args.duration, args.rate, args.imu_hz) for _ in range(args.runs)]
    worst = {
        "rate_hz": min(r["rate_hz"] for r in runs),
        "max_gap_ms": max(r["max_gap_ms"] for r in runs),
        "jitter_ms": max(r["jitter_ms"] for r in runs),
    }
    result = {
        "gps_input_rate_hz": statistics.median(r["rate_hz"] for r in runs),
        "gps_input_max_gap_ms": worst["max_gap_ms"],
        "gps_input_jitter_ms": statistics.median(r["jitter_ms"] for r in runs),
        "worst_run": worst,
        "runs": runs,
        "config": {"duration_s": args.duration, "rate_hz": args.rate, "imu_hz": args.imu_hz,
                   "transport": "udp loopback, signed MAVLink 2, FC in a separate process"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1min_before_after": [load_before, os.getloadavg()[0]]},
        "measured_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'run':>4} {'count':>6} {'rate Hz':>8} {'max gap ms':>11} {'jitter ms':>10} "
          f"{'p99 ms':>7} {'>245ms':>7} {'unhealthy':>9} {'handshake s':>11}")
    for i, r in enumerate(runs):
        print(f"{i:>4} {r['count']:>6} {r['rate_hz']:>8.3f} {r['max_gap_ms']:>11.1f} "
              f"{r['jitter_ms']:>10.2f} {r['p99_gap_ms']:>7.1f} {r['gaps_over_245ms']:>7} "
              f"{r['unhealthy_arrivals']:>9} {r['signing_handshake_s']:>11.2f}")
    print(f"bars: rate 5-10 Hz, max gap <= 250 ms, jitter < 50 ms -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
