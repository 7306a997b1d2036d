"""Measurement models: one pure function per measurement type (PX4 EKF2 derivation style).

Each function reads the nominal state and its covariance, never changes them, and returns an
`Innovation`: y = z - h(x̂), the Jacobian H = ∂h/∂δx of the prediction with respect to the
error state (layout in `state.py`), the measurement noise R and the innovation covariance
S = H P Hᵀ + R. Every H is checked against a numerical Jacobian in the tests, so the maths
here is the specification of the updates.

Positions are NED metres relative to the take-off origin; the conversion of WGS84 inputs to
NED happens before these functions (the callers own the `LocalFrame`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from terrafix.estimation.state import BB, BG, TH, EskfState, P, V, clone_slice
from terrafix.geo.rotation import skew


@dataclass(frozen=True, slots=True)
class Innovation:
    """y: (m,) innovation z - h(x̂); H: (m, n) Jacobian wrt the error state; R: (m, m)
    measurement noise; S: (m, m) innovation covariance H P Hᵀ + R."""

    y: np.ndarray
    H: np.ndarray
    R: np.ndarray
    S: np.ndarray


def _finish(state: EskfState, y: np.ndarray, H: np.ndarray, R: np.ndarray) -> Innovation:
    S = H @ state.cov @ H.T + R
    return Innovation(y=y, H=H, R=R, S=0.5 * (S + S.T))


def _position_columns(k: int | None) -> slice:
    return P if k is None else clone_slice(k)


def position_model(state: EskfState, z_ned_m: np.ndarray, R: np.ndarray,
                   axes: tuple[int, ...] = (0, 1), *, clone: int | None = None) -> Innovation:
    """Direct observation of selected NED position axes (absolute fix, operator hint).

    z_ned_m: (len(axes),) observed coordinates; R: (len(axes), len(axes)).
    clone: observe clone k (the position at a past frame time) instead of the current one.
    """
    ax = list(axes)
    H = np.zeros((len(ax), state.dim))
    H[:, _position_columns(clone)] = np.eye(3)[ax]
    p = state.p_ned if clone is None else state.clone_p_ned[clone]
    y = np.asarray(z_ned_m, dtype=np.float64) - p[ax]
    return _finish(state, y, H, np.asarray(R, dtype=np.float64))


def odometry_model(state: EskfState, clone_prev: int, clone_curr: int | None,
                   z_delta_ne_m: np.ndarray, R: np.ndarray) -> Innovation:
    """Horizontal displacement between two frame times: h = p_curr[:2] - p_prev[:2].

    clone_prev: clone of the earlier frame; clone_curr: clone of the later frame, or None
    for the current position. z_delta_ne_m: (2,); R: (2, 2).
    """
    p_prev = state.clone_p_ned[clone_prev]
    p_curr = state.p_ned if clone_curr is None else state.clone_p_ned[clone_curr]
    H = np.zeros((2, state.dim))
    H[:, _position_columns(clone_curr)] = np.eye(3)[:2]
    H[:, clone_slice(clone_prev)] -= np.eye(3)[:2]
    y = np.asarray(z_delta_ne_m, dtype=np.float64) - (p_curr[:2] - p_prev[:2])
    return _finish(state, y, H, np.asarray(R, dtype=np.float64))


def baro_model(state: EskfState, alt0_m: float, z_alt_m: float, var_m2: float) -> Innovation:
    """Barometric altitude: h = alt0 - p_d + b_baro (alt0: altitude of the NED origin)."""
    H = np.zeros((1, state.dim))
    H[0, 2] = -1.0
    H[0, BB] = 1.0
    y = np.array([z_alt_m - (alt0_m - state.p_ned[2] + state.baro_bias_m)])
    return _finish(state, y, H, np.array([[var_m2]]))


def gnss_position_model(state: EskfState, z_ned_m: np.ndarray, R: np.ndarray,
                        p_antenna_in_body_m: np.ndarray, axes: tuple[int, ...] = (0, 1, 2),
                        ) -> Innovation:
    """GNSS antenna position: h = p + R_body_to_ned · l (l: antenna lever arm, body FRD).

    With right-hand attitude error R·Exp(δθ): ∂h/∂δθ = -R [l]×.
    """
    ax = list(axes)
    Rb = state.R_body_to_ned
    lever = np.asarray(p_antenna_in_body_m, dtype=np.float64)
    H = np.zeros((len(ax), state.dim))
    H[:, P] = np.eye(3)[ax]
    H[:, TH] = (-Rb @ skew(lever))[ax]
    y = np.asarray(z_ned_m, dtype=np.float64) - (state.p_ned + Rb @ lever)[ax]
    return _finish(state, y, H, np.asarray(R, dtype=np.float64))


def gnss_velocity_model(state: EskfState, z_v_ned_mps: np.ndarray, R: np.ndarray,
                        gyro_body_radps: np.ndarray, p_antenna_in_body_m: np.ndarray,
                        ) -> Innovation:
    """GNSS antenna velocity: h = v + R_body_to_ned · (ω × l), ω = gyro - b_g.

    ∂h/∂δθ = -R [ω × l]×;  ∂h/∂δb_g = R [l]×  (since ∂(ω × l)/∂ω = -[l]×, ω = gyro - b_g).
    """
    Rb = state.R_body_to_ned
    lever = np.asarray(p_antenna_in_body_m, dtype=np.float64)
    omega = np.asarray(gyro_body_radps, dtype=np.float64) - state.gyro_bias_radps
    wxl = np.cross(omega, lever)
    H = np.zeros((3, state.dim))
    H[:, V] = np.eye(3)
    H[:, TH] = -Rb @ skew(wxl)
    H[:, BG] = Rb @ skew(lever)
    y = np.asarray(z_v_ned_mps, dtype=np.float64) - (state.v_ned + Rb @ wxl)
    return _finish(state, y, H, np.asarray(R, dtype=np.float64))


def wrap_angle(a: float) -> float:
    """Angle wrapped to (-pi, pi]."""
    return float(math.atan2(math.sin(a), math.cos(a)))


def heading_model(state: EskfState, z_yaw_rad: float, var_rad2: float) -> Innovation:
    """Yaw (ZYX Euler) of R_body_to_ned: h = atan2(R10, R00), innovation wrapped.

    Under δθ, column 0 of R moves by R[:,1]·δθz - R[:,2]·δθy, hence the two non-zero terms.
    """
    Rb = state.R_body_to_ned
    r00, r10 = Rb[0, 0], Rb[1, 0]
    den = r00 * r00 + r10 * r10
    H = np.zeros((1, state.dim))
    H[0, 7] = (-r00 * Rb[1, 2] + r10 * Rb[0, 2]) / den
    H[0, 8] = (r00 * Rb[1, 1] - r10 * Rb[0, 1]) / den
    y = np.array([wrap_angle(z_yaw_rad - math.atan2(r10, r00))])
    return _finish(state, y, H, np.array([[var_rad2]]))



def time_shift(state: EskfState, inn: Innovation, dt_back_s: float,
               accel_sigma_mps2: float) -> Innovation:
    """Re-express a position-type innovation for a measurement taken dt_back_s before the
    state time (negative: after), when no clone exists at its time.

    The position at the measurement time is predicted as p - v·Δ, so with H_p the position
    columns of H: y' = y + H_p v Δ and H' = H with -Δ·H_p added on δv. The neglected
    acceleration adds (½ σ_a Δ²)² per axis to R (and S). Only the current-position columns
    move; clone columns are already at their own times.
    """
    if dt_back_s == 0.0:
        return inn
    Hp = inn.H[:, P]
    y = inn.y + Hp @ state.v_ned * dt_back_s
    H = inn.H.copy()
    H[:, V] += -dt_back_s * Hp
    extra = (0.5 * accel_sigma_mps2 * dt_back_s * dt_back_s) ** 2
    R = inn.R + extra * (Hp @ Hp.T)
    return _finish(state, y, H, R)


def acceleration_ned(R_body_to_ned: np.ndarray, accel_body_mps2: np.ndarray,
                     accel_bias_mps2: np.ndarray, gravity_mps2: float) -> np.ndarray:
    """(3,) the aircraft's acceleration in NED from a specific force reading (3,), body FRD:
    R (f - b_a) + g."""
    f = np.asarray(accel_body_mps2, dtype=np.float64) - accel_bias_mps2
    return R_body_to_ned @ f + np.array([0.0, 0.0, gravity_mps2])


def velocity_time_shift(state: EskfState, inn: Innovation, a_ned_mps2: np.ndarray,
                        dt_back_s: float, residual_accel_sigma_mps2: float) -> Innovation:
    """Re-express a (3,) NED velocity innovation for a measurement taken dt_back_s before the
    state time: v(t - Δ) ≈ v - a·Δ with a_ned_mps2 (3,) the acceleration the IMU measured
    last, so y' = y + a·Δ; what that acceleration misses over Δ (a bank being rolled in)
    adds (σ Δ)² per axis to R.

    Why: a receiver's report reaches the FC and then the companion 0.2-0.3 s after its fix;
    in a 30 deg turn the velocity turns by ~1.4 m/s in that time, five times the GNSS
    velocity sigma, and the whole GNSS update was gated out in every turn (ArduPlane SITL:
    the estimate coasted 7 m off with the receiver 0.5 m from the truth).
    """
    if dt_back_s == 0.0:
        return inn
    y = inn.y + np.asarray(a_ned_mps2, dtype=np.float64) * dt_back_s
    R = inn.R + np.eye(3) * (residual_accel_sigma_mps2 * dt_back_s) ** 2
    return _finish(state, y, inn.H, R)
