"""The flight controller's own attitude estimate, as ATTITUDE messages would carry it.

ArduPilot's EKF3 attitude on a small fixed-wing is typically within 0.3-1 degree in roll and
pitch and a few degrees in yaw (magnetometer and GNSS-course dependent), with errors that wander
slowly rather than jump. Registration uses this attitude as its prior, so the error is modelled
as slowly varying Gauss-Markov processes plus a little white noise, sampled at ~50 Hz.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from terrafix.sim.errors import SimError
from terrafix.sim.noise import gauss_markov
from terrafix.sim.streams import AttitudeStream, TruthStream


@dataclass(frozen=True, slots=True)
class AttitudeErrorParams:
    """1-sigma errors (rad) and correlation times (s) of the FC attitude estimate."""

    rate_hz: float = 50.0
    roll_pitch_sigma_rad: float = math.radians(0.5)
    roll_pitch_tau_s: float = 60.0
    yaw_sigma_rad: float = math.radians(2.5)
    yaw_tau_s: float = 300.0
    white_sigma_rad: float = math.radians(0.05)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def subsample_indices(t_ns: np.ndarray, rate_hz: float) -> np.ndarray:
    """Indices of `t_ns` closest to a regular grid at `rate_hz` starting at t_ns[0]."""
    period_ns = round(1e9 / rate_hz)
    grid = np.arange(int(t_ns[0]), int(t_ns[-1]) + 1, period_ns, dtype=np.int64)
    idx = np.searchsorted(t_ns, grid)
    idx = np.clip(idx, 0, len(t_ns) - 1)
    prev = np.clip(idx - 1, 0, len(t_ns) - 1)
    idx = np.where(np.abs(t_ns[prev] - grid) < np.abs(t_ns[idx] - grid), prev, idx)
    return np.unique(idx)


def simulate_attitude(truth: TruthStream, params: AttitudeErrorParams,
                      rng: np.random.Generator) -> AttitudeStream:
    """FC attitude estimate = truth Euler angles + slowly varying error, at params.rate_hz."""
    if params.rate_hz <= 0:
        raise SimError(f"attitude rate must be > 0 Hz, got {params.rate_hz}")
    idx = subsample_indices(truth.t_ns, params.rate_hz)
    n = len(idx)
    dt = 1.0 / params.rate_hz
    err = np.empty((n, 3))
    err[:, :2] = gauss_markov(rng, n, dt, params.roll_pitch_sigma_rad, params.roll_pitch_tau_s,
                              2)
    err[:, 2] = gauss_markov(rng, n, dt, params.yaw_sigma_rad, params.yaw_tau_s, 1)[:, 0]
    err += rng.standard_normal((n, 3)) * params.white_sigma_rad
    euler = truth.euler_rad[idx] + err
    euler[:, 2] = _wrap(euler[:, 2])
    return AttitudeStream(t_ns=truth.t_ns[idx].copy(), euler_rad=euler)
