"""Sensor models: IMU noise against the datasheet, FC attitude, baro, GNSS and its attacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrafix.sim.attitude import AttitudeErrorParams, simulate_attitude
from terrafix.sim.baro import BaroParams, simulate_baro
from terrafix.sim.errors import SimError
from terrafix.sim.gnss import FIX_3D, FIX_NONE, GnssAttack, GnssParams, simulate_gnss
from terrafix.sim.imu import ImuParams, simulate_imu
from terrafix.sim.trajectory import fly_kinematic

from .conftest import loop_plan


@pytest.fixture(scope="module")
def truth():
    from .conftest import LONGMONT
    return fly_kinematic(loop_plan(), 240.0, LONGMONT, np.random.default_rng(11))


@pytest.mark.parametrize("seed", [0, 1])
def test_imu_white_noise_matches_icm42688_density(truth, seed):
    params = ImuParams(gyro_turn_on_bias_radps=0.0, accel_turn_on_bias_mps2=0.0,
                       gyro_bias_random_walk_radps_per_rts=0.0,
                       accel_bias_random_walk_mps2_per_rts=0.0, gyro_scale_tolerance=0.0,
                       accel_scale_tolerance=0.0)
    imu, _ = simulate_imu(truth, params, np.random.default_rng(seed))
    gyro_err = imu.gyro_body_radps - truth.omega_body_radps
    accel_err = imu.accel_body_mps2 - truth.f_body_mps2
    # 2.8 mdps/sqrt(Hz) and 70 ug/sqrt(Hz) at 200 Hz.
    assert np.std(gyro_err) == pytest.approx(math.radians(2.8e-3) * math.sqrt(200), rel=0.03)
    assert np.std(accel_err) == pytest.approx(70e-6 * 9.80665 * math.sqrt(200), rel=0.03)


def test_imu_bias_and_scale_are_applied_and_reported(truth):
    imu, errs = simulate_imu(truth, ImuParams(), np.random.default_rng(3))
    assert np.all(np.abs(errs.gyro_scale) <= 0.005) and np.any(errs.gyro_scale != 0)
    model = (1 + errs.accel_scale) * truth.f_body_mps2 + errs.accel_bias_mps2
    resid = imu.accel_body_mps2 - model
    assert np.std(resid) == pytest.approx(70e-6 * 9.80665 * math.sqrt(200), rel=0.05)
    # The bias random walk really moves over four minutes (but stays in the mg range).
    drift = np.abs(errs.gyro_bias_radps[-1] - errs.gyro_bias_radps[0])
    assert np.all(drift < math.radians(0.1)) and np.any(drift > 1e-5)


def test_ideal_imu_reads_the_truth(truth):
    imu, _ = simulate_imu(truth, ImuParams.ideal(), np.random.default_rng(0))
    assert np.array_equal(imu.gyro_body_radps, truth.omega_body_radps)
    assert np.array_equal(imu.accel_body_mps2, truth.f_body_mps2)


def test_fc_attitude_error_is_realistic_and_slow(truth):
    att = simulate_attitude(truth, AttitudeErrorParams(), np.random.default_rng(2))
    assert np.all(np.diff(att.t_ns) == 20_000_000)  # 50 Hz
    idx = np.searchsorted(truth.t_ns, att.t_ns)
    err = att.euler_rad - truth.euler_rad[idx]
    err[:, 2] = (err[:, 2] + np.pi) % (2 * np.pi) - np.pi
    rp = np.degrees(np.abs(err[:, :2]))
    assert 0.05 < np.median(rp) < 1.5 and rp.max() < 3.0
    assert np.degrees(np.abs(err[:, 2])).max() < 12.0
    # Slowly varying: consecutive samples differ far less than the error itself.
    assert np.std(np.diff(err[:, 0])) < 0.2 * np.std(err[:, 0])


def test_baro_tracks_truth_with_noise(truth):
    baro = simulate_baro(truth, BaroParams(), np.random.default_rng(4))
    assert np.all(np.diff(baro.t_ns) == 50_000_000)  # 20 Hz
    idx = np.searchsorted(truth.t_ns, baro.t_ns)
    err = baro.alt_m - truth.alt_m[idx]
    assert np.abs(np.median(err)) < 5.0
    assert 0.2 < np.std(np.diff(err)) < 0.8  # white noise 0.3 m shows in differences


def _gnss(truth, attacks, seed=0, rate=5.0):
    from .conftest import LONGMONT
    g = simulate_gnss(truth, LONGMONT, GnssParams(rate_hz=rate), attacks,
                      np.random.default_rng(seed))
    p = LONGMONT.lla_to_ned(np.nan_to_num(g.lat_deg), np.nan_to_num(g.lon_deg),
                            np.nan_to_num(g.alt_m))
    idx = np.searchsorted(truth.t_ns, g.t_ns)
    return g, p - truth.p_ned_m[idx], idx


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nominal_gnss_accuracy_is_m8n_like(truth, seed):
    g, err, _ = _gnss(truth, [], seed)
    assert np.all(np.diff(g.t_ns) == 200_000_000)
    horiz = np.linalg.norm(err[:, :2], axis=1)
    assert 0.5 < np.median(horiz) < 5.0 and horiz.max() < 12.0
    assert np.all(g.fix_type == FIX_3D) and not g.jamming.any() and not g.spoofing.any()
    assert set(g.attack) == {"none"}


def test_gnss_rate_ten_hz(truth):
    g, _, _ = _gnss(truth, [], rate=10.0)
    assert np.all(np.diff(g.t_ns) == 100_000_000)


def test_jamming_degrades_then_denies_and_raises_flag(truth):
    g, _err, _ = _gnss(truth, [GnssAttack("jamming", 60.0, 120.0, ramp_s=10.0)])
    t = g.t_ns * 1e-9
    during = (t >= 60) & (t < 120)
    ramp = (t >= 60) & (t < 70)
    denied = (t >= 70) & (t < 120)
    assert np.all(g.attack[during] == "jamming") and np.all(g.attack[~during] == "none")
    assert np.all(g.jamming[during]) and not g.jamming[~during].any()
    assert np.all(g.fix_type[denied] == FIX_NONE) and np.all(np.isnan(g.lat_deg[denied]))
    assert np.all(g.h_acc_m[ramp] > 10.0) and np.all(g.num_sats[ramp] <= 5)
    assert np.all(g.fix_type[t >= 120] == FIX_3D)


def test_jump_offsets_position_and_flag_follows_setting(truth):
    atk = GnssAttack("jump", 30.0, 90.0, offset_ned_m=(300.0, -200.0, 0.0), flag=False)
    g, err, _ = _gnss(truth, [atk])
    t = g.t_ns * 1e-9
    on = (t >= 30) & (t < 90)
    assert np.allclose(np.median(err[on, :2], axis=0), [300, -200], atol=6.0)
    assert not g.spoofing.any()
    assert np.all(g.h_acc_m[on] < 4.0)  # the spoofer looks healthy
    g2, _, _ = _gnss(truth, [GnssAttack("jump", 30.0, 90.0, offset_ned_m=(300, -200, 0),
                                        flag=True, flag_delay_s=5.0)])
    assert np.array_equal(g2.spoofing, (t >= 35) & (t < 90))


@pytest.mark.parametrize("rate", [0.5, 2.0])
def test_pulloff_drifts_at_the_set_rate(truth, rate):
    atk = GnssAttack("pulloff", 20.0, 200.0, rate_mps=rate, bearing_deg=45.0, flag=False)
    g, err, idx = _gnss(truth, [atk])
    t = g.t_ns * 1e-9
    on = (t >= 20) & (t < 200)
    slope = np.polyfit(t[on], err[on, 0] + err[on, 1], 1)[0] / math.sqrt(2)
    assert slope == pytest.approx(rate, rel=0.15)
    # The spoofed velocity includes the drift (self-consistent spoofer).
    dv = g.v_ned_mps[on, :2] - truth.v_ned_mps[idx[on], :2]
    assert np.allclose(np.median(dv, axis=0), rate * np.array([1, 1]) / math.sqrt(2),
                       atol=0.05)


def test_pulloff_rate_outside_half_to_two_mps_is_refused():
    with pytest.raises(SimError, match="pull-off rate"):
        GnssAttack("pulloff", 0.0, 10.0, rate_mps=3.0)


def test_meaconing_replays_the_truth_with_delay(truth):
    atk = GnssAttack("meaconing", 100.0, 180.0, delay_s=8.0)
    g, _, _ = _gnss(truth, [atk])
    from .conftest import LONGMONT
    p = LONGMONT.lla_to_ned(g.lat_deg, g.lon_deg, g.alt_m)
    t = g.t_ns * 1e-9
    on = (t >= 100) & (t < 180)
    delayed = np.column_stack([np.interp(g.t_ns[on] - 8e9, truth.t_ns, truth.p_ned_m[:, k])
                               for k in range(3)])
    now = np.column_stack([np.interp(g.t_ns[on], truth.t_ns, truth.p_ned_m[:, k])
                           for k in range(3)])
    e_delayed = np.median(np.linalg.norm(p[on, :2] - delayed[:, :2], axis=1))
    e_now = np.median(np.linalg.norm(p[on, :2] - now[:, :2], axis=1))
    assert e_delayed < 5.0 and e_now > 100.0  # 8 s at 18 m/s = 144 m behind
    assert np.all(g.spoofing[on]) and np.all(g.attack[on] == "meaconing")
