from __future__ import annotations

import numpy as np
import pytest

from terrafix.vision.errors import VisionError
from terrafix.vision.geometry import (
    GeometryConfig,
    fit_homography,
    fit_similarity,
    similarity_parts,
)
from terrafix.vision.matching import match_mutual


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mutual_nn_recovers_a_permutation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    d0 = _unit(rng.normal(size=(300, 64)))
    perm = rng.permutation(300)
    d1 = _unit(d0[perm] + rng.normal(scale=0.05, size=(300, 64)))
    m = match_mutual(d0, d1, ratio=0.9)
    assert len(m) > 280
    assert np.all(perm[m.idx1] == m.idx0)


def test_ratio_test_drops_ambiguous_matches() -> None:
    rng = np.random.default_rng(3)
    d0 = _unit(rng.normal(size=(50, 64)))
    twins = _unit(np.vstack([d0 + rng.normal(scale=0.02, size=d0.shape),
                             d0 + rng.normal(scale=0.02, size=d0.shape)]))
    assert len(match_mutual(d0, twins, ratio=1.0)) == 50
    assert len(match_mutual(d0, twins, ratio=0.8)) < 0.25 * 50


def test_matching_rejects_mismatched_dimensions() -> None:
    with pytest.raises(VisionError, match="do not match"):
        match_mutual(np.zeros((3, 64), np.float32), np.zeros((3, 128), np.float32))


def _similar(pts: np.ndarray, deg: float, scale: float, t: tuple[float, float]) -> np.ndarray:
    a = np.radians(deg)
    R = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return pts @ R.T + np.array(t)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_homography_recovers_a_near_similarity_among_outliers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(0, 640, (200, 2))
    p1 = _similar(p0, 4.0, 1.05, (120.0, -40.0)) + rng.normal(scale=0.7, size=p0.shape)
    out = rng.random(200) < 0.5
    p1[out] = rng.uniform(0, 800, (out.sum(), 2))
    fit = fit_homography(p0, p1, 640.0)
    assert fit.ok, fit.reason
    scale, rot, _ = similarity_parts(fit.H)
    assert scale == pytest.approx(1.05, abs=0.01) and rot == pytest.approx(4.0, abs=0.3)
    assert fit.inliers[~out].mean() > 0.95 and fit.inliers[out].mean() < 0.05


def test_collinear_inliers_are_degenerate() -> None:
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 640, 80)
    p0 = np.column_stack((x, 300 + rng.normal(scale=0.3, size=80)))
    fit = fit_homography(p0, p0 + np.array([10.0, 5.0]), 640.0)
    assert not fit.ok


def test_implausible_scale_is_rejected_with_reason() -> None:
    rng = np.random.default_rng(6)
    p0 = rng.uniform(0, 640, (100, 2))
    fit = fit_homography(p0, _similar(p0, 0.0, 2.0, (0.0, 0.0)), 640.0)
    assert not fit.ok and "scale" in fit.reason


def test_too_few_matches_is_rejected_with_reason() -> None:
    p = np.zeros((5, 2))
    fit = fit_homography(p, p, 640.0, GeometryConfig(min_inliers=12))
    assert not fit.ok and "too few" in fit.reason


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_similarity_ranks_a_weak_true_fit_among_95_percent_outliers(seed: int) -> None:
    """Re-ranking: 10 true matches among 190 random ones inside an 870-px chunk."""
    rng = np.random.default_rng(seed)
    p0 = rng.uniform(0, 640, (200, 2))
    p1 = _similar(p0, 3.0, 1.02, (150.0, 90.0)) + rng.normal(scale=1.0, size=p0.shape)
    out = np.ones(200, bool)
    out[:10] = False
    p1[out] = rng.uniform(0, 870, (out.sum(), 2))
    fit = fit_similarity(p0, p1, GeometryConfig(threshold_px=6.0, min_inliers=6))
    assert fit.ok, fit.reason
    assert fit.inliers[~out].sum() >= 9 and fit.inliers[out].sum() <= 2
    scale, rot, persp = similarity_parts(fit.H)
    assert scale == pytest.approx(1.02, abs=0.02) and rot == pytest.approx(3.0, abs=1.0)
    assert persp == 0.0


def test_similarity_rejects_implausible_scale_and_too_few_inliers() -> None:
    rng = np.random.default_rng(7)
    p0 = rng.uniform(0, 640, (60, 2))
    fit = fit_similarity(p0, _similar(p0, 0.0, 2.0, (5.0, 5.0)))
    assert not fit.ok and "scale" in fit.reason
    noise = rng.uniform(0, 870, (60, 2))
    weak = fit_similarity(p0, noise, GeometryConfig(threshold_px=3.0, min_inliers=8))
    assert not weak.ok and "too few" in weak.reason
