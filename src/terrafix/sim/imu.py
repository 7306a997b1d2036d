"""MEMS IMU model: scale factor, turn-on bias, bias random walk and white noise.

Parameters come from the TDK InvenSense ICM-42688-P, the IMU of many current ArduPilot flight
controllers (Pixhawk 6C/6X, Matek H743, CubeOrange+ among others), datasheet DS-000347 rev 1.7:
- gyroscope rate noise spectral density 2.8 mdps/sqrt(Hz) (Table 1, "Rate Noise Spectral
  Density"), sensitivity scale-factor initial tolerance +-0.5 %, zero-rate output initial
  tolerance +-0.5 dps;
- accelerometer noise spectral density 70 ug/sqrt(Hz) (Table 2), sensitivity initial tolerance
  +-0.5 %, zero-g output initial tolerance +-20 mg.
Not in the datasheet, and therefore stated here as assumptions: the flight controller removes
most of the turn-on offsets (gyro calibration at boot, six-position accelerometer calibration),
leaving residual turn-on biases of 0.05 dps and 3 mg (1 sigma); in-run bias drift is a random
walk of 2e-5 rad/s/sqrt(s) (gyro, ~0.07 dps after 1 h) and 3e-4 m/s^2/sqrt(s) (accel, ~2 mg
after 1 h), representative of temperature-driven drift of consumer MEMS in flight.

Discretisation: white noise per sample has std = density * sqrt(rate_hz) (ideal sampler,
Kalibr/Allan convention); scale factors are drawn uniformly within the datasheet tolerance.
Cross-axis sensitivity, quantisation, vibration and Earth rotation are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from terrafix.sim.noise import random_walk
from terrafix.sim.streams import ImuStream, TruthStream

_G0 = 9.80665


@dataclass(frozen=True, slots=True)
class ImuParams:
    """IMU error parameters (SI). `ideal()` gives a perfect IMU (every term zero)."""

    datasheet: str = "TDK InvenSense ICM-42688-P, DS-000347 rev 1.7"
    gyro_noise_density_radps_per_rthz: float = math.radians(2.8e-3)
    accel_noise_density_mps2_per_rthz: float = 70e-6 * _G0
    gyro_scale_tolerance: float = 0.005
    accel_scale_tolerance: float = 0.005
    gyro_turn_on_bias_radps: float = math.radians(0.05)
    accel_turn_on_bias_mps2: float = 3e-3 * _G0
    gyro_bias_random_walk_radps_per_rts: float = 2e-5
    accel_bias_random_walk_mps2_per_rts: float = 3e-4
    gyro_full_scale_radps: float = math.radians(2000.0)
    accel_full_scale_mps2: float = 16.0 * _G0

    @staticmethod
    def ideal() -> ImuParams:
        return ImuParams(
            datasheet="ideal (all error terms off)",
            gyro_noise_density_radps_per_rthz=0.0, accel_noise_density_mps2_per_rthz=0.0,
            gyro_scale_tolerance=0.0, accel_scale_tolerance=0.0,
            gyro_turn_on_bias_radps=0.0, accel_turn_on_bias_mps2=0.0,
            gyro_bias_random_walk_radps_per_rts=0.0, accel_bias_random_walk_mps2_per_rts=0.0,
        )

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ImuErrors:
    """The error realisation of one flight (for evaluation and tests).

    gyro_bias_radps, accel_bias_mps2: (N, 3) total bias per sample (turn-on + random walk).
    gyro_scale, accel_scale: (3,) scale-factor errors (measured = (1 + s) * true + bias + noise).
    """

    gyro_bias_radps: np.ndarray
    accel_bias_mps2: np.ndarray
    gyro_scale: np.ndarray
    accel_scale: np.ndarray


def simulate_imu(truth: TruthStream, params: ImuParams, rng: np.random.Generator
                 ) -> tuple[ImuStream, ImuErrors]:
    """Measure the truth's angular rate and specific force at the truth's own sample times."""
    t = truth.t_ns
    n = len(t)
    dt_s = float(np.median(np.diff(t))) * 1e-9 if n > 1 else 0.005
    rate_hz = 1.0 / dt_s
    p = params
    gyro_scale = rng.uniform(-1.0, 1.0, 3) * p.gyro_scale_tolerance
    accel_scale = rng.uniform(-1.0, 1.0, 3) * p.accel_scale_tolerance
    gyro_bias = rng.standard_normal(3) * p.gyro_turn_on_bias_radps \
        + random_walk(rng, n, dt_s, p.gyro_bias_random_walk_radps_per_rts, 3)
    accel_bias = rng.standard_normal(3) * p.accel_turn_on_bias_mps2 \
        + random_walk(rng, n, dt_s, p.accel_bias_random_walk_mps2_per_rts, 3)
    gyro_white = rng.standard_normal((n, 3)) * p.gyro_noise_density_radps_per_rthz \
        * math.sqrt(rate_hz)
    accel_white = rng.standard_normal((n, 3)) * p.accel_noise_density_mps2_per_rthz \
        * math.sqrt(rate_hz)
    gyro = (1.0 + gyro_scale) * truth.omega_body_radps + gyro_bias + gyro_white
    accel = (1.0 + accel_scale) * truth.f_body_mps2 + accel_bias + accel_white
    gyro = np.clip(gyro, -p.gyro_full_scale_radps, p.gyro_full_scale_radps)
    accel = np.clip(accel, -p.accel_full_scale_mps2, p.accel_full_scale_mps2)
    return (ImuStream(t_ns=t.copy(), accel_body_mps2=accel, gyro_body_radps=gyro),
            ImuErrors(gyro_bias, accel_bias, gyro_scale, accel_scale))
