"""Real ArduPlane SITL in the loop -> bench/results/sitl.json.

    TERRAFIX_ARDUPLANE=/path/to/arduplane .venv/bin/python bench/sitl.py \
        [--topology gps2_primary|only_gps|extnav] [--out FILE] [--no-death]

What it does (terrafix.sitl.switch_run has the details): ArduPlane SITL (built from source,
see ../shared/tools/ardupilot-sitl.md; nothing of ArduPilot is in this repository) at the demo's
take-off point over the dgsamples imagery, its own simulated GNSS as the real receiver (GPS1),
terrafix's ArduPilotLink on SERIAL1 (signed, pre-flight parameter check, GPS_INPUT 10 Hz) and
its GNSS trust gate; an AUTO loop uploaded with MISSION_ITEM_INT; SITL's GPS1 then drifts
(SIM_GPS1_GLTCH_X/Y at 0.5 m/s), is jammed (SIM_GPS1_ENABLE 0), comes back clean; finally the
companion dies while ArduPilot is on terrafix. The position terrafix sends is SITL's truth plus
a correlated 1.5 m error (sigma reported 3 m): this measures ArduPilot and the switch, not the
camera navigation. Runs inside a private network namespace (`unshare -n`; SITL binds every
interface), in a fresh temp folder.

Bars (issue "Real ArduPilot in the loop"): ekf_aiding_lost_s == 0, mission_completed,
spoof_offset_at_switch_m < 30, ardupilot_error_p95_m <= 10 (ArduPilot's GLOBAL_POSITION_INT vs
SIM_STATE while on terrafix), gps_input_max_gap_ms <= 250; switch_to_terrafix_s (spoof start
to ArduPilot's position on terrafix) reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

BARS = (
    ("ekf_aiding_lost_s", "== 0", lambda v: v == 0),
    ("mission_completed", "true", lambda v: v is True),
    ("gate_closed_after_spoof_s", "> 0", lambda v: v is not None and v > 0),
    ("switch_to_terrafix_s", "> 0", lambda v: v is not None and v > 0),
    ("spoof_offset_at_switch_m", "< 30", lambda v: v is not None and v < 30),
    ("ardupilot_error_p95_m", "<= 10", lambda v: v is not None and v <= 10),
    ("gps_input_max_gap_ms", "<= 250", lambda v: v is not None and v <= 250),
)
CLOSED_LOOP_FIGURES = ("terrafix_error_p95_m", "terrafix_error_p95_on_terrafix_m",
                       "terrafix_inside95_share", "frames_processed", "registrations_fused")
"""Reported (no bar of their own) for the closed loop: terrafix's own accuracy and honesty.
The gate and the switch must come after the spoof began (> 0): a negative time is a closure on
clean GNSS, and the spoof offset "at the switch" is then 0 without meaning anything."""


def _table(result: dict) -> str:
    lines = [f"{'metric':32s} {'value':>10s}  bar"]
    for key, bar, ok in BARS:
        v = result.get(key)
        lines.append(f"{key:32s} {v!s:>10s}  {bar:9s} {'ok' if ok(v) else 'MISSED'}")
    for key in CLOSED_LOOP_FIGURES:
        if key in result:
            lines.append(f"{key:32s} {result[key]!s:>10s}")
    death = result.get("companion_death")
    if death:
        lines.append(f"{'companion death: aiding lost s':32s} {death['ekf_aiding_lost_s']!s:>10s}")
        lines.append(f"{'companion death: error p95 m':32s} "
                     f"{death['ardupilot_error_p95_m']!s:>10s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--topology", default="gps2_primary",
                    choices=("gps2_primary", "only_gps", "extnav"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-death", action="store_true", help="skip the companion-death phase")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--navigation", choices=("stand-in", "terrafix"), default="stand-in",
                    help="stand-in: SITL truth + a correlated error (ArduPilot's side of the "
                    "switch); terrafix: the onboard program with its camera navigation "
                    "(closed loop) -> sitl-closed-loop.json")
    ap.add_argument("--quick", action="store_true",
                    help="shorter phases (3 loops, 10 s settle, 20 s jam): ~5 min")
    args = ap.parse_args(argv)
    out = args.out or (RESULTS / ("sitl-closed-loop.json" if args.navigation == "terrafix"
                                  else "sitl.json" if args.topology == "gps2_primary"
                                  else f"sitl-{args.topology}.json"))
    from terrafix.sitl.process import in_private_netns, run_in_private_netns

    if not in_private_netns():
        # SITL listens on every interface: run this very script again, isolated
        rc = run_in_private_netns([sys.executable, __file__, *(argv if argv is not None
                                                                else sys.argv[1:])])
        if rc == 0 and out.is_file():
            print(_table(json.loads(out.read_text())))
        return rc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    from terrafix.sitl.process import arduplane_binary
    from terrafix.sitl.switch_run import SwitchRunConfig, main_in_netns

    binary = arduplane_binary()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    cfg = SwitchRunConfig(topology=args.topology, companion_death=not args.no_death,
                          seed=args.seed)
    if args.quick:
        import dataclasses

        cfg = dataclasses.replace(cfg, loops=3, settle_s=10.0, jam_after_switch_s=10.0,
                                  jam_s=20.0, death_observe_s=15.0)
    if args.navigation == "terrafix":
        from terrafix.sitl.navigation_run import main_in_netns as closed_loop

        result = closed_loop(cfg, out)
    else:
        result = main_in_netns(cfg, out)
    result = {
        "command": "bench/sitl.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        **result,
        "bars": {k: {"bar": bar, "met": ok(result.get(k))} for k, bar, ok in BARS},
        "arduplane": {"binary": str(binary), "version": "ArduPlane V4.7.0-dev (upstream "
                      "90700977c553d2dfd95a305acf1c3e098e4d9477)"},
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1min_before_after": [load_before, os.getloadavg()[0]]},
        "measured_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
