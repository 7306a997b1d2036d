"""Seeded noise processes shared by the sensor models (vectorised over whole streams)."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def gauss_markov(rng: np.random.Generator, n: int, dt_s: float, sigma: float | np.ndarray,
                 tau_s: float, dims: int = 1) -> np.ndarray:
    """First-order Gauss-Markov process (n, dims), stationary with std `sigma` and correlation
    time `tau_s`, started from its stationary distribution (exact discretisation)."""
    a = float(np.exp(-dt_s / tau_s))
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (dims,))
    w = rng.standard_normal((n, dims)) * sig * np.sqrt(1.0 - a * a)
    x0 = rng.standard_normal(dims) * sig
    out = lfilter([1.0], [1.0, -a], w, axis=0, zi=(a * x0)[None, :])[0]
    return out


def random_walk(rng: np.random.Generator, n: int, dt_s: float,
                density: float | np.ndarray, dims: int = 1) -> np.ndarray:
    """Random walk (n, dims) from zero with a rate random walk density (unit/sqrt(s)):
    after T seconds its std is density * sqrt(T)."""
    sig = np.broadcast_to(np.asarray(density, dtype=np.float64), (dims,)) * np.sqrt(dt_s)
    steps = rng.standard_normal((n, dims)) * sig
    steps[0] = 0.0
    return np.cumsum(steps, axis=0)
