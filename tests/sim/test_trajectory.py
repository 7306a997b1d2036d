"""Kinematic trajectories: rates, consistency of the truth, and the IMU integration bar."""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrafix.geo.rotation import quat_multiply, quat_to_R, rotvec_to_quat
from terrafix.sim.imu import ImuParams, simulate_imu
from terrafix.sim.trajectory import GRAVITY_MPS2, KinematicConfig, fly_kinematic

from .conftest import loop_plan


def strapdown(t_ns: np.ndarray, accel: np.ndarray, gyro: np.ndarray, p0: np.ndarray,
              v0: np.ndarray, q0: np.ndarray) -> np.ndarray:
    """Independent strapdown integration (trapezoidal) of IMU samples in a flat NED world with
    constant gravity; returns positions (N, 3)."""
    g = np.array([0.0, 0.0, GRAVITY_MPS2])
    p, v, q = p0.copy(), v0.copy(), q0.copy()
    out = np.empty((len(t_ns), 3))
    out[0] = p
    for k in range(len(t_ns) - 1):
        dt = (t_ns[k + 1] - t_ns[k]) * 1e-9
        R0 = quat_to_R(q)
        q = quat_multiply(q, rotvec_to_quat(0.5 * (gyro[k] + gyro[k + 1]) * dt))
        q /= np.linalg.norm(q)
        R1 = quat_to_R(q)
        v_new = v + (0.5 * (R0 @ accel[k] + R1 @ accel[k + 1]) + g) * dt
        p = p + 0.5 * (v + v_new) * dt
        v = v_new
        out[k + 1] = p
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ideal_imu_integrates_to_truth_within_half_metre_over_60s(seed, frame):
    rng = np.random.default_rng(seed)
    cfg = KinematicConfig(wind_ned_mps=(rng.uniform(-5, 5), rng.uniform(-5, 5), 0.0))
    truth = fly_kinematic(loop_plan(), 60.0, frame, rng, cfg)
    imu, _ = simulate_imu(truth, ImuParams.ideal(), rng)
    p = strapdown(imu.t_ns, imu.accel_body_mps2, imu.gyro_body_radps, truth.p_ned_m[0],
                  truth.v_ned_mps[0], truth.q_body_to_ned[0])
    err = np.linalg.norm(p - truth.p_ned_m, axis=1)
    assert truth.t_ns[-1] == 60_000_000_000
    # The flight must really manoeuvre, or the bar would be trivial.
    assert np.degrees(np.abs(truth.euler_rad[:, 0])).max() > 20.0
    assert np.ptp(truth.p_ned_m[:, 2]) > 10.0
    assert err.max() < 0.5, f"max error {err.max():.3f} m"


def test_noisy_imu_does_not_integrate_to_truth(frame):
    """The same integration with the datasheet noise drifts: the bar above is not vacuous."""
    rng = np.random.default_rng(5)
    truth = fly_kinematic(loop_plan(), 60.0, frame, rng)
    imu, _ = simulate_imu(truth, ImuParams(), rng)
    p = strapdown(imu.t_ns, imu.accel_body_mps2, imu.gyro_body_radps, truth.p_ned_m[0],
                  truth.v_ned_mps[0], truth.q_body_to_ned[0])
    assert np.linalg.norm(p[-1] - truth.p_ned_m[-1]) > 2.0


def test_truth_is_at_least_200hz_and_self_consistent(frame):
    truth = fly_kinematic(loop_plan(), 20.0, frame, np.random.default_rng(0))
    dt = np.diff(truth.t_ns)
    assert np.all(dt == 5_000_000)
    # Velocity is the derivative of position (central differences).
    v_num = (truth.p_ned_m[2:] - truth.p_ned_m[:-2]) / 0.01
    assert np.abs(v_num - truth.v_ned_mps[1:-1]).max() < 1e-3
    # Quaternion and Euler angles describe the same attitude.
    for k in range(0, len(truth.t_ns), 500):
        r, p, y = truth.euler_rad[k]
        from terrafix.geo.rotation import euler_to_R_body_to_ned
        assert np.allclose(quat_to_R(truth.q_body_to_ned[k]), euler_to_R_body_to_ned(r, p, y),
                           atol=1e-9)
    # Level-ish flight: the accelerometer reads about -g on z.
    assert abs(np.median(truth.f_body_mps2[:, 2]) + GRAVITY_MPS2) < 1.0
    # WGS84 truth matches NED truth through the frame.
    back = frame.lla_to_ned(truth.lat_deg, truth.lon_deg, truth.alt_m)
    assert np.abs(back - truth.p_ned_m).max() < 1e-3


def test_speed_bank_and_altitude_stay_within_limits(frame):
    cfg = KinematicConfig(airspeed_mps=20.0, max_bank_rad=math.radians(30.0))
    truth = fly_kinematic(loop_plan(), 120.0, frame, np.random.default_rng(9), cfg)
    speed = np.linalg.norm(truth.v_ned_mps, axis=1)
    assert speed.min() > 15.0 and speed.max() < 25.0
    assert np.abs(truth.euler_rad[:, 0]).max() <= math.radians(30.0) + 1e-6
    agl = -truth.p_ned_m[:, 2]
    assert agl.min() > 100.0 and agl.max() < 1000.0


def test_flight_passes_near_every_waypoint(frame):
    plan = loop_plan()
    truth = fly_kinematic(plan, 200.0, frame, np.random.default_rng(4))
    for wp in plan.waypoints_ne_m:
        d = np.linalg.norm(truth.p_ned_m[:, :2] - wp, axis=1).min()
        assert d < 60.0, f"closest approach to {wp} was {d:.0f} m"
