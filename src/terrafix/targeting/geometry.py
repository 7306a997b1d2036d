"""Ray-ground intersection of one AI-camera pixel and its analytical Jacobian.

Why an explicit parameter vector: every uncertain input of the localisation (navigation
position, aircraft attitude, gimbal angles, focal length, pixel, ground height) is one entry of
`x` (shape (13,), order in PARAMS), so the 95% ellipse is J P Jᵀ with P the block-diagonal
input covariance and J the (3, 13) Jacobian below: a linearised propagation that is exact for
small errors and cheap (no sampling on the request path). The Jacobian is analytical (tests
compare it with central differences).

Frames (camera.py conventions): camera x right, y down, z optical axis; gimbal x along the
optical axis (camera z), gimbal y = camera x, gimbal z = camera y; body FRD; local NED of the
flight. The gimbal's Euler angles (roll, tilt, pan; aerospace ZYX) are relative to a base frame
chosen by `GimbalFrame`:
- BODY: the aircraft body (a gimbal that reports encoder angles; AiCameraConfig's convention);
- HEADING: level, yaw aligned with the aircraft heading (MAVLink's "vehicle frame" of
  GIMBAL_DEVICE_ATTITUDE_STATUS: roll and pitch relative to the horizon, yaw relative to the
  vehicle's heading), so only the aircraft yaw enters;
- EARTH: NED itself (yaw relative to north), the aircraft attitude does not enter at all.
The lever arm p_gimbal_in_body always turns with the body.

The ground is the plane down = ground_down_m (flat ground at the terrain height); for the
Jacobian it may be tilted (a DEM's local slope at the hit, `slope_down_ne`): on a slope the
errors move the hit along the terrain, not along a horizontal plane (a ray 45 deg off the
vertical on a 10% slope facing it moves ~10% less, away from it ~10% more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from terrafix.geo.rotation import euler_to_R_body_to_ned, skew

PARAMS = ("north_m", "east_m", "down_m", "roll_rad", "pitch_rad", "yaw_rad",
          "gimbal_roll_rad", "gimbal_tilt_rad", "gimbal_pan_rad", "log_focal", "u_px", "v_px",
          "ground_down_m")
"""Order of the entries of the parameter vector x (log_focal: log of the focal-length scale,
0 at the reported zoom, so its sigma is a relative focal error)."""
N_PARAMS = len(PARAMS)

R_CAM_TO_GIMBAL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
_E1, _E2, _E3 = np.eye(3)


class GimbalFrame(StrEnum):
    """What the gimbal angles are relative to (see the module docstring)."""

    BODY = "body"
    HEADING = "heading"
    EARTH = "earth"


@dataclass(frozen=True, slots=True)
class CameraConstants:
    """What is not uncertain in a request: principal point (px), focal length at the reported
    zoom (px), lever arm of the gimbal in the body (3,) m and the gimbal's reference frame."""

    f_px: float
    cx_px: float
    cy_px: float
    p_gimbal_in_body: np.ndarray
    gimbal_frame: GimbalFrame = GimbalFrame.BODY


@dataclass(frozen=True, slots=True)
class RayHit:
    """The intersection: ground point (3,) NED m, camera centre (3,) NED m, ray direction
    (3,) NED (unnormalised, camera-z component 1), the ray's angle from the vertical (rad) and
    `hits` False when the ray does not go down (then the point is NaN)."""

    p_ground_ned: np.ndarray
    p_cam_ned: np.ndarray
    ray_ned: np.ndarray
    off_vertical_rad: float
    hits: bool

    @property
    def slant_range_m(self) -> float:
        return float(np.linalg.norm(self.p_ground_ned - self.p_cam_ned))


