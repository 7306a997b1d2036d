"""Quaternion interpolation used for attitude at frame times and truth interpolation."""

from __future__ import annotations

import math

import numpy as np

from terrafix.geo.rotation import R_to_quat, euler_to_R_body_to_ned, quat_slerp, quat_to_R


def _yaw_quat(yaw_rad: float) -> np.ndarray:
    return R_to_quat(euler_to_R_body_to_ned(0.0, 0.0, yaw_rad))


def test_slerp_turns_at_constant_rate_along_the_shorter_arc():
    q0, q1 = _yaw_quat(math.radians(170.0)), _yaw_quat(math.radians(-170.0))
    for a in (0.0, 0.25, 0.5, 1.0):
        R = quat_to_R(quat_slerp(q0, q1, a))
        yaw = math.degrees(math.atan2(R[1, 0], R[0, 0]))
        expected = 170.0 + 20.0 * a
        assert abs((yaw - expected + 180.0) % 360.0 - 180.0) < 1e-9


def test_slerp_of_nearly_equal_quaternions_is_unit_and_between_them():
    q0, q1 = _yaw_quat(0.0), _yaw_quat(1e-6)
    q = quat_slerp(q0, -q1, 0.5)  # the sign of a quaternion does not change its rotation
    assert abs(np.linalg.norm(q) - 1.0) < 1e-12
    R = quat_to_R(q)
    assert abs(math.atan2(R[1, 0], R[0, 0]) - 0.5e-6) < 1e-12
