"""Odometry heading calibration against absolute references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrafix.measurements import OdometryDelta
from terrafix.navigation.heading_calibration import (
    HeadingCalibrationConfig,
    OdometryHeadingCalibration,
)

S = 1_000_000_000


def rot(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def track(n: int, seed: int) -> np.ndarray:
    """(n, 2) true per-frame displacements at 18 m/s, 3 Hz, with gentle turns."""
    heading = np.cumsum(np.full(n, 0.01) * np.sin(np.arange(n) / 40.0)) + seed
    return 6.0 * np.column_stack((np.cos(heading), np.sin(heading)))


@pytest.mark.parametrize(("seed", "bias_deg"), [(1, 2.5), (2, -1.5)])
def test_fixes_calibrate_heading_and_scale_and_corrected_odometry_follows_the_truth(seed, bias_deg):
    rng = np.random.default_rng(seed)
    true = track(900, seed)  # 5 minutes
    scale = 0.98  # the odometry's height above ground is 2% low
    raw = scale * true @ rot(-bias_deg).T + rng.standard_normal(true.shape) * 0.05
    cal = OdometryHeadingCalibration()
    p = np.zeros(2)
    corrected = []
    for k, d in enumerate(raw):
        delta = OdometryDelta(k * S // 3, (k + 1) * S // 3, d, np.eye(2) * 0.01, True, 200)
        cal.add_delta(delta)
        corrected.append(cal.correct(delta).delta_ne_m)
        p = p + true[k]
        if k % 5 == 4:  # a fix every 1.7 s, sigma 2.5 m
            cal.add_reference((k + 1) * S // 3, p + rng.standard_normal(2) * 2.5, 2.5**2)
    # consistent with its own uncertainty, which is well below the FC's 2.5 deg
    assert abs(math.degrees(cal.theta_rad - math.radians(bias_deg))) < 3 * math.degrees(
        cal.sigma_rad)
    assert math.degrees(cal.sigma_rad) < 0.7
    assert abs(cal.log_scale + math.log(scale)) < 3 * math.sqrt(cal.var_log_scale)
    assert math.sqrt(cal.var_log_scale) < 0.01
    tail = np.array(corrected[300:])  # once calibrated
    drift = np.linalg.norm(tail.sum(axis=0) - true[300:].sum(axis=0))
    uncorrected = np.linalg.norm(raw[300:].sum(axis=0) - true[300:].sum(axis=0))
    assert drift < 0.5 * uncorrected


def _straight(cal: OdometryHeadingCalibration, k0: int, n: int, d: np.ndarray) -> np.ndarray:
    """n deltas d (NE metres) from frame k0 on; returns the summed covariance the calibration
    gave them, (2, 2) m²."""
    total = np.zeros((2, 2))
    for k in range(k0, k0 + n):
        delta = OdometryDelta(k * S // 3, (k + 1) * S // 3, d, np.zeros((2, 2)), True, 200)
        cal.add_delta(delta)
        total += cal.correct(delta).cov_ne_m2
    return total


def test_correlated_errors_are_budgeted_to_match_a_bias_at_the_matching_distance():
    """Summed over the deltas of half the matching distance (100 m), the added variance
    equals a random walk's that reaches (sigma x 200 m)^2 at 200 m: across the track from
    the heading, along it from the scale, in both axes from drift_frac."""
    cfg = HeadingCalibrationConfig(drift_frac=0.01, drift_match_m=200.0)
    cal = OdometryHeadingCalibration(cfg)
    total = _straight(cal, 0, 20, np.array([5.0, 0.0]))  # 100 m north, no reference
    sigma_theta = math.radians(cfg.prior_sigma_deg)
    assert total[0, 0] == pytest.approx(
        (cfg.scale_prior_sigma ** 2 + 0.01 ** 2) * 200.0 * 100.0, rel=0.01)
    assert total[1, 1] == pytest.approx((sigma_theta ** 2 + 0.01 ** 2) * 200.0 * 100.0,
                                        rel=0.02)
    lost = OdometryDelta(0, 1, np.full(2, np.nan), np.full((2, 2), np.nan), False, 0, "x")
    assert cal.correct(lost) is lost


def test_far_from_any_reference_the_heading_and_scale_budget_grows_as_a_bias():
    """Kilometres without an absolute position (GNSS jammed, no fix): a heading error sigma
    puts the odometry sigma x L sideways after L metres, and the budget must follow that, not
    a random walk's square root (which under-reported the error 3x after 5 minutes). A
    reference (the estimator's position is known again) restarts the growth."""
    cfg = HeadingCalibrationConfig(drift_frac=0.0, drift_match_m=200.0)
    cal = OdometryHeadingCalibration(cfg)
    d = np.array([5.0, 0.0])
    total = _straight(cal, 0, 400, d)  # 2 km north
    sigma_theta = math.radians(cfg.prior_sigma_deg)
    # the first 100 m as a random walk matched at 200 m, the rest as a bias: sigma² L²
    expected = sigma_theta ** 2 * (200.0 * 100.0 + 2000.0 ** 2 - 100.0 ** 2)
    assert total[1, 1] == pytest.approx(expected, rel=0.02)
    assert math.sqrt(total[1, 1]) > 0.98 * sigma_theta * 2000.0
    last = _straight(cal, 400, 1, d)
    # a reference at the end of the track, arriving one frame late, restarts the growth
    cal.add_reference(401 * S // 3, np.array([2005.0, 0.0]), 4.0)
    after = _straight(cal, 401, 1, d)
    assert after[1, 1] == pytest.approx(sigma_theta ** 2 * 200.0 * 5.0, rel=0.02)
    assert last[1, 1] > 15 * after[1, 1]


def test_overlapping_baselines_weigh_as_the_independent_ones_they_contain():
    """References every 30 m: each new reference closes a 150 m baseline that shares 120 m
    of odometry with the previous one. Together they must carry the information of the
    ~12 independent baselines in 1800 m, not of the 55 overlapping ones (counting the same
    stretch of odometry, and its errors, five times over)."""
    cfg = HeadingCalibrationConfig()
    cal = OdometryHeadingCalibration(cfg)
    d = np.array([6.0, 0.0])
    p = np.zeros(2)
    for k in range(300):  # 1800 m
        cal.add_delta(OdometryDelta(k * S // 3, (k + 1) * S // 3, d, np.eye(2) * 0.01,
                                    True, 200))
        p = p + d
        if k % 5 == 4:
            cal.add_reference((k + 1) * S // 3, p.copy(), 2.5 ** 2)
    assert cal.n_updates > 40
    r_one = 2 * 2.5 ** 2 / 150.0 ** 2 + cfg.odometry_drift_frac ** 2
    info_independent = 1 / math.radians(cfg.prior_sigma_deg) ** 2 + (1800 / 150) / r_one
    assert 1 / cal.var_rad2 < 1.3 * info_independent
    assert 1 / cal.var_rad2 > 0.5 * info_independent


def test_references_across_a_tracking_loss_are_not_compared():
    cal = OdometryHeadingCalibration()
    d = np.array([6.0, 0.0])
    p = np.zeros(2)
    for k in range(40):
        cal.add_delta(OdometryDelta(k * S // 3, (k + 1) * S // 3, d, np.eye(2), True, 200))
        p = p + d
    assert not cal.add_reference(40 * S // 3, p, 4.0)  # first reference: nothing to compare
    cal.add_delta(OdometryDelta(40 * S // 3, 41 * S // 3, np.full(2, np.nan),
                                np.full((2, 2), np.nan), False, 0, "overlap 2% < 5%"))
    for k in range(41, 90):
        cal.add_delta(OdometryDelta(k * S // 3, (k + 1) * S // 3, d, np.eye(2), True, 200))
    assert not cal.add_reference(90 * S // 3, p + 49 * d, 4.0)  # other segment: no baseline
    assert cal.n_updates == 0


def test_heading_noise_from_the_source_widens_the_estimate_and_a_reset_starts_over():
    cal = OdometryHeadingCalibration()
    prior = math.radians(cal.config.prior_sigma_deg) ** 2
    cal.var_rad2 = math.radians(0.3) ** 2  # as if calibrated
    cal.theta_rad = math.radians(2.0)
    cal.add_heading_noise(math.radians(1.0) ** 2)
    assert cal.var_rad2 == pytest.approx(math.radians(0.3) ** 2 + math.radians(1.0) ** 2)
    assert not cal.worse_than_prior
    with pytest.raises(ValueError, match="-1"):
        cal.add_heading_noise(-1.0)
    cal.add_heading_noise(2.0 * prior)
    assert cal.worse_than_prior
    d = OdometryDelta(0, S // 3, np.array([6.0, 0.0]), np.eye(2) * 0.01, True, 200)
    cal.add_delta(d)
    cal.reset_heading()
    assert cal.theta_rad == 0.0 and cal.var_rad2 == pytest.approx(prior)
    assert not cal.worse_than_prior
    # the track in the old heading is not compared with references after the reset
    assert not cal.add_reference(S // 3, np.zeros(2), 1.0)


def test_a_doppler_windows_noise_keeps_the_deltas_own_noise_in_every_direction():
    """In a roll-out the deltas' tilt columns line up, so the summed tilt (dA dAᵀ) outgrows the
    deltas' marginal tilt shares (Σ B Bᵀ). The window's noise is the deltas' own noise (less
    their tilt share, which the model's dA states) plus the receiver's: subtracting dA dAᵀ
    from the summed covariance instead once left a direction with no noise at all, and on dev
    seed 202 one window took the heading sigma from 2.5 to 0.3 deg on a 3 deg error."""
    cal = OdometryHeadingCalibration()
    own = np.array([[0.3, 0.1], [0.1, 0.2]])
    B = np.array([[-0.35, -0.39], [0.28, -0.41]])
    t = 0
    for _ in range(7):
        cal.add_delta(OdometryDelta(t, t + S // 3, np.array([5.0, 0.0]), own + B @ B.T, True,
                                    100, tilt_error_ne_m=B))
        t += S // 3
    seen: list[np.ndarray] = []
    fuse = cal._fuse

    def spy(t_ns: int, d_vo: np.ndarray, d_ref: np.ndarray, dA: np.ndarray,
            R: np.ndarray) -> bool:
        seen.append(R)
        return fuse(t_ns, d_vo, d_ref, dA, R)

    cal._fuse = spy  # type: ignore[method-assign]
    cal.add_velocity_reference(S // 3, t, rot(2.0) @ np.array([30.0, 0.0]), 0.04)
    assert len(seen) == 1
    floor = 6 * own + np.eye(2) * 0.04  # six deltas' own noise and the receiver's
    assert np.linalg.eigvalsh(seen[0] - floor)[0] > -1e-9, seen[0]
