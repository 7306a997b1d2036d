"""The ray-ground intersection, its analytical Jacobian, and agreement with the simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrafix.camera import AiCameraConfig
from terrafix.geo import LocalFrame
from terrafix.geo.rotation import euler_to_R_body_to_ned
from terrafix.sim.ai_camera import AiCameraSim, GimbalState
from terrafix.sim.dataset import TruthState
from terrafix.targeting.geometry import (
    CameraConstants,
    GimbalFrame,
    intersect,
    jacobian,
    numerical_jacobian,
)


def _random_case(rng: np.random.Generator, frame: GimbalFrame
                 ) -> tuple[np.ndarray, CameraConstants]:
    cam = AiCameraConfig()
    zoom = rng.uniform(1.0, 10.0)
    K = cam.intrinsics(zoom)
    k = CameraConstants(K.fx, K.cx, K.cy, np.array([0.3, -0.1, 0.1]), frame)
    off_nadir = math.radians(rng.uniform(5.0, 70.0))
    x = np.array([rng.normal(0, 100), rng.normal(0, 100), -rng.uniform(100, 500),
                  rng.normal(0, 0.2), rng.normal(0, 0.1), rng.uniform(-math.pi, math.pi),
                  rng.normal(0, 0.02), off_nadir - math.pi / 2, rng.uniform(-math.pi, math.pi),
                  rng.normal(0, 0.01), rng.uniform(0, K.width - 1), rng.uniform(0, K.height - 1),
                  rng.normal(0, 5)])
    return x, k


@pytest.mark.parametrize("frame", list(GimbalFrame))
def test_analytical_jacobian_matches_central_differences(frame: GimbalFrame) -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(40):
        x, k = _random_case(rng, frame)
        hit = intersect(x, k)
        if not hit.hits or hit.slant_range_m > 3000:
            continue
        J = jacobian(x, k)
        N = numerical_jacobian(x, k)
        scale = np.abs(N).max(axis=0) + 1e-6  # per-parameter scale of the derivative
        assert np.all(np.abs(J - N) <= 1e-5 * scale + 1e-6), (frame, x)
        checked += 1
    assert checked >= 20


def test_aircraft_roll_and_pitch_do_not_move_a_stabilised_gimbal() -> None:
    x, k = _random_case(np.random.default_rng(3), GimbalFrame.HEADING)
    k = CameraConstants(k.f_px, k.cx_px, k.cy_px, np.zeros(3), GimbalFrame.HEADING)
    J = jacobian(x, k)
    assert np.allclose(J[:, 3:5], 0.0)  # roll, pitch
    assert np.linalg.norm(J[:2, 5]) > 1.0  # yaw moves the point


def test_ray_above_the_horizon_does_not_hit() -> None:
    x, k = _random_case(np.random.default_rng(1), GimbalFrame.BODY)
    x[3:6] = 0.0
    x[7] = math.radians(10.0)  # tilted 10 degrees above the horizon
    x[10], x[11] = k.cx_px, k.cy_px
    hit = intersect(x, k)
    assert not hit.hits
    assert np.all(np.isnan(hit.p_ground_ned))
    with pytest.raises(ValueError):
        jacobian(x, k)


def test_geometry_agrees_with_the_simulator_truth() -> None:
    """Two independent code paths (camera.py through the simulator, and targeting.geometry)
    put the same pixel on the same ground point."""
    frame = LocalFrame(40.16, -105.1, 1520.0)

    class FlatWorld:
        ground_alt_m = 1500.0

        def ground_down_m(self, fr: LocalFrame) -> float:
            return fr.alt0_m - self.ground_alt_m

    sim = AiCameraSim(FlatWorld(), frame)
    rng = np.random.default_rng(11)
    for _ in range(20):
        euler = np.array([rng.normal(0, 0.2), rng.normal(0, 0.1), rng.uniform(-3, 3)])
        R = euler_to_R_body_to_ned(*euler)
        p = np.array([rng.normal(0, 50), rng.normal(0, 50), -200.0])
        truth = TruthState(0, p, 0.0, 0.0, 0.0, np.zeros(3), np.array([1.0, 0, 0, 0]), R, euler,
                           np.zeros(3), np.zeros(3))
        g = GimbalState(rng.uniform(-180, 180), rng.uniform(-80, -30), rng.uniform(1, 10))
        px = (rng.uniform(0, 1919), rng.uniform(0, 1079))
        p_sim = sim.ground_point(truth, g, px)
        K = sim.camera.intrinsics(g.zoom)
        k = CameraConstants(K.fx, K.cx, K.cy, np.array(sim.camera.p_gimbal_in_body),
                            GimbalFrame.BODY)
        x = np.array([*p, *euler, 0.0, math.radians(g.tilt_deg), math.radians(g.pan_deg), 0.0,
                      *px, sim.ground_down_m()])
        hit = intersect(x, k)
        if p_sim is None:
            assert not hit.hits
            continue
        assert hit.hits
        assert np.allclose(hit.p_ground_ned, p_sim, atol=1e-6)
        back = sim.pixel_of(truth, g, p_sim)
        assert back is not None and np.allclose(back, px, atol=1e-6)


def test_jacobian_on_a_sloped_ground_matches_central_differences() -> None:
    """With the ground's local slope the Jacobian is that of the intersection with the tilted
    plane through the hit (x[12] moving it vertically); here checked against central
    differences of that tilted-plane intersection, and it differs from the flat one."""
    from terrafix.targeting.geometry import intersect_with_jacobian

    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(40):
        x, k = _random_case(rng, GimbalFrame.BODY)
        hit0 = intersect(x, k)
        if not hit0.hits or hit0.slant_range_m > 3000:
            continue
        slope = (float(rng.uniform(-0.2, 0.2)), float(rng.uniform(-0.2, 0.2)))
        p_ref = hit0.p_ground_ned

        def on_slope(xx: np.ndarray, k: CameraConstants = k, slope: tuple = slope,
                     p_ref: np.ndarray = p_ref) -> np.ndarray:
            # down = xx[12] + slope . (ne - ne_ref): intersect the ray with it (closed form)
            h = intersect(np.r_[xx[:12], 0.0], k)
            c, r = h.p_cam_ned, h.ray_ned
            normal = np.array([-slope[0], -slope[1], 1.0])
            level = xx[12] - slope[0] * p_ref[0] - slope[1] * p_ref[1]
            return c + (level - normal @ c) / (normal @ r) * r

        assert np.allclose(on_slope(x), p_ref, atol=1e-6)
        steps = np.array([1e-3] * 3 + [1e-7] * 6 + [1e-7, 1e-4, 1e-4, 1e-3])
        N = np.column_stack([(on_slope(x + np.eye(13)[j] * steps[j])
                              - on_slope(x - np.eye(13)[j] * steps[j])) / (2 * steps[j])
                             for j in range(13)])
        _hit, J = intersect_with_jacobian(x, k, slope)
        assert J is not None
        scale = np.abs(N).max(axis=0) + 1e-6
        assert np.all(np.abs(J - N) <= 1e-5 * scale + 1e-6), (x, slope)
        if abs(slope[0]) + abs(slope[1]) > 0.1:
            assert np.abs(J - jacobian(x, k)).max() > 1e-3
        checked += 1
    assert checked >= 20
