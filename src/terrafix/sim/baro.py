"""Barometric altimeter: altitude AMSL with white noise, a set-up offset and slow drift.

Reference part: TE MS5611-01BA03, the classic Pixhawk barometer (resolution 0.012 mbar at
OSR 4096, about 0.1 m). In flight, airflow over the static port and the filter make the
reported altitude noisier (0.3 m white here) and weather changes pressure by ~1 hPa/h (about
8 m/h), modelled as a Gauss-Markov drift of 3 m with a 30-minute correlation time on top of a
QNH set-up offset of 1 m (1 sigma).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from terrafix.sim.attitude import subsample_indices
from terrafix.sim.errors import SimError
from terrafix.sim.noise import gauss_markov
from terrafix.sim.streams import BaroStream, TruthStream


@dataclass(frozen=True, slots=True)
class BaroParams:
    """Barometer error parameters (metres, seconds)."""

    reference_part: str = "TE MS5611-01BA03"
    rate_hz: float = 20.0
    white_sigma_m: float = 0.3
    offset_sigma_m: float = 1.0
    drift_sigma_m: float = 3.0
    drift_tau_s: float = 1800.0

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def simulate_baro(truth: TruthStream, params: BaroParams, rng: np.random.Generator
                  ) -> BaroStream:
    """Barometric altitude AMSL sampled at params.rate_hz from the truth altitude."""
    if params.rate_hz <= 0:
        raise SimError(f"baro rate must be > 0 Hz, got {params.rate_hz}")
    idx = subsample_indices(truth.t_ns, params.rate_hz)
    n = len(idx)
    offset = rng.standard_normal() * params.offset_sigma_m
    drift = gauss_markov(rng, n, 1.0 / params.rate_hz, params.drift_sigma_m,
                         params.drift_tau_s)[:, 0]
    # Start the drift at zero: the altimeter is set at take-off, the weather moves after.
    drift -= drift[0]
    alt = truth.alt_m[idx] + offset + drift + rng.standard_normal(n) * params.white_sigma_m
    return BaroStream(t_ns=truth.t_ns[idx].copy(), alt_m=alt)
