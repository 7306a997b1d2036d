"""Short checks of terrafix's GNSS switch against ArduPlane SITL on the ground (tests/sitl).

    python -m terrafix.sitl.ground_check --case switch|defaults --out FILE.json

Run inside a private network namespace (tests do it with `run_in_private_netns`).

- defaults: SITL with plane.parm only (ArduPilot's defaults for GPS2_TYPE, GPS_AUTO_SWITCH):
  the pre-flight check over the signed link must refuse, naming those parameters.
- switch: SITL with docs/ardupilot/terrafix.parm; terrafix publishes SITL's true position
  moved `offset_m` east (so that whose position ArduPilot uses can be seen), the switch to
  terrafix and back is made, then terrafix stops while ArduPilot is on it (GPS_AUTO_SWITCH 4
  must fall back to GPS1). Recorded: ArduPilot's answers, its position relative to truth and
  EKF3's horizontal aiding flag over time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from terrafix.autopilot.ardupilot import ArduPilotLink, ArduPilotLinkConfig
from terrafix.autopilot.errors import FcParameterError
from terrafix.geo import LocalFrame
from terrafix.measurements import NavSolution, SourceLabel
from terrafix.sitl.control import SitlControl, horizontal_error_m
from terrafix.sitl.process import SERIAL1_PORT, ArduPlaneSitl, SitlError
from terrafix.sitl.switch_run import DEMO_HOME


def _east_of_truth_m(ctl: SitlControl) -> float | None:
    """ArduPilot's position minus truth, east component (m), from the latest pair."""
    p, tr = ctl.latest_position(), ctl.latest_truth()
    if p is None or tr is None:
        return None
    return (p.lon_deg - tr.lon_deg) * math.radians(1.0) * 6_378_137.0 * math.cos(
        math.radians(tr.lat_deg))


def _off(x: float | None) -> float:
    """|x| with None (no data yet) as far away."""
    return 1e9 if x is None else abs(x)


def _aiding(ctl: SitlControl) -> bool:
    with ctl.lock:
        return bool(ctl.ekf) and ctl.ekf[-1].aiding_horizontal


