"""Every measurement Jacobian H against a numerical Jacobian (PX4 EKF2 derivation style).

H must equal ∂h(x̂ ⊕ δx)/∂δx at δx = 0, where ⊕ is the filter's own error injection; the
innovation is y = z - h, so the numerical Jacobian is -∂y/∂δx. S must be H P Hᵀ + R.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrafix.estimation.models import (
    Innovation,
    baro_model,
    gnss_position_model,
    gnss_velocity_model,
    heading_model,
    odometry_model,
    position_model,
    time_shift,
    wrap_angle,
)
from terrafix.estimation.state import EskfState, inject_error

from .helpers import random_state

SEEDS = [0, 1, 2, 3, 4]


def numerical_H(state: EskfState, model, eps: float = 1e-6) -> np.ndarray:
    base = model(state).y
    H = np.zeros((base.shape[0], state.dim))
    for i in range(state.dim):
        plus, minus = state.copy(), state.copy()
        d = np.zeros(state.dim)
        d[i] = eps
        inject_error(plus, d)
        inject_error(minus, -d)
        dy = model(plus).y - model(minus).y
        if base.shape[0] == 1 and model.__name__ == "heading":
            dy = np.array([wrap_angle(float(dy[0]))])
        H[:, i] = -dy / (2 * eps)
    return H


def check(state: EskfState, model) -> Innovation:
    inn = model(state)
    H_num = numerical_H(state, model)
    np.testing.assert_allclose(inn.H, H_num, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(inn.S, inn.H @ state.cov @ inn.H.T + inn.R, rtol=1e-10)
    return inn


@pytest.mark.parametrize("seed", SEEDS)
def test_position_model_H_matches_numerical_on_current_and_clone(seed: int) -> None:
    rng = np.random.default_rng(seed)
    st = random_state(rng, n_clones=3)
    z = rng.normal(0, 100, 3)
    R = np.diag([4.0, 9.0, 25.0])
    inn = check(st, lambda s: position_model(s, z[:2], R[:2, :2], (0, 1)))
    np.testing.assert_allclose(inn.y, z[:2] - st.p_ned[:2])
    inn = check(st, lambda s: position_model(s, z, R, (0, 1, 2), clone=1))
    np.testing.assert_allclose(inn.y, z - st.clone_p_ned[1])


@pytest.mark.parametrize("seed", SEEDS)
def test_odometry_model_H_matches_numerical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    st = random_state(rng, n_clones=3)
    z = rng.normal(0, 10, 2)
    R = np.array([[1.0, 0.2], [0.2, 2.0]])
    inn = check(st, lambda s: odometry_model(s, 0, 2, z, R))
    np.testing.assert_allclose(inn.y, z - (st.clone_p_ned[2, :2] - st.clone_p_ned[0, :2]))
    check(st, lambda s: odometry_model(s, 1, None, z, R))


@pytest.mark.parametrize("seed", SEEDS)
def test_baro_model_H_matches_numerical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    st = random_state(rng)
    inn = check(st, lambda s: baro_model(s, 120.0, 250.0, 1.0))
    assert inn.y[0] == pytest.approx(250.0 - (120.0 - st.p_ned[2] + st.baro_bias_m))


@pytest.mark.parametrize("seed", SEEDS)
def test_gnss_models_H_match_numerical_with_lever_arm(seed: int) -> None:
    rng = np.random.default_rng(seed)
    st = random_state(rng)
    lever = rng.normal(0, 0.5, 3)
    gyro = rng.normal(0, 0.3, 3)
    z = rng.normal(0, 100, 3)
    check(st, lambda s: gnss_position_model(s, z, np.eye(3) * 4.0, lever))
    check(st, lambda s: gnss_position_model(s, z[:2], np.eye(2) * 4.0, lever, (0, 1)))
    inn = check(st, lambda s: gnss_velocity_model(s, z / 10, np.eye(3) * 0.1, gyro, lever))
    # the lever arm really enters (the test would be vacuous with zero attitude columns)
    assert np.abs(inn.H[:, 6:9]).max() > 1e-3 and np.abs(inn.H[:, 12:15]).max() > 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_heading_model_H_matches_numerical_and_wraps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    st = random_state(rng)

    def heading(s: EskfState) -> Innovation:
        return heading_model(s, 3.1, 0.01)

    inn = check(st, heading)
    assert -math.pi < inn.y[0] <= math.pi


def test_heading_innovation_wraps_across_pi() -> None:
    st = random_state(np.random.default_rng(9))
    yaw = math.atan2(st.R_body_to_ned[1, 0], st.R_body_to_ned[0, 0])
    inn = heading_model(st, yaw + 2 * math.pi - 0.01, 0.01)
    assert inn.y[0] == pytest.approx(-0.01, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_time_shift_matches_numerical_jacobian_of_back_extrapolated_position(seed: int) -> None:
    rng = np.random.default_rng(seed)
    st = random_state(rng)
    z = rng.normal(0, 100, 2)
    dt = 0.3

    def shifted(s: EskfState) -> Innovation:
        return time_shift(s, position_model(s, z, np.eye(2), (0, 1)), dt, 2.0)

    inn = check(st, shifted)
    np.testing.assert_allclose(inn.y, z - (st.p_ned[:2] - st.v_ned[:2] * dt))
    assert inn.R[0, 0] == pytest.approx(1.0 + (0.5 * 2.0 * dt * dt) ** 2)
    check(st, lambda s: time_shift(s, baro_model(s, 10.0, 20.0, 1.0), -0.2, 2.0))
