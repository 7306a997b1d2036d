"""Accuracy and consistency of a navigation run against ground truth (ov_eval-style).

Why both: a small error with an over-confident covariance is as dangerous to the autopilot as a
large error, because the covariance is what it uses to weigh our position against its own IMU
dead reckoning. So besides the error distribution (% within 5/20/50 m, p95, max) every run is
scored for consistency: the share of ticks whose horizontal error lies inside the reported 95%
ellipse (a consistent estimator lands near 95%: far above means over-cautious, below means
over-confident) and the NEES (normalised estimation error squared; its mean equals the number
of degrees of freedom for a consistent estimator).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import chi2

from terrafix.eval.errors import EvalError

CHI2_95_2DOF = float(chi2.ppf(0.95, 2))
"""5.991: squared Mahalanobis radius of the 95% ellipse of a 2-D Gaussian."""


@dataclass(frozen=True, slots=True)
class ErrorStats:
    """Distribution of horizontal errors (metres; shares as fractions 0–1)."""

    n: int
    within_5m: float
    within_20m: float
    within_50m: float
    median_m: float
    p95_m: float
    max_m: float
    rmse_m: float
    p_over_30m: float
    p_over_100m: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def error_stats(errors_m: np.ndarray) -> ErrorStats:
    """Statistics of (N,) non-negative errors in metres (NaNs are not allowed: drop no-fix
    ticks before, they are counted separately)."""
    e = np.asarray(errors_m, dtype=np.float64).ravel()
    if e.size == 0:
        raise EvalError("no error samples to summarise: expected at least one tick with a "
                        "position inside the truth's time span")
    if not np.all(np.isfinite(e)):
        raise EvalError(f"errors must be finite, got {int(np.sum(~np.isfinite(e)))} non-finite")
    return ErrorStats(
        n=int(e.size),
        within_5m=float(np.mean(e <= 5.0)),
        within_20m=float(np.mean(e <= 20.0)),
        within_50m=float(np.mean(e <= 50.0)),
        median_m=float(np.median(e)),
        p95_m=float(np.percentile(e, 95.0)),
        max_m=float(np.max(e)),
        rmse_m=float(math.sqrt(np.mean(e * e))),
        p_over_30m=float(np.mean(e > 30.0)),
        p_over_100m=float(np.mean(e > 100.0)),
    )


def mahalanobis_sq(err: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances of errors (N, k) under covariances (N, k, k).

    A covariance that is not positive definite yields NaN for its tick (it cannot be scored,
    and is reported as such rather than guessed)."""
    err = np.asarray(err, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if err.ndim != 2 or cov.shape != (*err.shape, err.shape[1]):
        raise EvalError(f"expected errors (N, k) and covariances (N, k, k), got {err.shape} "
                        f"and {cov.shape}")
    out = np.full(len(err), np.nan)
    finite = np.all(np.isfinite(cov), axis=(1, 2)) & np.all(np.isfinite(err), axis=1)
    if not np.any(finite):
        return out
    eig = np.linalg.eigvalsh(cov[finite])
    pd = eig[:, 0] > 0.0
    idx = np.flatnonzero(finite)[pd]
    sol = np.linalg.solve(cov[idx], err[idx][..., None])[..., 0]
    out[idx] = np.einsum("ij,ij->i", err[idx], sol)
    return out


@dataclass(frozen=True, slots=True)
class Consistency:
    """Covariance consistency of horizontal position.

    inside_95: share of scored ticks whose error lies in the reported 95% ellipse.
    nees_mean: mean 2-DOF NEES (2.0 for a consistent estimator).
    nees_3d_mean: mean 3-DOF NEES of the full position (3.0 when consistent).
    n_scored: ticks with a positive-definite covariance.
    """

    inside_95: float
    nees_mean: float
    nees_3d_mean: float
    n_scored: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def consistency(err_ned_m: np.ndarray, cov_p_ned_m2: np.ndarray) -> Consistency:
    """err_ned_m: (N, 3) estimate minus truth; cov_p_ned_m2: (N, 3, 3) 1-sigma²."""
    err = np.asarray(err_ned_m, dtype=np.float64)
    cov = np.asarray(cov_p_ned_m2, dtype=np.float64)
    d2 = mahalanobis_sq(err[:, :2], cov[:, :2, :2])
    d3 = mahalanobis_sq(err, cov)
    ok = np.isfinite(d2)
    if not np.any(ok):
        return Consistency(math.nan, math.nan, math.nan, 0)
    ok3 = np.isfinite(d3)
    return Consistency(
        inside_95=float(np.mean(d2[ok] <= CHI2_95_2DOF)),
        nees_mean=float(np.mean(d2[ok])),
        nees_3d_mean=float(np.mean(d3[ok3])) if np.any(ok3) else math.nan,
        n_scored=int(np.sum(ok)),
    )


def radius95_m(cov_ne_m2: np.ndarray) -> np.ndarray:
    """(N,) radius of the circle that contains the 95% ellipse of each (N, 2, 2) horizontal
    covariance: sqrt(chi2_95(2) · largest eigenvalue). This is the bound drawn in the error
    plot; it is conservative when the ellipse is elongated."""
    cov = np.asarray(cov_ne_m2, dtype=np.float64)
    out = np.full(len(cov), np.nan)
    finite = np.all(np.isfinite(cov), axis=(1, 2))
    if np.any(finite):
        lam = np.linalg.eigvalsh(cov[finite])[:, -1]
        out[finite] = np.sqrt(CHI2_95_2DOF * np.maximum(lam, 0.0))
    return out


def label_shares(labels: np.ndarray) -> dict[str, float]:
    """Share of ticks per source label."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return {}
    names, counts = np.unique(labels, return_counts=True)
    return {str(n): float(c) / labels.size for n, c in zip(names, counts, strict=True)}
