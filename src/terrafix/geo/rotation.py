"""Rotations: Euler (aerospace ZYX yaw-pitch-roll), matrices and Hamilton quaternions.

Quaternions are Hamilton, scalar first, [w, x, y, z]; `R_a_to_b` maps a vector expressed in
frame a into frame b. `R_body_to_ned` from (roll, pitch, yaw) is the attitude ArduPilot reports.
These are hot-path helpers (IMU rate), hence plain numpy rather than scipy objects.
"""

from __future__ import annotations

import math

import numpy as np


def euler_to_R_body_to_ned(roll_rad: float, pitch_rad: float, yaw_rad: float) -> np.ndarray:
    """(3, 3) rotation body FRD -> NED for aerospace ZYX Euler angles."""
    cr, sr = np.cos(roll_rad), np.sin(roll_rad)
    cp, sp = np.cos(pitch_rad), np.sin(pitch_rad)
    cy, sy = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array(
        [
            [cp * cy, sr * sp * cy - cr * sy, cr * sp * cy + sr * sy],
            [cp * sy, sr * sp * sy + cr * cy, cr * sp * sy - sr * cy],
            [-sp, sr * cp, cr * cp],
        ]
    )


def R_to_euler(R_body_to_ned: np.ndarray) -> tuple[float, float, float]:
    """(roll, pitch, yaw) in radians from a body->NED rotation (yaw in (-pi, pi])."""
    R = R_body_to_ned
    pitch = -np.arcsin(np.clip(R[2, 0], -1.0, 1.0))
    roll = np.arctan2(R[2, 1], R[2, 2])
    yaw = np.arctan2(R[1, 0], R[0, 0])
    return float(roll), float(pitch), float(yaw)


def euler_tilt_axes_ned(R_body_to_ned: np.ndarray) -> np.ndarray:
    """(3, 2) NED rotation axes of an error of the Euler roll (about the body x axis, column
    0) and pitch (about the horizontal axis across the heading, column 1) of R_body_to_ned:
    R(roll + a, pitch + b, yaw) ≈ exp(a J[:, 0] + b J[:, 1]) R, as rotation vectors."""
    R = np.asarray(R_body_to_ned, dtype=np.float64)
    psi = math.atan2(R[1, 0], R[0, 0])
    return np.column_stack([R[:, 0], [-math.sin(psi), math.cos(psi), 0.0]])


def quat_to_R(q: np.ndarray) -> np.ndarray:
    """Hamilton quaternion [w, x, y, z] -> (3, 3) rotation matrix (normalises q)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def R_to_quat(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> Hamilton quaternion [w, x, y, z] with w >= 0."""
    m = np.asarray(R, dtype=np.float64)
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = np.array([0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s,
                      (m[1, 0] - m[0, 1]) / s])
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = np.array([(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s,
                      (m[0, 2] + m[2, 0]) / s])
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = np.array([(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s,
                      (m[1, 2] + m[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = np.array([(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s,
                      (m[1, 2] + m[2, 1]) / s, 0.25 * s])
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def quat_slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Unit quaternion a of the way from q0 to q1 (both (4,), scalar first) along the shorter
    arc; nearly equal quaternions are blended linearly (the arc formula divides by sin of a
    vanishing angle there). a in [0, 1]."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + a * (q1 - q0)
    else:
        th = math.acos(dot)
        q = (math.sin((1 - a) * th) * q0 + math.sin(a * th) * q1) / math.sin(th)
    return q / np.linalg.norm(q)


def quat_multiply(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Hamilton product q1 ⊗ q2 (scalar first)."""
    w1, x1, y1, z1 = q1
    w2, x2, y2, z2 = q2
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def rotvec_to_quat(phi: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) radians -> unit quaternion [w, x, y, z]."""
    angle = float(np.linalg.norm(phi))
    if angle < 1e-12:
        q = np.array([1.0, *(0.5 * np.asarray(phi, dtype=np.float64))])
        return q / np.linalg.norm(q)
    axis = np.asarray(phi, dtype=np.float64) / angle
    return np.array([np.cos(angle / 2.0), *(np.sin(angle / 2.0) * axis)])


def skew(v: np.ndarray) -> np.ndarray:
    """(3, 3) cross-product matrix of v, so that skew(a) @ b == cross(a, b)."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
