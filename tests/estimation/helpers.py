"""Closed-form truth for unit tests: coordinated turns and straight lines with exact IMU.

A coordinated level turn at speed V and yaw rate ω has bank φ = atan(Vω/g), no sideslip,
specific force R_body_to_nedᵀ (a - g) and body rate Rx(φ)ᵀ [0, 0, ω]: everything is known
exactly, so propagation errors are the filter's own. Used until (and alongside) the
simulator's trajectories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from terrafix.estimation.config import GRAVITY_MPS2
from terrafix.estimation.state import CORE_DIM, EskfState
from terrafix.geo.rotation import R_to_quat, euler_to_R_body_to_ned
from terrafix.measurements import ImuSample


@dataclass(frozen=True)
class TurnTruth:
    """p(t), v(t), R(t) and exact IMU of a level coordinated turn (ω = 0: straight line).

    speed_mps, yaw_rate_radps, yaw0_rad; pitch_rad adds a constant nose-up attitude with the
    same flight path (a tilted body: the accelerometer then reads the tilt).
    """

    speed_mps: float = 16.7
    yaw_rate_radps: float = 0.0
    yaw0_rad: float = 0.3
    pitch_rad: float = 0.0
    g: float = GRAVITY_MPS2

    def yaw(self, t: float) -> float:
        return self.yaw0_rad + self.yaw_rate_radps * t

    def position(self, t: float) -> np.ndarray:
        V, w, y0 = self.speed_mps, self.yaw_rate_radps, self.yaw0_rad
        if w == 0.0:
            return V * t * np.array([math.cos(y0), math.sin(y0), 0.0])
        y = self.yaw(t)
        return (V / w) * np.array([math.sin(y) - math.sin(y0), -(math.cos(y) - math.cos(y0)),
                                   0.0])

    def velocity(self, t: float) -> np.ndarray:
        y = self.yaw(t)
        return self.speed_mps * np.array([math.cos(y), math.sin(y), 0.0])

    def accel_ned(self, t: float) -> np.ndarray:
        y = self.yaw(t)
        return self.speed_mps * self.yaw_rate_radps * np.array([-math.sin(y), math.cos(y), 0.0])

    @property
    def bank_rad(self) -> float:
        return math.atan2(self.speed_mps * self.yaw_rate_radps, self.g)

    def R_body_to_ned(self, t: float) -> np.ndarray:
        return euler_to_R_body_to_ned(self.bank_rad, self.pitch_rad, self.yaw(t))

    def imu(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(specific force body, body rate) exactly."""
        R = self.R_body_to_ned(t)
        f_body = R.T @ (self.accel_ned(t) - np.array([0.0, 0.0, self.g]))
        w_body = R.T @ np.array([0.0, 0.0, self.yaw_rate_radps])
        return f_body, w_body


def imu_stream(truth: TurnTruth, t0_s: float, t1_s: float, rate_hz: float = 200.0,
               rng: np.random.Generator | None = None, accel_density: float = 0.0,
               gyro_density: float = 0.0, accel_bias: np.ndarray | None = None,
               gyro_bias: np.ndarray | None = None) -> list[ImuSample]:
    """IMU samples at rate_hz on [t0, t1] (ns times from 0), with optional white noise of
    the given densities (per-sample sigma = density·√rate) and constant biases."""
    n = round((t1_s - t0_s) * rate_hz)
    out = []
    sa = accel_density * math.sqrt(rate_hz)
    sg = gyro_density * math.sqrt(rate_hz)
    ba = np.zeros(3) if accel_bias is None else accel_bias
    bg = np.zeros(3) if gyro_bias is None else gyro_bias
    for i in range(n + 1):
        t = t0_s + i / rate_hz
        f, w = truth.imu(t)
        if rng is not None:
            f = f + sa * rng.standard_normal(3)
            w = w + sg * rng.standard_normal(3)
        out.append(ImuSample(t_ns=round(t * 1e9), accel_body_mps2=f + ba, gyro_body_radps=w + bg))
    return out


def random_state(rng: np.random.Generator, n_clones: int = 2) -> EskfState:
    """A state with random nominal values and a random SPD covariance (for Jacobian tests)."""
    R = euler_to_R_body_to_ned(*rng.uniform(-0.4, 0.4, 2), rng.uniform(-3, 3))
    q = R_to_quat(R)
    n = CORE_DIM + 3 * n_clones
    A = rng.standard_normal((n, n))
    return EskfState(
        t_ns=1_000_000_000,
        p_ned=rng.normal(0, 100, 3),
        v_ned=rng.normal(0, 10, 3),
        q_body_to_ned=q,
        R_body_to_ned=R,
        accel_bias_mps2=rng.normal(0, 0.1, 3),
        gyro_bias_radps=rng.normal(0, 0.01, 3),
        baro_bias_m=float(rng.normal(0, 5)),
        cov=A @ A.T / n + np.eye(n),
        clone_t_ns=[900_000_000 - 100_000_000 * k for k in range(n_clones)][::-1],
        clone_p_ned=rng.normal(0, 100, (n_clones, 3)),
    )