def _wait(pred, timeout_s: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def _link() -> ArduPilotLink:
    return ArduPilotLink(ArduPilotLinkConfig(connection=f"tcp:127.0.0.1:{SERIAL1_PORT}",
                                             signing_timeout_s=5.0))


def case_defaults() -> dict[str, Any]:
    with ArduPlaneSitl(DEMO_HOME, parm_files=()) as _sitl:
        ctl = SitlControl()
        ctl.start()
        link = _link()
        try:
            link.open()
            if not link.wait_for_fc(60.0):
                raise SitlError("no HEARTBEAT on SERIAL1")
            link.establish_signing()
            try:
                link.check_switch_parameters()
                refused = None
            except FcParameterError as exc:
                refused = str(exc)
            return {"refused": refused, "signed_accepted": link.stats().channel.signed_accepted}
        finally:
            link.close()
            ctl.close()


def case_switch(offset_m: float = 25.0) -> dict[str, Any]:
    out: dict[str, Any] = {"offset_m": offset_m}
    frame = LocalFrame(DEMO_HOME[0], DEMO_HOME[1], DEMO_HOME[2])
    with ArduPlaneSitl(DEMO_HOME) as sitl:
        ctl = SitlControl()
        ctl.start()
        link = _link()
        stop = threading.Event()
        trace: list[tuple[float, float | None, bool]] = []

        def publish() -> None:
            while not stop.wait(0.05):
                tr = ctl.latest_truth()
                if tr is None:
                    continue
                p = frame.lla_to_ned(tr.lat_deg, tr.lon_deg, tr.alt_m)
                lat, lon, _ = frame.ned_to_lla(np.array([p[0], p[1] + offset_m, p[2]]))
                link.publish(NavSolution(
                    time.monotonic_ns(), float(lat), float(lon), tr.alt_m, np.zeros(3),
                    np.diag([4.0, 4.0, 25.0]), np.eye(3) * 0.25, 0.0,
                    SourceLabel.SATELLITE_ANCHORED, 0.5, False))

        def record() -> None:
            t0 = time.monotonic()
            while not stop.wait(0.2):
                trace.append((round(time.monotonic() - t0, 2), _east_of_truth_m(ctl),
                              _aiding(ctl)))

        try:
            link.open()
            if not link.wait_for_fc(60.0):
                raise SitlError("no HEARTBEAT on SERIAL1")
            sig = link.establish_signing()
            out["signing_s"] = round(sig.elapsed_s, 3)
            out["param_check"] = link.check_switch_parameters()
            link.set_gnss_trusted(True, force=True)
            threading.Thread(target=publish, daemon=True).start()
            threading.Thread(target=record, daemon=True).start()
            link.start_output()
            out["aiding_on_gps1_after_s"] = _wait(
                lambda: _aiding(ctl) and _off(_east_of_truth_m(ctl)) < 2.0, 90.0)
            out["gps2_detected_after_s"] = _wait(
                lambda: any("GPS 2" in t for t in ctl.texts_since(0)), 20.0)
            time.sleep(5.0)  # GPS2 healthy for a while
            for trusted, want_east in ((False, offset_m), (True, 0.0)):
                n = len(link.switches())
                t0 = time.monotonic()
                i0 = len(trace)
                link.set_gnss_trusted(trusted)
                _wait(lambda n=n: len(link.switches()) > n, 10.0)
                sw = link.switches()[-1]
                moved = _wait(lambda w=want_east: _off(_east_of_truth_m(ctl) - w
                                                         if _east_of_truth_m(ctl) is not None
                                                         else None) < 3.0,
                              20.0)
                t_moved = None if moved is None else time.monotonic() - t0
                time.sleep(5.0)
                out[f"switch_to_{'gps1' if trusted else 'terrafix'}"] = {
                    "confirmed": sw.confirmed, "answer": sw.answer,
                    "command_s": round(sw.elapsed_s, 3),
                    "ardupilot_moved_after_s": None if t_moved is None else round(t_moved, 2),
                    "aiding_kept": all(a for _, _, a in trace[i0:]),
                }
            # the companion dies while ArduPilot is on terrafix
            link.set_gnss_trusted(False)
            _wait(lambda: _off(None if (e := _east_of_truth_m(ctl)) is None else e - offset_m)
                  < 3.0, 20.0)
            n_trace = len(trace)
            stop.set()
            link.close()
            t0 = time.monotonic()
            back = _wait(lambda: _off(_east_of_truth_m(ctl)) < 3.0, 30.0)
            time.sleep(3.0)
            with ctl.lock:
                ekf_after = [e.aiding_horizontal for e in ctl.ekf if e.t_ns >= t0 * 1e9]
            out["companion_death"] = {"back_on_gps1_after_s": None if back is None
                                      else round(back, 2),
                                      "aiding_kept": all(ekf_after) and bool(ekf_after)}
            first = next((i for i, (_, _, a) in enumerate(trace) if a), len(trace))
            out["aiding_kept_whole_run"] = all(a for _, _, a in trace[first:n_trace])
            out["trace"] = trace
            out["fc_texts"] = [t for _, _, t in ctl.texts][-40:]
            out["gps_input_max_gap_ms"] = link.output_stats().max_gap_ms
        except Exception:
            sys.stderr.write(sitl.log_text()[-3000:])
            raise
        finally:
            stop.set()
            link.close()
            ctl.close()
    return out


def case_sourceset() -> dict[str, Any]:
    """The old switch: MAV_CMD_SET_EKF_SOURCE_SET 2 with ArduPilot's default source sets."""
    out: dict[str, Any] = {}
    with ArduPlaneSitl(DEMO_HOME) as _sitl:
        ctl = SitlControl()
        ctl.start()
        link = ArduPilotLink(ArduPilotLinkConfig(
            connection=f"tcp:127.0.0.1:{SERIAL1_PORT}", signing_timeout_s=5.0,
            gnss_switch="ekf_source_set", check_fc_parameters=False))
        try:
            link.open()
            if not link.wait_for_fc(60.0):
                raise SitlError("no HEARTBEAT on SERIAL1")
            link.establish_signing()
            out["aiding_on_gps1_after_s"] = _wait(lambda: _aiding(ctl), 90.0)
            time.sleep(3.0)
            t0 = time.monotonic()
            link.set_gnss_trusted(False)
            _wait(lambda: bool(link.switches()), 10.0)
            sw = link.switches()[-1]
            out["ack_confirmed"] = sw.confirmed
            lost = _wait(lambda: not _aiding(ctl), 15.0)
            out["aiding_lost_after_s"] = None if lost is None else round(
                time.monotonic() - t0, 2)
            time.sleep(2.0)
            out["fc_texts"] = ctl.texts_since(int(t0 * 1e9))[:12]
        finally:
            link.close()
            ctl.close()
    return out


def case_onboard(seconds: float = 20.0) -> dict[str, Any]:
    """The onboard program (`terrafix fly`'s code, camera.source = "sitl") takes off against
    SITL on the ground and navigates for `seconds`: what it asked ArduPilot to stream, that
    SITL's receiver reaches the navigator (GPS_RAW_INT arrives after newer IMU samples),
    that the SITL camera renders frames, and ArduPilot's acceptance of its GPS_INPUT."""
    import tempfile

    from terrafix.app.fly import FlyConfig, OnboardProgram
    from terrafix.autopilot import constants as C
    from terrafix.eval.metrics import radius95_m
    from terrafix.sitl.navigation_run import fly_config, prepare_map
    from terrafix.sitl.switch_run import SwitchRunConfig

    cfg = SwitchRunConfig()
    out = Path(tempfile.mkdtemp(prefix="terrafix-onboard-"))
    flight_id = time.strftime("sitl-ground-%Y%m%dT%H%M%SZ", time.gmtime())
    cache, signer = prepare_map(cfg, flight_id)
    with ArduPlaneSitl(DEMO_HOME) as sitl:
        ctl = SitlControl()
        try:
            ctl.start()
            program = OnboardProgram(FlyConfig.from_dict(
                fly_config(cfg, out, cache, signer, flight_id), "sitl ground check"))
            try:
                load_s = program.takeoff()
                # asked again to read ArduPilot's answer: DENIED at 50 Hz, ACCEPTED slower
                answers = program.link.request_telemetry({C.MSG_RAW_IMU: 50.0})
                done = threading.Event()
                summary: list[Any] = []
                thread = threading.Thread(
                    target=lambda: (summary.append(program.navigate(load_s)), done.set()),
                    daemon=True)
                thread.start()
                time.sleep(seconds)
                sol = program.navigator.current_solution()
                program.stop()
                thread.join(60.0)
            except Exception:
                print(sitl.log_text()[-3000:], file=sys.stderr)
                raise
            s = summary[0] if summary else None
            tr = ctl.latest_truth()
            err = None if sol is None or tr is None else horizontal_error_m(
                sol.lat_deg, sol.lon_deg, tr.lat_deg, tr.lon_deg)
            return {
                "takeoff_load_s": load_s,
                "imu_rate_answer": answers.get(C.MSG_RAW_IMU),
                "late_samples_dropped": None if s is None else s.late_samples_dropped,
                "frames_seen": None if s is None else s.frames_seen,
                "gps_input_sent": None if s is None else s.gps_input_sent,
                "radius95_m": None if sol is None else float(
                    radius95_m(np.asarray(sol.cov_p_ned_m2)[None, :2, :2])[0]),
                "error_m": err,
                "gnss_trusted": None if sol is None else bool(sol.gnss_trusted),
                "gps2_fix": ctl.gps2_raw[-1][1] if ctl.gps2_raw else None,
            }
        finally:
            ctl.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=("switch", "defaults", "sourceset", "onboard"),
                    required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO)
    result = {"switch": case_switch, "defaults": case_defaults,
              "sourceset": case_sourceset, "onboard": case_onboard}[args.case]()
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
