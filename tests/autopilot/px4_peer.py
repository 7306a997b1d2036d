"""A PX4-side peer process: the FC end (FcEmulator's signing rules, which PX4 shares with
MAV_SIGN_CFG >= 1) recording every GLOBAL_POSITION_SENSOR it accepts, while it streams
ATTITUDE + HIGHRES_IMU back as PX4 does. Real bytes over UDP loopback only."""

from __future__ import annotations

import threading
import time
from typing import Any

from pymavlink.dialects.v20 import all as mavlink

from terrafix.autopilot.fc_emulation import FcEmulator


def px4_fc_peer_main(ctrl, options: dict[str, Any]) -> None:
    fc = FcEmulator("udpin:127.0.0.1:0")
    lock = threading.Lock()
    records: list[dict[str, Any]] = []
    gps_input = [0]

    def on_gps(msg: Any, arrival_ns: int) -> None:
        with lock:
            records.append({"arrival_ns": arrival_ns,
                            "signed": bool(msg.get_msgbuf()[2] & 0x01),  # incompat flags
                            **{k: getattr(msg, k) for k in msg.get_fieldnames()}})

    def on_gps_input(_msg: Any, _arrival_ns: int) -> None:
        gps_input[0] += 1

    fc.on("GLOBAL_POSITION_SENSOR", on_gps)
    fc.on("GPS_INPUT", on_gps_input)
    fc.start()
    ctrl.send(("ready", fc.local_address()))
    period = 1.0 / options.get("telemetry_hz", 50.0)
    next_t = time.monotonic()
    try:
        while True:
            if ctrl.poll(max(0.0, next_t - time.monotonic())):
                cmd, *_args = ctrl.recv()
                if cmd == "stop":
                    break
                with lock:
                    if cmd == "records":
                        ctrl.send(list(records))
                    elif cmd == "summary":
                        st = fc.stats()
                        ctrl.send({"gps_input": gps_input[0], "signing_active": fc.signing_active,
                                   "rejected_unsigned": st.rejected_unsigned,
                                   "rejected_bad_signature": st.rejected_bad_signature})
                continue
            next_t += period
            fc.send(mavlink.MAVLink_attitude_message(fc.boot_ms(), 0.01, 0.02, 1.0, 0, 0, 0))
            fc.send(mavlink.MAVLink_highres_imu_message(
                fc.boot_us(), 0.1, 0.0, -9.8, 0.0, 0.0, 0.0, 0.2, 0.0, 0.4, 1000.0, 0.0, 0.0,
                25.0, 0x1FFF, 0))
    finally:
        fc.close()
