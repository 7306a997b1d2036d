"""Peer process for the MAVLink tracking test: a gimballed camera that also plays the ground
station (it reports tracking and collects CAMERA_TRACKING_GEO_STATUS), talking to the code
under test only through real MAVLink bytes on a UDP loopback socket."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from pymavlink.dialects.v20 import all as mavlink

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import HeartbeatSpec, MavlinkChannel
from terrafix.geo.rotation import R_to_quat, euler_to_R_body_to_ned


def camera_gcs_peer_main(ctrl, options: dict[str, Any]) -> None:
    ch = MavlinkChannel("udpin:127.0.0.1:0", system_id=1,
                        component_id=mavlink.MAV_COMP_ID_CAMERA,
                        heartbeat=HeartbeatSpec(mavlink.MAV_TYPE_CAMERA, C.AUTOPILOT_INVALID),
                        name="camera-gcs-peer")
    lock = threading.Lock()
    geo: list[dict[str, Any]] = []

    def on_geo(msg: Any, arrival_ns: int) -> None:
        with lock:
            geo.append({"arrival_ns": arrival_ns, **{k: getattr(msg, k)
                                                     for k in msg.get_fieldnames()}})

    ch.subscribe("CAMERA_TRACKING_GEO_STATUS", on_geo)
    ch.start()
    ctrl.send(("ready", ch.local_address()))
    q = R_to_quat(euler_to_R_body_to_ned(0.0, math.radians(options["tilt_deg"]),
                                         math.radians(options["pan_deg"])))
    period = 1.0 / options.get("rate_hz", 10.0)
    try:
        while True:
            if ctrl.poll(period):
                cmd, *_args = ctrl.recv()
                if cmd == "stop":
                    break
                if cmd == "geo":
                    with lock:
                        ctrl.send(list(geo))
                        geo.clear()
                continue
            ch.send(mavlink.MAVLink_gimbal_device_attitude_status_message(
                0, 0, int(time.monotonic() * 1000) & 0xFFFFFFFF,
                C.GIMBAL_FLAGS_YAW_IN_VEHICLE_FRAME, [float(v) for v in q], math.nan,
                math.nan, math.nan, 0, math.nan, math.nan, 0))
            ch.send(mavlink.MAVLink_camera_fov_status_message(
                0, 0, 0, 0, 0, 0, 0, [math.nan] * 4, options["hfov_deg"], math.nan, 0))
            x, y = options["point"]
            ch.send(mavlink.MAVLink_camera_tracking_image_status_message(
                C.CAMERA_TRACKING_STATUS_ACTIVE, C.CAMERA_TRACKING_MODE_POINT, 0, x, y, 0.01,
                math.nan, math.nan, math.nan, math.nan, 0))
    finally:
        ch.close()
