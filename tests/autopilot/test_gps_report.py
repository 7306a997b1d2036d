"""NavSolution -> receiver-style report: fix type, accuracies, DOPs, ageing, no-fix (A1, N8)."""

import math

import numpy as np
import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.gps_report import (
    gps_report_from_solution,
    horizontal_radius95_m,
    satellites_for_hdop,
)
from terrafix.autopilot.gps_time import gps_week_and_ms
from terrafix.geo import distance_azimuth
from terrafix.measurements import SourceLabel

from .helpers import solution

NOW_MONO = 5_000_000_000_000
NOW_UTC = 1_750_000_000_000_000_000


def report(sol, age_s=0.0, **kw):
    return gps_report_from_solution(sol, NOW_MONO + int(age_s * 1e9), NOW_UTC, **kw)


@pytest.mark.parametrize("label", [SourceLabel.SATELLITE_ANCHORED, SourceLabel.VISUAL_PROPAGATED,
                                   SourceLabel.DEAD_RECKONED])
def test_labelled_solution_is_a_3d_fix_with_its_own_accuracies(label):
    r = report(solution(NOW_MONO, label=label, sigma_ne=4.0, sigma_d=6.0, sigma_v=0.3))
    assert r.fix_type == C.GPS_FIX_TYPE_3D
    assert r.h_acc_m == pytest.approx(4.0)
    assert r.v_acc_m == pytest.approx(6.0)
    assert r.speed_acc_mps == pytest.approx(0.3)
    assert r.label == label
    assert r.ignore_flags == 0
    assert (r.gps_week, r.gps_week_ms) == gps_week_and_ms(NOW_UTC)
    assert r.gps_week > 0


def test_horizontal_accuracy_is_the_worst_axis_not_the_average():
    sol = solution(NOW_MONO)
    cov = np.diag([1.0, 100.0, 4.0])  # 1 m north, 10 m east
    sol = type(sol)(**{**{f: getattr(sol, f) for f in sol.__slots__}, "cov_p_ned_m2": cov})
    assert report(sol).h_acc_m == pytest.approx(10.0)
    assert horizontal_radius95_m(cov) == pytest.approx(10.0 * math.sqrt(5.991464547107979))


@pytest.mark.parametrize("kw", [{"failsafe": True}, {"label": SourceLabel.NO_FIX},
                                {"sigma_ne": 600.0}])
def test_failsafe_no_fix_label_and_huge_covariance_give_an_explicit_no_fix(kw):
    r = report(solution(NOW_MONO, **kw))
    assert r.fix_type == C.GPS_FIX_TYPE_NO_FIX
    assert r.fix_type < C.ARDUPILOT_MIN_DECODED_FIX_TYPE
    assert r.h_acc_m == C.NO_FIX_POSITION_ACCURACY_M
    assert r.v_acc_m == C.NO_FIX_POSITION_ACCURACY_M
    assert r.hdop == C.NO_FIX_DOP and r.satellites == 0
    assert r.label == SourceLabel.NO_FIX


def test_non_positive_definite_covariance_is_no_fix():
    sol = solution(NOW_MONO)
    bad = np.array([[4.0, 10.0, 0.0], [10.0, 4.0, 0.0], [0.0, 0.0, 1.0]])  # eigenvalue -6
    sol = type(sol)(**{**{f: getattr(sol, f) for f in sol.__slots__}, "cov_p_ned_m2": bad})
    assert report(sol).fix_type == C.GPS_FIX_TYPE_NO_FIX


def test_nan_covariance_is_no_fix():
    sol = solution(NOW_MONO)
    cov = np.full((3, 3), np.nan)
    sol = type(sol)(**{**{f: getattr(sol, f) for f in sol.__slots__}, "cov_p_ned_m2": cov})
    assert report(sol).fix_type == C.GPS_FIX_TYPE_NO_FIX


def test_no_solution_yet_is_no_fix_with_valid_gps_time():
    r = gps_report_from_solution(None, NOW_MONO, NOW_UTC)
    assert r.fix_type == C.GPS_FIX_TYPE_NO_FIX
    assert r.gps_week > 0


def test_ageing_solution_is_extrapolated_and_its_accuracy_grows():
    sol = solution(NOW_MONO, v_ned=(20.0, 0.0, -2.0), sigma_ne=3.0, sigma_v=0.5)
    fresh, aged = report(sol), report(sol, age_s=1.0)
    dist, az = distance_azimuth(fresh.lat_deg, fresh.lon_deg, aged.lat_deg, aged.lon_deg)
    assert dist == pytest.approx(20.0, abs=0.01)
    assert az == pytest.approx(0.0, abs=0.1)
    assert aged.alt_m == pytest.approx(fresh.alt_m + 2.0)
    # 3 m + 0.5 m/s * 1 s + 0.5 * 2 m/s^2 * 1 s^2
    assert aged.h_acc_m == pytest.approx(3.0 + 0.5 + 0.5 * C.UNKNOWN_ACCEL_BOUND_MPS2)
    assert aged.age_s == pytest.approx(1.0)
    accs = [report(sol, age_s=a).h_acc_m for a in (0.0, 0.5, 1.0, 2.0, 2.9)]
    assert accs == sorted(accs) and len(set(accs)) == len(accs)


