"""Error statistics and covariance consistency (metrics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrafix.eval.errors import EvalError
from terrafix.eval.metrics import (
    CHI2_95_2DOF,
    consistency,
    error_stats,
    mahalanobis_sq,
    radius95_m,
)


def test_error_stats_shares_and_percentiles_of_a_known_distribution():
    e = np.arange(1, 201, dtype=float) * 0.5  # 0.5 .. 100 m
    s = error_stats(e)
    assert s.n == 200
    assert s.within_5m == pytest.approx(10 / 200)
    assert s.within_20m == pytest.approx(40 / 200)
    assert s.within_50m == pytest.approx(100 / 200)
    assert s.max_m == 100.0
    assert s.p95_m == pytest.approx(np.percentile(e, 95))
    assert s.p_over_30m == pytest.approx(140 / 200)
    assert s.rmse_m == pytest.approx(math.sqrt(np.mean(e**2)))


def test_error_stats_refuses_empty_and_nan():
    with pytest.raises(EvalError, match="no error samples"):
        error_stats(np.array([]))
    with pytest.raises(EvalError, match="finite"):
        error_stats(np.array([1.0, np.nan]))


@pytest.mark.parametrize("seed", [3, 17])
def test_consistent_gaussian_errors_land_near_95_percent_and_nees_dof(seed):
    rng = np.random.default_rng(seed)
    n = 20000
    cov = np.array([[25.0, 6.0, 0.0], [6.0, 9.0, 0.0], [0.0, 0.0, 16.0]])
    err = rng.multivariate_normal(np.zeros(3), cov, n)
    c = consistency(err, np.broadcast_to(cov, (n, 3, 3)))
    assert c.inside_95 == pytest.approx(0.95, abs=0.006)
    assert c.nees_mean == pytest.approx(2.0, abs=0.06)
    assert c.nees_3d_mean == pytest.approx(3.0, abs=0.08)
    assert c.n_scored == n


def test_over_confident_covariance_is_exposed():
    rng = np.random.default_rng(5)
    n = 5000
    cov = np.diag([4.0, 4.0, 9.0])
    err = rng.multivariate_normal(np.zeros(3), cov, n)
    claimed = np.broadcast_to(cov / 4.0, (n, 3, 3))  # claims half the true sigma
    c = consistency(err, claimed)
    # inside the claimed 95% ellipse: P(chi2_2 <= 5.991 / 4)
    assert c.inside_95 == pytest.approx(1 - math.exp(-CHI2_95_2DOF / 8.0), abs=0.02)
    assert c.nees_mean == pytest.approx(8.0, rel=0.08)


def test_non_positive_definite_covariance_is_not_scored():
    err = np.array([[1.0, 1.0], [1.0, 1.0]])
    cov = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]]])
    d2 = mahalanobis_sq(err, cov)
    assert d2[0] == pytest.approx(2.0)
    assert np.isnan(d2[1])


def test_radius95_of_isotropic_and_elongated_covariance():
    cov = np.array([np.eye(2) * 4.0, np.diag([1.0, 9.0])])
    r = radius95_m(cov)
    assert r[0] == pytest.approx(2.0 * math.sqrt(CHI2_95_2DOF))
    assert r[1] == pytest.approx(3.0 * math.sqrt(CHI2_95_2DOF))
