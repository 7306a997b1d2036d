"""iSAM2 backend: factor Jacobians against numerical ones (through gtsam's own retract),
fixed-lag window size, smoothed states for the recorder only, agreement with the ESKF,
LOST on an indeterminate system."""

from __future__ import annotations

import gtsam
import numpy as np
import pytest

from terrafix.estimation.config import EstimatorConfig
from terrafix.estimation.isam2 import B, Isam2Smoother, Vk, X, Z
from terrafix.estimation.isam2_factors import (
    baro_factor,
    heading_factor,
    joint_prior_factor,
    odometry_factor,
    position_factor,
)
from terrafix.estimation.warm_start import InitialState
from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import R_to_quat, euler_to_R_body_to_ned
from terrafix.measurements import AbsoluteFix

from .helpers import TurnTruth, imu_stream
from .simflight import VisionPlan, make_flight, replay

SEEDS = [0, 1, 2]


def random_values(rng: np.random.Generator) -> gtsam.Values:
    v = gtsam.Values()
    for k in range(2):
        R = euler_to_R_body_to_ned(*rng.uniform(-0.4, 0.4, 2), rng.uniform(-3, 3))
        v.insert(X(k), gtsam.Pose3(gtsam.Rot3(R), rng.normal(0, 100, 3)))
    v.insert(Vk(0), rng.normal(0, 10, 3))
    v.insert(B(0), gtsam.imuBias.ConstantBias(rng.normal(0, 0.1, 3), rng.normal(0, 0.01, 3)))
    v.insert(Z(0), float(rng.normal(0, 5)))
    return v


def perturbed(values: gtsam.Values, key: int, i: int, eps: float) -> gtsam.Values:
    out = gtsam.Values(values)
    sym = gtsam.Symbol(key).chr()
    if sym == ord("x"):
        d = np.zeros(6)
        d[i] = eps
        out.update(key, values.atPose3(key).retract(d))
    elif sym == ord("v"):
        d = np.zeros(3)
        d[i] = eps
        out.update(key, values.atVector(key) + d)
    elif sym == ord("b"):
        d = np.zeros(6)
        d[i] = eps
        out.update(key, gtsam.imuBias.ConstantBias(values.atConstantBias(key).vector() + d))
    else:
        out.update(key, values.atDouble(key) + eps)
    return out


def dims(key: int) -> int:
    return {ord("x"): 6, ord("v"): 3, ord("b"): 6, ord("z"): 1}[gtsam.Symbol(key).chr()]


def check_factor(factor: gtsam.CustomFactor, values: gtsam.Values, eps: float = 1e-6) -> None:
    """Analytic Jacobians (from linearize, unit noise) vs central differences."""
    lin = factor.linearize(values)
    A, _ = lin.jacobian()
    col = 0
    for key in factor.keys():  # noqa: SIM118 (a gtsam KeyVector, not a dict)
        n = dims(key)
        for i in range(n):
            e_p = factor.unwhitenedError(perturbed(values, key, i, eps))
            e_m = factor.unwhitenedError(perturbed(values, key, i, -eps))
            np.testing.assert_allclose(A[:, col + i], (e_p - e_m) / (2 * eps), atol=2e-5,
                                       rtol=1e-4)
        col += n


@pytest.mark.parametrize("seed", SEEDS)
def test_custom_factor_jacobians_match_numerical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    v = random_values(rng)
    check_factor(position_factor(X(0), rng.normal(0, 100, 2), np.eye(2), (0, 1)), v)
    check_factor(position_factor(X(1), rng.normal(0, 100, 3), np.eye(3), (0, 1, 2)), v)
    check_factor(odometry_factor(X(0), X(1), rng.normal(0, 10, 2), np.eye(2)), v)
    check_factor(baro_factor(X(0), Z(0), 120.0, 300.0, 1.0), v)
    check_factor(heading_factor(X(1), 0.3, 1.0), v)


@pytest.mark.parametrize("seed", SEEDS)
def test_joint_prior_factor_is_zero_at_mean_and_has_the_stated_covariance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    v = random_values(rng)
    pose = v.atPose3(X(0))
    bias = v.atConstantBias(B(0))
    A = rng.standard_normal((16, 16))
    cov = A @ A.T / 16 + np.eye(16) * 0.1
    f = joint_prior_factor(X(0), Vk(0), B(0), Z(0), pose.rotation().matrix(),
                           np.asarray(pose.translation()), v.atVector(Vk(0)),
                           bias.accelerometer(), bias.gyroscope(), v.atDouble(Z(0)), cov)
    assert f.error(v) == pytest.approx(0.0, abs=1e-12)
    # information of the linearised factor, mapped back to the ESKF error order, is cov⁻¹
    Aw, _ = f.linearize(v).jacobian()
    R = pose.rotation().matrix()
    T = np.zeros((16, 16))  # gtsam tangent [θ, t, v, b, z] -> ESKF [p, v, θ, b, z]
    T[0:3, 3:6] = R
    T[3:6, 6:9] = np.eye(3)
    T[6:9, 0:3] = np.eye(3)
    T[9:16, 9:16] = np.eye(7)
    info_gtsam = Aw.T @ Aw
    cov_eskf = T @ np.linalg.inv(info_gtsam) @ T.T
    np.testing.assert_allclose(cov_eskf, cov, rtol=1e-6, atol=1e-9)


