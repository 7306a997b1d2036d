"""CAMERA_TRACKING_IMAGE_STATUS + GIMBAL_DEVICE_ATTITUDE_STATUS in, CAMERA_TRACKING_GEO_STATUS
out, through pymavlink bytes over UDP between processes."""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import time

import numpy as np
import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import HeartbeatSpec, MavlinkChannel
from terrafix.measurements import AttitudeSample
from terrafix.targeting import (
    GimbalFrame,
    PoseHistory,
    TargetingConfig,
    TargetLocator,
    TargetRequest,
)
from terrafix.targeting.mavlink_tracking import TrackingGeoReporter, zoom_from_hfov

from .helpers import FRAME, GROUND_ALT_M, solution
from .peers import camera_gcs_peer_main

CTX = mp.get_context("spawn")
OPTIONS = {"tilt_deg": -55.0, "pan_deg": 40.0, "hfov_deg": 25.0, "point": (0.62, 0.41),
           "rate_hz": 10.0}


def _wait_geo(conn, n: int, timeout_s: float) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.3)
        conn.send(("geo",))
        got += conn.recv()
    return got


def test_tracking_geo_status_round_trip_between_processes() -> None:
    conn, child = CTX.Pipe()
    proc = CTX.Process(target=camera_gcs_peer_main, args=(child, OPTIONS), daemon=True)
    proc.start()
    ch = None
    try:
        assert conn.poll(60.0), "peer did not start"
        _, (_, port) = conn.recv()
        now = time.monotonic_ns()
        failsafe_from = now + int(6e9)
        hist = PoseHistory(FRAME, keep_s=120.0)
        for k in range(-20, 600):  # stationary aircraft, 10 Hz, failsafe after 6 s
            t = now + k * 100_000_000
            hist.add_solution(solution(t, 30.0, -40.0, v_ned=(0.0, 0.0, 0.0),
                                       failsafe=t >= failsafe_from))
            hist.add_attitude(AttitudeSample(t, 0.05, -0.03, 1.2))
        cfg = TargetingConfig()
        loc = TargetLocator(cfg, FRAME, GROUND_ALT_M, hist)
        ch = MavlinkChannel(f"udpout:127.0.0.1:{port}", system_id=1,
                            component_id=C.COMPANION_COMPONENT_ID,
                            heartbeat=HeartbeatSpec(C.COMPANION_MAV_TYPE, C.AUTOPILOT_INVALID),
                            name="companion")
        rep = TrackingGeoReporter(loc, ch, min_interval_s=0.05)
        rep.start()
        ch.start()
        geo = _wait_geo(conn, 5, 5.0)
        active = [g for g in geo if g["tracking_status"] == C.CAMERA_TRACKING_STATUS_ACTIVE]
        assert len(active) >= 3, geo
        zoom = zoom_from_hfov(OPTIONS["hfov_deg"], cfg.camera.hfov_at_1x_deg)
        x, y = OPTIONS["point"]
        want = loc.locate(TargetRequest(x * 1920 - 0.5, y * 1080 - 0.5, OPTIONS["pan_deg"],
                                        OPTIONS["tilt_deg"], zoom, 0.0, now + int(1e9),
                                        GimbalFrame.HEADING))
        for g in active:
            assert g["lat"] == round(want.lat_deg * 1e7)
            assert g["lon"] == round(want.lon_deg * 1e7)
            assert g["h_acc"] == pytest.approx(want.h_acc_m, rel=1e-5)
            assert g["dist"] == pytest.approx(want.slant_range_m, rel=1e-5)
            assert g["alt"] == pytest.approx(GROUND_ALT_M)
            assert math.isnan(g["vel_n"]) and math.isnan(g["hdg"])
        # after the navigation goes failsafe the camera's target is no longer localised
        time.sleep(max(0.0, (failsafe_from - time.monotonic_ns()) / 1e9) + 0.3)
        _wait_geo(conn, 1, 2.0)  # drain what was sent before
        late = _wait_geo(conn, 3, 5.0)
        assert late and all(g["tracking_status"] == C.CAMERA_TRACKING_STATUS_ERROR
                            for g in late)
        assert all(math.isnan(g["h_acc"]) for g in late)
        assert rep.stats().last_refusal == "navigation_failsafe"
        assert np.isfinite(want.semi_major_95_m)
    finally:
        if ch is not None:
            ch.close()
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(("stop",))
        proc.join(10)
        if proc.is_alive():
            proc.kill()
