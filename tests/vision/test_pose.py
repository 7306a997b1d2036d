from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from terrafix.camera import CameraPose, NavCameraConfig, project_ned_to_pixels
from terrafix.geo.rotation import euler_to_R_body_to_ned
from terrafix.vision.pose import PosePriors, solve_pose

CAM = NavCameraConfig()
K = CAM.processing_intrinsics()
CHI2_95 = 5.991


def _case(seed: int, noise_px: float = 1.0):
    rng = np.random.default_rng(seed)
    h = rng.uniform(100, 400)
    rpy = np.radians(rng.uniform(-15, 15, 3)) + np.array([0, 0, rng.uniform(-np.pi, np.pi)])
    R = euler_to_R_body_to_ned(*rpy) @ CAM.extrinsics.R_cam_to_body
    C = np.array([*rng.uniform(-50, 50, 2), -h])
    P = np.column_stack((rng.uniform(-0.7 * h, 0.7 * h, (600, 2)) + C[:2], np.zeros(600)))
    px, ok = project_ned_to_pixels(P, CameraPose(C, R), K)
    keep = ok & K.contains(px)
    P, px = P[keep][:150], px[keep][:150]
    px = px + rng.normal(scale=noise_px, size=px.shape)
    pri = PosePriors()
    dR = euler_to_R_body_to_ned(*(rng.normal(size=3) * [pri.sigma_tilt_rad,
                                                          pri.sigma_tilt_rad,
                                                          pri.sigma_yaw_rad]))
    R_fc = dR @ R
    return P, px, R, R_fc, C, h, pri, rng


@pytest.mark.parametrize("seed", range(5))
def test_free_tilt_pose_recovers_the_camera_from_ground_points(seed: int) -> None:
    P, px, _, R_fc, C, _, pri, rng = _case(seed)
    pri = replace(pri, hold_tilt=False)
    sol = solve_pose(P, px, np.ones(len(P)), K, R_fc, C + np.array([15.0, -10.0, 0.0]),
                     C[2] + rng.normal(scale=2.0), pri)
    assert sol.success
    assert np.linalg.norm(sol.p_cam_ned[:2] - C[:2]) < 1.5
    assert sol.chi2_reduced == pytest.approx(1.0, abs=0.3)


@pytest.mark.parametrize("seed", range(3))
def test_held_tilt_pose_keeps_the_autopilot_tilt_and_fits_position_yaw(seed: int) -> None:
    P, px, R, _, C, _, pri, _ = _case(seed)
    R_fc = euler_to_R_body_to_ned(0.0, 0.0, np.radians(3.0)) @ R  # yaw off only
    sol = solve_pose(P, px, np.ones(len(P)), K, R_fc, C + np.array([15.0, -10.0, 0.0]),
                     C[2], pri)
    assert np.linalg.norm(sol.p_cam_ned[:2] - C[:2]) < 0.5
    assert np.degrees(np.arccos(np.clip((np.trace(sol.R_cam_to_ned @ R.T) - 1) / 2, -1, 1))) \
        < 0.1


@pytest.mark.parametrize("hold_tilt", [True, False])
def test_pose_covariance_is_consistent_over_seeds(hold_tilt: bool) -> None:
    """NEES of the horizontal position: ~95% of 60 seeds inside the 95% ellipse, both when
    the tilt is fitted and when it is held at a noisy autopilot value (the held tilt's
    uncertainty must then be propagated into the covariance)."""
    inside = []
    for seed in range(100, 160):
        P, px, _, R_fc, C, _, pri, rng = _case(seed)
        pri = replace(pri, hold_tilt=hold_tilt)
        sol = solve_pose(P, px, np.ones(len(P)), K, R_fc, C + np.array([5.0, 5.0, 0.0]),
                         C[2] + rng.normal(scale=pri.sigma_height_m), pri)
        d = sol.p_cam_ned[:2] - C[:2]
        inside.append(float(d @ np.linalg.solve(sol.cov_p_ned[:2, :2], d)) <= CHI2_95)
    assert 0.85 <= np.mean(inside) <= 1.0


def test_covariance_inflates_with_unexpected_residuals() -> None:
    P, px, _, R_fc, C, _, pri, _ = _case(7, noise_px=4.0)
    pri = replace(pri, hold_tilt=False)
    sol = solve_pose(P, px, np.ones(len(P)), K, R_fc, C, C[2], pri)
    assert sol.inflation > 4.0
    P2, px2, _, R_fc2, C2, _, _, _ = _case(7, noise_px=1.0)
    sol2 = solve_pose(P2, px2, np.ones(len(P2)), K, R_fc2, C2, C2[2], pri)
    assert np.trace(sol.cov_p_ned) > 2.0 * np.trace(sol2.cov_p_ned)