def test_report_describes_the_aircraft_the_autopilots_lag_before_it_is_sent():
    """ArduPilot places a GPS_INPUT that arrived at t at t - lag: the report must be the
    position then (a fresh solution moved back along its velocity), not the sending instant's."""
    sol = solution(NOW_MONO, v_ned=(20.0, 0.0, -2.0), sigma_ne=3.0, sigma_v=0.5)
    now_rep = report(sol, age_s=0.05)
    lagged = report(sol, age_s=0.05, valid_lag_s=0.2)
    dist, az = distance_azimuth(lagged.lat_deg, lagged.lon_deg, now_rep.lat_deg,
                                now_rep.lon_deg)
    assert dist == pytest.approx(20.0 * 0.2, abs=0.01) and az == pytest.approx(0.0, abs=0.1)
    start, _ = distance_azimuth(sol.lat_deg, sol.lon_deg, lagged.lat_deg, lagged.lon_deg)
    assert start == pytest.approx(20.0 * 0.15, abs=0.01)  # 0.15 s before the solution's time
    assert lagged.alt_m == pytest.approx(sol.alt_m - 2.0 * 0.15)
    span = 0.15  # |0.05 - 0.2|: the accuracy grows with the interval either way
    assert lagged.h_acc_m == pytest.approx(3.0 + 0.5 * span
                                           + 0.5 * C.UNKNOWN_ACCEL_BOUND_MPS2 * span ** 2)
    assert lagged.utc_unix_ns == NOW_UTC - 200_000_000
    assert lagged.age_s == pytest.approx(0.05)  # staleness stays on the real age
    assert report(sol, age_s=2.9, stale_after_s=3.0, valid_lag_s=0.2).fix_type == 3
    with pytest.raises(ValueError, match="valid_lag_s"):
        report(sol, valid_lag_s=-0.1)


def test_solution_older_than_stale_limit_becomes_no_fix():
    sol = solution(NOW_MONO)
    assert report(sol, age_s=2.9, stale_after_s=3.0).fix_type == C.GPS_FIX_TYPE_3D
    assert report(sol, age_s=3.1, stale_after_s=3.0).fix_type == C.GPS_FIX_TYPE_NO_FIX


def test_dops_and_satellites_are_consistent_with_accuracy():
    hd = []
    for sigma in (1.0, 3.0, 7.0, 15.0, 40.0, 120.0):
        r = report(solution(NOW_MONO, sigma_ne=sigma))
        assert r.hdop == pytest.approx(max(sigma / C.NOMINAL_UERE_M, 0.5))
        hd.append((r.hdop, r.satellites))
    hdops = [h for h, _ in hd]
    sats = [s for _, s in hd]
    assert hdops == sorted(hdops)
    assert sats == sorted(sats, reverse=True)
    assert all(C.SATS_MIN <= s <= C.SATS_MAX for s in sats)
    assert satellites_for_hdop(1.0) > satellites_for_hdop(2.0) > satellites_for_hdop(5.0)


def test_unknown_altitude_and_velocity_set_ignore_flags():
    sol = solution(NOW_MONO)
    cov = np.diag([9.0, 9.0, np.inf])
    v = np.array([np.nan, np.nan, np.nan])
    sol = type(sol)(**{**{f: getattr(sol, f) for f in sol.__slots__}, "cov_p_ned_m2": cov,
                       "v_ned_mps": v})
    r = report(sol)
    assert r.fix_type == C.GPS_FIX_TYPE_3D
    assert r.ignore_flags & C.GPS_INPUT_IGNORE_ALT
    assert r.ignore_flags & C.GPS_INPUT_IGNORE_VERTICAL_ACCURACY
    assert r.ignore_flags & C.GPS_INPUT_IGNORE_VEL_HORIZ
    assert r.ignore_flags & C.GPS_INPUT_IGNORE_VEL_VERT
    assert r.ignore_flags & C.GPS_INPUT_IGNORE_SPEED_ACCURACY
    assert not r.ignore_flags & C.GPS_INPUT_IGNORE_HORIZONTAL_ACCURACY
    # without a velocity an aged solution cannot be extrapolated: no fix
    assert report(sol, age_s=0.5).fix_type == C.GPS_FIX_TYPE_NO_FIX


def test_yaw_is_not_provided_by_default_and_north_is_360_when_sent():
    assert report(solution(NOW_MONO, yaw_rad=0.5)).yaw_deg is None
    assert report(solution(NOW_MONO, yaw_rad=0.0), send_yaw=True).yaw_deg == 360.0
    assert report(solution(NOW_MONO, yaw_rad=-math.pi / 2), send_yaw=True).yaw_deg == (
        pytest.approx(270.0))
