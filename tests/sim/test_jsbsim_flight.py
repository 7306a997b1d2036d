"""JSBSim trajectories: waypoint following, determinism and the IMU integration bar."""

from __future__ import annotations

import numpy as np
import pytest

from terrafix.sim.imu import ImuParams, simulate_imu
from terrafix.sim.jsbsim_flight import fly_jsbsim
from terrafix.sim.scenario import load_scenario

from .conftest import LONGMONT, loop_plan
from .test_trajectory import strapdown


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_jsbsim_truth_integrates_within_half_metre_over_60s_and_follows_waypoints(seed):
    rng = np.random.default_rng(seed)
    plan = loop_plan(400.0, 250.0)
    wind = (float(rng.uniform(-4, 4)), float(rng.uniform(-4, 4)), 0.0)
    truth = fly_jsbsim(plan, 60.0, LONGMONT, rng, wind_ned_mps=wind)
    assert np.all(np.diff(truth.t_ns) == 5_000_000)
    imu, _ = simulate_imu(truth, ImuParams.ideal(), rng)
    p = strapdown(imu.t_ns, imu.accel_body_mps2, imu.gyro_body_radps, truth.p_ned_m[0],
                  truth.v_ned_mps[0], truth.q_body_to_ned[0])
    assert np.linalg.norm(p - truth.p_ned_m, axis=1).max() < 0.5
    # It really banks, and reaches the first two waypoints.
    assert np.degrees(np.abs(truth.euler_rad[:, 0])).max() > 15.0
    for wp in plan.waypoints_ne_m[:2]:
        assert np.linalg.norm(truth.p_ned_m[:, :2] - wp, axis=1).min() < 80.0
    speed = np.linalg.norm(truth.v_ned_mps, axis=1)
    assert 15.0 < np.median(speed) < 35.0


def test_jsbsim_is_deterministic_per_seed():
    plan = loop_plan(400.0, 250.0)
    a = fly_jsbsim(plan, 8.0, LONGMONT, np.random.default_rng(3), wind_ned_mps=(2, 1, 0))
    b = fly_jsbsim(plan, 8.0, LONGMONT, np.random.default_rng(3), wind_ned_mps=(2, 1, 0))
    assert np.array_equal(a.p_ned_m, b.p_ned_m) and np.array_equal(a.f_body_mps2,
                                                                   b.f_body_mps2)


def test_jsbsim_scenario_is_shipped():
    sc = load_scenario("jsbsim-meaconing")
    assert sc.trajectory.model == "jsbsim"
    assert [a.kind for a in sc.gnss.attacks] == ["meaconing"]