def _smoother_on_line(window: int = 12) -> tuple[Isam2Smoother, TurnTruth, list]:
    truth = TurnTruth(yaw_rate_radps=0.1)
    init = InitialState(0, truth.position(0), truth.velocity(0),
                        R_to_quat(truth.R_body_to_ned(0)), np.eye(3) * 4.0,
                        np.eye(3) * 0.04, np.eye(3) * 1e-4)
    cfg = EstimatorConfig(backend="isam2", isam2_window_keyframes=window)
    return Isam2Smoother(cfg, LocalFrame(48.0, 35.0, 100.0), init), truth, imu_stream(
        truth, 0.0, 12.0)


def test_window_holds_exactly_the_configured_keyframes_and_smoothed_states_leave_it() -> None:
    sm, truth, imus = _smoother_on_line(window=12)
    frame = sm.frame
    rng = np.random.default_rng(0)
    for s in imus:
        sm.propagate(s)
        if s.t_ns % 333_000_000 == 0 and s.t_ns > 0:
            sm.mark_frame(s.t_ns)
            p = truth.position(s.t_ns * 1e-9)
            p[:2] += rng.normal(0, 2.0, 2)
            lat, lon, alt = frame.ned_to_lla(p)
            rep = sm.update_fix(AbsoluteFix(s.t_ns, float(lat), float(lon), float(alt),
                                            np.eye(2) * 4.0, float("inf"), float(lat),
                                            float(lon), 1.0, 100, 0.5))
            assert rep.accepted, rep.reason
    est = sm._smoother.calculateEstimate()
    n_poses = sum(1 for k in est.keys() if gtsam.Symbol(k).chr() == ord("x"))  # noqa: SIM118
    assert n_poses == 12
    smoothed = sm.drain_smoothed()
    assert len(smoothed) > 10 and all(s.final for s in smoothed)
    assert sm.drain_smoothed() == []
    # a smoothed keyframe is the retroactively corrected one: more accurate than the prior
    err = [np.linalg.norm(s.p_ned_m[:2] - truth.position(s.t_ns * 1e-9)[:2]) for s in smoothed]
    assert np.sqrt(np.mean(np.square(err))) < 2.0
    assert all(np.all(np.linalg.eigvalsh(s.cov_p_ned_m2) > 0) for s in smoothed)


def test_non_finite_solution_makes_the_smoother_lost() -> None:
    """A factor that poisons the solution (here a NaN measurement slipped past validation)
    must turn the backend LOST, not into numbers."""
    sm, truth, imus = _smoother_on_line()
    for s in imus[:50]:
        sm.propagate(s)
    k = sm._kfs[-1].index
    sm._pending.add(position_factor(X(k), np.array([np.nan, np.nan]), np.eye(2), (0, 1)))
    est = sm.estimate()
    assert est.lost and est.lost_reason
    lat, lon, alt = sm.frame.ned_to_lla(truth.position(0.25))
    rep = sm.update_fix(AbsoluteFix(imus[49].t_ns, float(lat), float(lon), float(alt),
                                    np.eye(2), float("inf"), 0.0, 0.0, 1.0, 100, 0.5))
    assert not rep.accepted and rep.reason == "lost"


@pytest.mark.slow
def test_isam2_and_eskf_agree_on_a_simulated_flight() -> None:
    """Same inputs, two backends: the smoother's newest-keyframe estimate is a filtered
    estimate, so both must give the same track and nearly the same covariance."""
    from terrafix.sim.gnss import GnssAttack

    fl = make_flight(3, 40.0, (GnssAttack("jamming", 5.0, 40.0, ramp_s=1.0),))
    logs = {b: replay(fl, VisionPlan(), seed=3, backend=b) for b in ("eskf", "isam2")}
    (te, ee, ce), (ti, ei, ci) = logs["eskf"].arrays(), logs["isam2"].arrays()
    assert np.array_equal(te, ti)
    m = te > 5.0
    diff = np.linalg.norm((ee - ei)[m, :2], axis=1)
    sig = np.sqrt(ce[m, 0, 0])
    assert np.all(diff < 0.5 * sig + 0.05)
    ratio = ci[m, 0, 0] / ce[m, 0, 0]
    assert 0.8 < np.median(ratio) < 1.25
