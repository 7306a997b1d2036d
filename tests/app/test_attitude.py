"""The complementary attitude used by the odometry: smoother than the FC from frame to frame,
and not tilted away by the gyro bias over time."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from terrafix.app.attitude import ComplementaryAttitude, _rotvec
from terrafix.geo.rotation import euler_to_R_body_to_ned

S = 1_000_000_000


def truth_euler(t: float) -> np.ndarray:
    return np.array([math.radians(20) * math.sin(0.2 * t), math.radians(3) + 0.02 *
                     math.sin(0.5 * t), 0.3 * t])


def body_rate(t: float, h: float = 1e-5) -> np.ndarray:
    R0 = euler_to_R_body_to_ned(*truth_euler(t - h))
    R1 = euler_to_R_body_to_ned(*truth_euler(t + h))
    return _rotvec(R0.T @ R1) / (2 * h)


@pytest.mark.parametrize("seed", [1, 2])
def test_frame_to_frame_rotation_is_smoother_than_the_fc_and_does_not_drift(seed):
    rng = np.random.default_rng(seed)
    bias = rng.standard_normal(3) * math.radians(0.1)  # 2x the simulator's turn-on bias
    slow = rng.standard_normal(3) * math.radians(0.5)
    cf = ComplementaryAttitude(tau_s=3.0, history_s=5.0)
    frames, fc_at_frames = [], []
    for k in range(0, 60 * 200):
        t = k / 200.0
        cf.on_gyro(k * 5_000_000, body_rate(t) + bias + rng.standard_normal(3) * 1e-4 * 14)
        if k % 4 == 0:  # 50 Hz FC attitude with slow + white error
            e = truth_euler(t) + slow + rng.standard_normal(3) * math.radians(0.05)
            R_fc = euler_to_R_body_to_ned(*e)
            cf.on_fc(k * 5_000_000, R_fc)
        if k % 66 == 0 and t > 10:
            tt = k * 5_000_000
            frames.append((t, cf.at(tt), euler_to_R_body_to_ned(*truth_euler(t))))
            fc_at_frames.append(R_fc)

    def rel_err(Ra, Rb, Ta, Tb):  # error of the relative rotation a->b, radians
        return np.linalg.norm(_rotvec((Ra.T @ Rb).T @ (Ta.T @ Tb)))

    cf_err = [rel_err(a[1], b[1], a[2], b[2]) for a, b in itertools.pairwise(frames)]
    fc_err = [rel_err(fa, fb, a[2], b[2]) for fa, fb, a, b in
              zip(fc_at_frames, fc_at_frames[1:], frames, frames[1:], strict=False)]
    assert np.sqrt(np.mean(np.square(cf_err))) < 0.5 * np.sqrt(np.mean(np.square(fc_err)))
    # over 50 s the gyro bias alone would tilt the attitude by ~5 deg; the CF stays within
    # the FC's own slow error plus the bias x tau lag
    tilt = [np.linalg.norm(_rotvec(T.T @ R)) for _, R, T in frames]
    bound = np.linalg.norm(slow) + np.linalg.norm(bias) * 3.0 + math.radians(0.3)
    assert max(tilt) < bound


def test_history_interpolates_and_refuses_times_it_does_not_hold():
    cf = ComplementaryAttitude(tau_s=1.0, history_s=1.0)
    assert cf.at(0) is None
    cf.on_fc(0, np.eye(3))
    for k in range(1, 401):
        cf.on_gyro(k * 5_000_000, np.array([0.0, 0.0, 0.5]))  # 0.5 rad/s yaw for 2 s
    R = cf.at(1_000_000_000 + 2_500_000)
    yaw = math.atan2(R[1, 0], R[0, 0])
    assert yaw == pytest.approx(0.5 * 1.0025, abs=1e-6)
    assert cf.at(100_000_000) is None  # older than the 1 s history
