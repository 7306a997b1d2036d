"""The SITL navigation camera without SITL: SIM_STATE-like truth samples in, frames rendered
from the real imagery at the interpolated pose, triggered on a fixed FC-clock grid."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from terrafix.camera import CameraPose, Extrinsics, Intrinsics
from terrafix.geo import LocalFrame
from terrafix.sitl.camera import SitlCameraSource, TruthBuffer
from terrafix.sitl.control import Truth
from terrafix.sitl.switch_run import DEMO_HOME


def _quat_yaw(yaw: float) -> tuple[float, float, float, float]:
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


def _truth(frame: LocalFrame, t_ns: int, n: float, e: float, agl: float, yaw: float) -> Truth:
    lat, lon, alt = frame.ned_to_lla(np.array([n, e, -agl]))
    return Truth(t_ns, float(lat), float(lon), float(alt), 0.0, 0.0, yaw, (20.0, 0.0, 0.0),
                 _quat_yaw(yaw))


def test_truth_buffer_interpolates_position_and_attitude():
    frame = LocalFrame(DEMO_HOME[0], DEMO_HOME[1], DEMO_HOME[2])
    buf = TruthBuffer(frame)
    buf.add(_truth(frame, 1_000_000_000, 0.0, 0.0, 150.0, 0.0))
    buf.add(_truth(frame, 1_100_000_000, 2.0, 0.0, 150.0, 0.2))
    p, R = buf.pose_at(1_050_000_000)
    np.testing.assert_allclose(p, [1.0, 0.0, -150.0], atol=1e-3)
    assert math.atan2(R[1, 0], R[0, 0]) == pytest.approx(0.1, abs=1e-6)
    assert buf.pose_at(900_000_000) is None and buf.pose_at(1_200_000_000) is None


def test_frames_on_the_fc_clock_grid_rendered_at_the_true_pose():
    from terrafix.sim.world import load_dgsamples_world

    world = load_dgsamples_world("wv3")
    frame = LocalFrame(DEMO_HOME[0], DEMO_HOME[1], DEMO_HOME[2])
    intr = Intrinsics(320, 240, 300.0, 300.0, 159.5, 119.5)
    buf = TruthBuffer(frame)
    offset_ns = 123_456_789  # companion = FC boot + offset (what the link's alignment gives)
    stop = threading.Event()

    def feed() -> None:  # SIM_STATE at 20 Hz: flying north at 20 m/s, 150 m up
        t0 = time.monotonic_ns()
        while not stop.wait(0.05):
            t = time.monotonic_ns()
            buf.add(_truth(frame, t, 20.0 * (t - t0) / 1e9 - 50.0, 0.0, 150.0, 0.0))

    threading.Thread(target=feed, daemon=True).start()
    cam = SitlCameraSource(world, intr, Extrinsics(), frame, buf,
                           lambda fc: fc + offset_ns, lambda c: c - offset_ns, rate_hz=4.0)
    captures: list[int] = []
    cam.on_capture = lambda t, i: captures.append(t)
    frames = []
    try:
        for f in cam:
            frames.append(f)
            if len(frames) == 4:
                break
    finally:
        cam.close()
        stop.set()
    ts = np.array([f.t_ns for f in frames])
    assert np.all((ts - offset_ns) % cam.period_ns == 0)  # triggered on the FC's grid
    assert np.all(np.diff(ts) % cam.period_ns == 0) and np.all(np.diff(ts) > 0)
    assert set(ts) <= set(captures)
    for f in frames:
        assert f.image.shape == (240, 320) and f.image.mean() > 10
        p, R = buf.pose_at(f.t_ns)
        expected = world.render(CameraPose.from_body(p, R, Extrinsics()), intr, frame)
        np.testing.assert_array_equal(f.image, expected)
    # far off the ~1 km image: no frame, counted
    far = TruthBuffer(frame)
    far.add(_truth(frame, 0, 5000.0, 0.0, 150.0, 0.0))
    far.add(_truth(frame, 100, 5000.0, 0.0, 150.0, 0.0))
    off = SitlCameraSource(world, intr, Extrinsics(), frame, far, lambda x: x, lambda x: x)
    assert off.render_at(50) is None and off.off_imagery == 1


def test_published_track_gives_the_distance_from_what_terrafix_sent_nearest_in_time():
    """The switch figure (ArduPilot on terrafix once within REACHED_M of what terrafix sent)
    looks up the position sent nearest the FC's sample, and none when nothing was sent then."""
    from terrafix.sitl.switch_run import PublishedTrack

    frame = LocalFrame(DEMO_HOME[0], DEMO_HOME[1], DEMO_HOME[2])
    rows = []
    for k in (2, 0, 1):  # out of order on purpose
        lat, lon, _ = frame.ned_to_lla(np.array([10.0 * k, 0.0, 0.0]))
        rows.append((1_000_000_000 * (k + 1), float(lat), float(lon)))
    track = PublishedTrack.of(rows)
    lat, lon, _ = frame.ned_to_lla(np.array([10.0, 3.0, 0.0]))
    assert track.distance_m(2_100_000_000, float(lat), float(lon)) == pytest.approx(3.0, abs=0.05)
    assert track.distance_m(1_100_000_000, float(lat), float(lon)) == pytest.approx(
        math.hypot(10.0, 3.0), abs=0.05)
    assert track.distance_m(5_000_000_000, float(lat), float(lon)) is None
    assert PublishedTrack.of([]).distance_m(1, float(lat), float(lon)) is None