def _Rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _Ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _Rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _euler_and_derivatives(roll: float, pitch: float, yaw: float
                           ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """R = Rz(yaw) Ry(pitch) Rx(roll) (3, 3) and dR/droll, dR/dpitch, dR/dyaw."""
    Rx, Ry, Rz = _Rx(roll), _Ry(pitch), _Rz(yaw)
    R = Rz @ Ry @ Rx
    d_roll = Rz @ Ry @ Rx @ skew(_E1)
    d_pitch = Rz @ Ry @ skew(_E2) @ Rx
    d_yaw = skew(_E3) @ R
    return R, (d_roll, d_pitch, d_yaw)


def _base(x: np.ndarray, frame: GimbalFrame
          ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Rotation base->NED of the gimbal's reference frame and its derivatives by the body's
    roll, pitch, yaw."""
    z = np.zeros((3, 3))
    if frame is GimbalFrame.BODY:
        return _euler_and_derivatives(x[3], x[4], x[5])
    if frame is GimbalFrame.HEADING:
        Rz = _Rz(x[5])
        return Rz, (z, z, skew(_E3) @ Rz)
    return np.eye(3), (z, z, z)


def intersect(x: np.ndarray, k: CameraConstants) -> RayHit:
    """Ground point of the pixel for parameters x (13,) (see PARAMS)."""
    x = np.asarray(x, dtype=np.float64)
    R_b2n = euler_to_R_body_to_ned(x[3], x[4], x[5])
    R_base, _ = _base(x, k.gimbal_frame)
    R_g = euler_to_R_body_to_ned(x[6], x[7], x[8])
    R_c2n = R_base @ R_g @ R_CAM_TO_GIMBAL
    f = k.f_px * math.exp(x[9])
    ray_c = np.array([(x[10] - k.cx_px) / f, (x[11] - k.cy_px) / f, 1.0])
    r = R_c2n @ ray_c
    c = x[:3] + R_b2n @ k.p_gimbal_in_body
    off_vertical = math.acos(max(-1.0, min(1.0, r[2] / float(np.linalg.norm(r)))))
    h = x[12] - c[2]
    if r[2] <= 1e-12 or h <= 0.0:
        return RayHit(np.full(3, np.nan), c, r, off_vertical, False)
    return RayHit(c + (h / r[2]) * r, c, r, off_vertical, True)


def jacobian(x: np.ndarray, k: CameraConstants) -> np.ndarray:
    """(3, 13) d p_ground_ned / d x at x (the ray must hit the ground there)."""
    _hit, J = intersect_with_jacobian(x, k)
    if J is None:
        raise ValueError("the ray does not hit the ground: no Jacobian")
    return J


def intersect_with_jacobian(x: np.ndarray, k: CameraConstants,
                            slope_down_ne: tuple[float, float] = (0.0, 0.0)
                            ) -> tuple[RayHit, np.ndarray | None]:
    """`intersect` and `jacobian` in one pass (the request path): the hit, and its (3, 13)
    Jacobian or None when the ray misses the ground (or runs along the tilted ground).

    slope_down_ne: the ground's slope at the hit, d(down)/d(north), d(down)/d(east) (m/m;
    minus the terrain's rise), for the Jacobian of the intersection with the plane through
    the hit with that slope (x[12] then moves that plane vertically)."""
    x = np.asarray(x, dtype=np.float64)
    R_b2n, dR_b2n = _euler_and_derivatives(x[3], x[4], x[5])
    if k.gimbal_frame is GimbalFrame.BODY:
        R_base, dR_base = R_b2n, dR_b2n
    else:
        R_base, dR_base = _base(x, k.gimbal_frame)
    R_g, dR_g = _euler_and_derivatives(x[6], x[7], x[8])
    f = k.f_px * math.exp(x[9])
    du, dv = (x[10] - k.cx_px) / f, (x[11] - k.cy_px) / f
    ray_c = np.array([du, dv, 1.0])
    Rg_c = R_g @ R_CAM_TO_GIMBAL
    R_c2n = R_base @ Rg_c
    r = R_c2n @ ray_c
    lever = np.asarray(k.p_gimbal_in_body, dtype=np.float64)
    c = x[:3] + R_b2n @ lever
    off_vertical = math.acos(max(-1.0, min(1.0, r[2] / float(np.linalg.norm(r)))))
    h = x[12] - c[2]
    if r[2] <= 1e-12 or h <= 0.0:
        return RayHit(np.full(3, np.nan), c, r, off_vertical, False), None
    t = h / r[2]
    hit = RayHit(c + t * r, c, r, off_vertical, True)
    normal = np.array([-slope_down_ne[0], -slope_down_ne[1], 1.0])  # ground: normal . p = k
    n_r = float(normal @ r)
    if n_r <= 1e-9 * float(np.linalg.norm(r)):
        return hit, None  # the ray runs along (or out of) the sloped ground there
    A = np.eye(3) - np.outer(r, normal) / n_r  # d p / d c, and d p / d r = t A
    # columns of d c / d x and d r / d x, then one product with A
    D = np.zeros((3, N_PARAMS))
    D[:, 0:3] = np.eye(3) / t  # position moves c (scaled: everything below is times t)
    g_ray = Rg_c @ ray_c
    for i in range(3):  # body attitude: moves the lever arm and (per frame) the ray
        D[:, 3 + i] = dR_b2n[i] @ lever / t + dR_base[i] @ g_ray
    cam_ray = R_CAM_TO_GIMBAL @ ray_c
    for i in range(3):  # gimbal angles
        D[:, 6 + i] = R_base @ (dR_g[i] @ cam_ray)
    D[:, 9] = R_c2n @ np.array([-du, -dv, 0.0])
    D[:, 10] = R_c2n[:, 0] / f
    D[:, 11] = R_c2n[:, 1] / f
    J = t * (A @ D)
    J[:, 12] = r / n_r
    return hit, J


def numerical_jacobian(x: np.ndarray, k: CameraConstants, steps: np.ndarray | None = None
                       ) -> np.ndarray:
    """(3, 13) central differences of `intersect` (for tests and diagnostics)."""
    x = np.asarray(x, dtype=np.float64)
    if steps is None:
        steps = np.array([1e-3] * 3 + [1e-7] * 6 + [1e-7, 1e-4, 1e-4, 1e-3])
    J = np.zeros((3, N_PARAMS))
    for j in range(N_PARAMS):
        dx = np.zeros(N_PARAMS)
        dx[j] = steps[j]
        J[:, j] = (intersect(x + dx, k).p_ground_ned - intersect(x - dx, k).p_ground_ned) \
            / (2 * steps[j])
    return J
