"""ESKF behaviour on closed-form truth: propagation accuracy, gating, delayed fixes through
clones, LOST detection, and NEES/NIS consistency over several seeds and trajectories."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2

from terrafix.estimation.config import EstimatorConfig
from terrafix.estimation.eskf import Eskf
from terrafix.estimation.state import P
from terrafix.estimation.warm_start import InitialState
from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import R_to_quat, euler_to_R_body_to_ned, quat_to_R
from terrafix.measurements import AbsoluteFix, BaroSample, OdometryDelta

from .helpers import TurnTruth, imu_stream

FRAME = LocalFrame(48.5, 35.0, 120.0)
CFG = EstimatorConfig()


def make_filter(truth: TurnTruth, *, sigma_p: float = 1.0, sigma_v: float = 0.1,
                sigma_att: float = 1e-3, rng: np.random.Generator | None = None,
                config: EstimatorConfig = CFG) -> Eskf:
    """Filter whose prior is consistent with truth (errors drawn from it when rng given)."""
    p, v, R = truth.position(0.0), truth.velocity(0.0), truth.R_body_to_ned(0.0)
    if rng is not None:
        p = p + rng.normal(0, sigma_p, 3)
        v = v + rng.normal(0, sigma_v, 3)
        dth = rng.normal(0, sigma_att, 3)
        R = R @ euler_to_R_body_to_ned(*dth)
    init = InitialState(0, p, v, R_to_quat(R), np.eye(3) * sigma_p**2,
                        np.eye(3) * sigma_v**2, np.eye(3) * sigma_att**2)
    return Eskf(config, FRAME, init)


def fix_at(truth: TurnTruth, t_s: float, rng: np.random.Generator, *, offset_m: float = 0.0,
           ) -> tuple[AbsoluteFix, np.ndarray]:
    """A fix from truth + noise with a random (reported) 2x2 covariance, sigma 2-5 m."""
    s_n, s_e = rng.uniform(2.0, 5.0, 2)
    rho = rng.uniform(-0.5, 0.5)
    cov = np.array([[s_n**2, rho * s_n * s_e], [rho * s_n * s_e, s_e**2]])
    p = truth.position(t_s).copy()
    p[:2] += rng.multivariate_normal(np.zeros(2), cov)
    if offset_m:
        ang = rng.uniform(0, 2 * math.pi)
        p[:2] += offset_m * np.array([math.cos(ang), math.sin(ang)])
    lat, lon, alt = FRAME.ned_to_lla(p)
    fix = AbsoluteFix(t_ns=round(t_s * 1e9), lat_deg=float(lat), lon_deg=float(lon),
                      alt_m=float(alt), cov_ne_m2=cov, alt_var_m2=math.inf,
                      centre_lat_deg=float(lat), centre_lon_deg=float(lon),
                      reprojection_rmse_px=1.0, n_inliers=100, inlier_ratio=0.5)
    return fix, cov


@pytest.mark.parametrize("yaw_rate,pitch", [(0.0, 0.0), (0.25, 0.0), (-0.15, math.radians(8))])
def test_noiseless_imu_reproduces_closed_form_trajectory(yaw_rate: float, pitch: float) -> None:
    truth = TurnTruth(yaw_rate_radps=yaw_rate, pitch_rad=pitch)
    f = make_filter(truth)
    for s in imu_stream(truth, 0.0, 60.0):
        f.propagate(s)
    assert np.linalg.norm(f.state.p_ned - truth.position(60.0)) < 0.01
    assert np.linalg.norm(f.state.v_ned - truth.velocity(60.0)) < 1e-3
    dR = truth.R_body_to_ned(60.0).T @ quat_to_R(f.state.q_body_to_ned)
    assert np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1)) < 1e-6


def test_position_covariance_grows_monotonically_without_updates() -> None:
    truth = TurnTruth(yaw_rate_radps=0.2)
    f = make_filter(truth)
    last = 0.0
    for i, s in enumerate(imu_stream(truth, 0.0, 30.0)):
        f.propagate(s)
        if i % 20 == 0:
            lam = float(np.linalg.eigvalsh(f.state.cov[0:2, 0:2]).max())
            assert lam >= last
            last = lam
    assert last > 1.0  # it did grow from the 1 m prior


def test_fix_update_is_fused_with_nis_and_outlier_350m_is_gated() -> None:
    rng = np.random.default_rng(3)
    truth = TurnTruth(yaw_rate_radps=0.1)
    f = make_filter(truth, sigma_p=10.0, rng=rng)
    for s in imu_stream(truth, 0.0, 1.0):
        f.propagate(s)
    fix, _ = fix_at(truth, 1.0, rng)
    before = f.state.cov[0:2, 0:2].copy()
    rep = f.update_fix(fix)
    assert rep.accepted and rep.dof == 2 and 0 <= rep.nis < rep.gate
    assert np.trace(f.state.cov[0:2, 0:2]) < np.trace(before)
    p_before = f.state.p_ned.copy()
    bad, _ = fix_at(truth, 1.0, rng, offset_m=350.0)
    rep = f.update_fix(bad)
    assert not rep.accepted and rep.nis > rep.gate and rep.reason.startswith("gated")
    np.testing.assert_array_equal(f.state.p_ned, p_before)


def test_late_fix_through_clone_equals_immediate_fix() -> None:
    """A fix fused 0.4 s after its frame was captured (registration latency) must give the
    same estimate as the same fix fused at capture time."""
    rng = np.random.default_rng(5)
    truth = TurnTruth(yaw_rate_radps=0.2)
    imus = imu_stream(truth, 0.0, 3.0)
    fix, _ = fix_at(truth, 2.0, rng)
    now, late = make_filter(truth, sigma_p=20.0), make_filter(truth, sigma_p=20.0)
    for s in imus:
        for f in (now, late):
            f.propagate(s)
            if s.t_ns == fix.t_ns:
                f.mark_frame(s.t_ns)
        if s.t_ns == fix.t_ns:
            assert now.update_fix(fix).accepted
        if s.t_ns == fix.t_ns + 400_000_000:
            assert late.update_fix(fix).accepted
    np.testing.assert_allclose(late.state.p_ned, now.state.p_ned, atol=0.05)
    np.testing.assert_allclose(late.state.cov[P, P], now.state.cov[P, P], rtol=0.02)


def test_fix_without_clone_is_moved_along_velocity_or_rejected_when_stale() -> None:
    rng = np.random.default_rng(6)
    truth = TurnTruth()
    f = make_filter(truth, sigma_p=20.0)
    for s in imu_stream(truth, 0.0, 2.0):
        f.propagate(s)
    fix, _ = fix_at(truth, 1.8, rng)
    rep = f.update_fix(fix)  # 0.2 s old, no clone: velocity shift, fused
    assert rep.accepted
    assert np.linalg.norm(f.state.p_ned[:2] - truth.position(2.0)[:2]) < 15.0
    old, _ = fix_at(truth, 1.0, rng)
    rep = f.update_fix(old)
    assert not rep.accepted and rep.reason.startswith("stale") and math.isnan(rep.nis)


def test_odometry_between_clones_bounds_relative_drift() -> None:
    rng = np.random.default_rng(8)
    truth = TurnTruth(yaw_rate_radps=0.1)
    with_odo = make_filter(truth, sigma_v=1.0)
    without = make_filter(truth, sigma_v=1.0)
    frame_dt = 1 / 3
    t_prev = None
    for s in imu_stream(truth, 0.0, 10.0):
        with_odo.propagate(s)
        without.propagate(s)
        t = s.t_ns * 1e-9
        if s.t_ns % round(frame_dt * 1e9) < 5_000_000 and s.t_ns > 0:
            with_odo.mark_frame(s.t_ns)
            if t_prev is not None:
                d = truth.position(t)[:2] - truth.position(t_prev * 1e-9)[:2]
                cov = np.eye(2) * 0.25
                rep = with_odo.update_odometry(OdometryDelta(
                    t_prev, s.t_ns, d + rng.normal(0, 0.5, 2), cov, True, 200))
                assert rep.accepted, rep.reason
            t_prev = s.t_ns
    var_odo = np.trace(with_odo.state.cov[0:2, 0:2])
    var_imu = np.trace(without.state.cov[0:2, 0:2])
    assert var_odo < var_imu
    assert np.linalg.norm(with_odo.state.v_ned - truth.velocity(10.0)) < 0.5
    lost = with_odo.update_odometry(OdometryDelta(0, 1, np.zeros(2), np.eye(2), False, 3,
                                                  "overlap 3% < 5%"))
    assert not lost.accepted and "overlap" in lost.reason


def test_filter_declares_lost_when_covariance_is_not_positive_definite() -> None:
    truth = TurnTruth()
    f = make_filter(truth)
    assert not f.estimate().lost
    f.state.cov[0, 0] = -1.0
    est = f.estimate()
    assert est.lost and "positive definite" in est.lost_reason
    fix, _ = fix_at(truth, 0.0, np.random.default_rng(0))
    rep = f.update_fix(fix)
    assert not rep.accepted and rep.reason == "lost"


def test_baro_first_sample_sets_offset_then_updates_altitude() -> None:
    truth = TurnTruth()
    f = make_filter(truth, sigma_p=10.0)
    bias = 37.0
    rep = f.update_baro(BaroSample(0, FRAME.alt0_m - truth.position(0)[2] + bias))
    assert rep.accepted and f.state.baro_bias_m == pytest.approx(bias - f.state.p_ned[2],
                                                                 abs=1e-9)
    rng = np.random.default_rng(1)
    for s in imu_stream(truth, 0.0, 20.0):
        f.propagate(s)
        if s.t_ns % 100_000_000 == 0 and s.t_ns > 0:
            alt = FRAME.alt0_m - truth.position(s.t_ns * 1e-9)[2] + bias + rng.normal(0, 1)
            assert f.update_baro(BaroSample(s.t_ns, alt)).accepted
    # vertical velocity is held by the barometer; absolute altitude stays as uncertain as
    # the prior (a barometer cannot tell where the origin is)
    assert abs(f.state.v_ned[2]) < 0.3
    assert math.sqrt(f.state.cov[2, 2]) > 5.0


def run_consistency(seed: int, truth: TurnTruth, duration_s: float = 45.0,
                    outlier_rate: float = 0.03) -> dict[str, np.ndarray]:
    """One noisy run: IMU noise and biases from the filter's own model, fixes at 3 Hz with
    2-5 m noise and occasional 350 m outliers, baro at 10 Hz. Returns per-frame errors,
    covariances and fix NIS values."""
    rng = np.random.default_rng(seed)
    imu = CFG.imu
    ba = rng.normal(0, imu.accel_bias_sigma0_mps2, 3)
    bg = rng.normal(0, imu.gyro_bias_sigma0_radps, 3)
    f = make_filter(truth, sigma_p=5.0, sigma_v=0.5, sigma_att=math.radians(2), rng=rng)
    samples = imu_stream(truth, 0.0, duration_s, rng=rng,
                         accel_density=imu.accel_noise_mps2_rthz,
                         gyro_density=imu.gyro_noise_radps_rthz, accel_bias=ba, gyro_bias=bg)
    baro_bias = rng.normal(0, 20)
    frame_ns = 333_333_333
    next_frame = frame_ns
    errs, covs, nis, outliers_rejected, outliers = [], [], [], 0, 0
    for s in samples:
        f.propagate(s)
        t = s.t_ns * 1e-9
        if s.t_ns % 100_000_000 == 0:
            alt = FRAME.alt0_m - truth.position(t)[2] + baro_bias + rng.normal(0, 1.0)
            f.update_baro(BaroSample(s.t_ns, alt))
        if s.t_ns >= next_frame:
            next_frame += frame_ns
            f.mark_frame(s.t_ns)
            is_outlier = rng.random() < outlier_rate
            fix, _ = fix_at(truth, t, rng, offset_m=350.0 if is_outlier else 0.0)
            rep = f.update_fix(fix)
            if is_outlier:
                outliers += 1
                outliers_rejected += int(not rep.accepted)
            elif rep.accepted:
                nis.append(rep.nis)
            est = f.estimate()
            assert not est.lost
            errs.append(est.p_ned_m - truth.position(t))
            covs.append(est.cov_p_ned_m2)
    return {"err": np.array(errs), "cov": np.array(covs), "nis": np.array(nis),
            "outliers": np.array([outliers, outliers_rejected])}


TRAJECTORIES = [
    TurnTruth(yaw_rate_radps=0.0, yaw0_rad=0.5),
    TurnTruth(yaw_rate_radps=0.2, yaw0_rad=-1.0),
    TurnTruth(yaw_rate_radps=-0.12, pitch_rad=math.radians(10)),
]


@pytest.mark.slow
def test_nees_and_nis_within_chi_square_bounds_over_seeds_and_trajectories() -> None:
    """ov_eval-style consistency: horizontal-position NEES averaged over 3 trajectories x
    2 seeds, fix NIS, share of errors inside the 95% ellipse, outliers all rejected."""
    nees_all, nis_all, inside, n_out, n_rej = [], [], [], 0, 0
    for traj in TRAJECTORIES:
        for seed in (11, 12):
            r = run_consistency(seed, traj)
            e, c = r["err"][15:, :2], r["cov"][15:, :2, :2]  # after the first 5 s
            nees = np.einsum("ni,nij,nj->n", e, np.linalg.inv(c), e)
            nees_all.append(nees)
            nis_all.append(r["nis"])
            inside.append(nees <= chi2.ppf(0.95, 2))
            n_out += int(r["outliers"][0])
            n_rej += int(r["outliers"][1])
    nees = np.concatenate(nees_all)
    anees = nees.mean()
    # chi2(2) mean is 2; correlated samples over ~1500 frames: accept 1.5..2.6
    assert 1.5 < anees < 2.6, anees
    nis = np.concatenate(nis_all)
    assert 1.6 < nis.mean() < 2.4, nis.mean()
    share = np.concatenate(inside).mean()
    assert 0.90 <= share <= 0.99, share
    assert n_out > 5 and n_rej == n_out


@pytest.mark.parametrize("yaw_rate", [0.0, 0.35])
def test_covariance_applied_every_4_samples_matches_every_sample(yaw_rate: float) -> None:
    """The decimated covariance propagation (one second-order transition per 4 IMU samples)
    gives the same covariance as per-sample propagation, including the p-θ couplings."""
    truth = TurnTruth(yaw_rate_radps=yaw_rate, pitch_rad=math.radians(5))
    covs = []
    for n in (1, 4):
        f = make_filter(truth, sigma_p=1.0, sigma_v=0.2, sigma_att=math.radians(1),
                        config=EstimatorConfig(covariance_every_n_imu=n))
        for s in imu_stream(truth, 0.0, 20.0):
            f.propagate(s)
        covs.append(f.state.cov.copy())
    c1, c4 = covs
    d = np.sqrt(np.diag(c1))
    corr_diff = (c4 - c1) / np.outer(d, d)
    assert np.abs(corr_diff).max() < 5e-3  # correlation coefficients
    assert np.abs(np.diag(c4) / np.diag(c1) - 1).max() < 1e-3
