"""Initial states: from the take-off origin, or from the flight controller's own estimate.

REQUIREMENTS N10: the operator gives the take-off origin (σ 5 m horizontal, 10 m vertical);
after a companion reboot in flight there is no origin to trust, so the filter restarts from
the FC's IMU-propagated position with whatever uncertainty the FC can vouch for. Either way
the prior is explicit and honest: the first satellite anchor, not the start-up, shrinks it.

Attitude priors come from the FC's ATTITUDE (roll/pitch are well observed by its own filter,
yaw much less); their sigmas are given about NED axes (roll/pitch about the horizontal,
yaw about down) and turned into the filter's body-frame attitude error here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from terrafix.estimation.errors import EstimationError
from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import R_to_quat, euler_to_R_body_to_ned
from terrafix.measurements import AttitudeSample


@dataclass(frozen=True, slots=True)
class InitialState:
    """A Gaussian prior on the nominal state at time t_ns.

    p_ned_m, v_ned_mps: (3,); q_body_to_ned: (4,) Hamilton [w, x, y, z];
    cov_p_ned_m2, cov_v_ned_m2s2: (3, 3); cov_att_body_rad2: (3, 3) covariance of the
    body-frame attitude error (R_true = R · Exp(δθ)). Biases start at zero with the
    configured sigmas; the barometer offset is learnt from the first barometer sample.
    """

    t_ns: int
    p_ned_m: np.ndarray
    v_ned_mps: np.ndarray
    q_body_to_ned: np.ndarray
    cov_p_ned_m2: np.ndarray
    cov_v_ned_m2s2: np.ndarray
    cov_att_body_rad2: np.ndarray

    def __post_init__(self) -> None:
        for name, shape in (("p_ned_m", (3,)), ("v_ned_mps", (3,)), ("q_body_to_ned", (4,)),
                            ("cov_p_ned_m2", (3, 3)), ("cov_v_ned_m2s2", (3, 3)),
                            ("cov_att_body_rad2", (3, 3))):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape or not np.all(np.isfinite(value)):
                raise EstimationError(f"InitialState.{name} must be finite with shape {shape}, "
                                      f"got {value!r}")
        for name in ("cov_p_ned_m2", "cov_v_ned_m2s2", "cov_att_body_rad2"):
            c = np.asarray(getattr(self, name))
            if not np.allclose(c, c.T) or np.any(np.linalg.eigvalsh(c) <= 0):
                raise EstimationError(f"InitialState.{name} must be symmetric positive "
                                      f"definite, got {c!r}")


def attitude_prior(attitude: AttitudeSample, sigma_roll_pitch_rad: float,
                   sigma_yaw_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """(q_body_to_ned (4,), body-frame attitude error covariance (3, 3)) from FC attitude."""
    R = euler_to_R_body_to_ned(attitude.roll_rad, attitude.pitch_rad, attitude.yaw_rad)
    cov_ned = np.diag([sigma_roll_pitch_rad**2, sigma_roll_pitch_rad**2, sigma_yaw_rad**2])
    # δθ_ned = R δθ_body  ->  cov_body = Rᵀ cov_ned R
    return R_to_quat(R), R.T @ cov_ned @ R


def from_takeoff_origin(t_ns: int, attitude: AttitudeSample, *, sigma_h_m: float = 5.0,
                        sigma_v_m: float = 10.0, height_above_origin_m: float = 0.0,
                        v_ned_mps: np.ndarray | None = None, sigma_vel_mps: float = 0.5,
                        sigma_roll_pitch_rad: float = math.radians(2.0),
                        sigma_yaw_rad: float = math.radians(10.0)) -> InitialState:
    """Prior at the take-off point (the LocalFrame origin), σ 5 m horizontal / 10 m vertical
    (REQUIREMENTS N10). On the ground by default; height_above_origin_m and v_ned_mps let a
    start over the origin already airborne (hand launch, or a simulator that begins in the
    air) say so, with the velocity from the FC."""
    q, cov_att = attitude_prior(attitude, sigma_roll_pitch_rad, sigma_yaw_rad)
    v = np.zeros(3) if v_ned_mps is None else np.asarray(v_ned_mps, dtype=np.float64).copy()
    return InitialState(
        t_ns=t_ns,
        p_ned_m=np.array([0.0, 0.0, -float(height_above_origin_m)]),
        v_ned_mps=v,
        q_body_to_ned=q,
        cov_p_ned_m2=np.diag([sigma_h_m**2, sigma_h_m**2, sigma_v_m**2]),
        cov_v_ned_m2s2=np.eye(3) * sigma_vel_mps**2,
        cov_att_body_rad2=cov_att,
    )


def from_fc_state(t_ns: int, frame: LocalFrame, lat_deg: float, lon_deg: float, alt_m: float,
                  v_ned_mps: np.ndarray, attitude: AttitudeSample, *, sigma_h_m: float,
                  sigma_v_m: float, sigma_vel_mps: float = 1.0,
                  sigma_roll_pitch_rad: float = math.radians(3.0),
                  sigma_yaw_rad: float = math.radians(10.0)) -> InitialState:
    """Prior from the FC's own position/velocity/attitude (GLOBAL_POSITION_INT + ATTITUDE),
    used after a companion restart in flight. The sigmas are what the FC can vouch for
    (its reported accuracy, grown by the time it has been IMU-only); they are required
    arguments because no default would be honest."""
    if sigma_h_m <= 0 or sigma_v_m <= 0:
        raise EstimationError(f"FC state sigmas must be > 0, got h={sigma_h_m}, v={sigma_v_m}")
    q, cov_att = attitude_prior(attitude, sigma_roll_pitch_rad, sigma_yaw_rad)
    return InitialState(
        t_ns=t_ns,
        p_ned_m=np.asarray(frame.lla_to_ned(lat_deg, lon_deg, alt_m), dtype=np.float64),
        v_ned_mps=np.asarray(v_ned_mps, dtype=np.float64).copy(),
        q_body_to_ned=q,
        cov_p_ned_m2=np.diag([sigma_h_m**2, sigma_h_m**2, sigma_v_m**2]),
        cov_v_ned_m2s2=np.eye(3) * sigma_vel_mps**2,
        cov_att_body_rad2=cov_att,
    )
