"""FC telemetry bytes -> typed samples: units, frames, IMU selection, GNSS flags, landed state."""

import math

import numpy as np
import pytest
from pymavlink.dialects.v20 import all as mavlink

from terrafix.autopilot import constants as C
from terrafix.autopilot.inbound import (
    FcHeartbeat,
    FcPosition,
    FcStatusText,
    GnssInterference,
    InboundDecoder,
    InboundValueError,
    LandedState,
    pressure_altitude_m,
)
from terrafix.measurements import AttitudeSample, BaroSample, GnssSample, ImuSample

FC = mavlink.MAVLink(None, srcSystem=1, srcComponent=1)
T0 = 10_000_000_000_000


def wire(msg):
    """Through real MAVLink 2 bytes and back (what the link's reader hands the decoder)."""
    rx = mavlink.MAVLink(None)
    [out] = rx.parse_buffer(msg.pack(FC))
    return out


def decode(dec, msg, arrival=T0):
    return dec.decode(wire(msg), arrival)


def gps_raw(lat=50.45, lon=30.52, vel=1500, cog=9000, h_acc=2500, eph=120, **kw):
    return mavlink.MAVLink_gps_raw_int_message(
        kw.get("time_usec", 5_000_000), 3, round(lat * 1e7), round(lon * 1e7), 180_250, eph, 200,
        vel, cog, 14, 180_000, h_acc, 4000, 300, 0, 0)


def test_raw_imu_units_and_instance_selection():
    dec = InboundDecoder()
    [s] = decode(dec, mavlink.MAVLink_raw_imu_message(2_000_000, 10, -20, -1000, 100, -50, 5,
                                                       0, 0, 0, 0, 0))
    assert isinstance(s, ImuSample)
    np.testing.assert_allclose(s.accel_body_mps2, np.array([10, -20, -1000]) * 9.80665e-3)
    np.testing.assert_allclose(s.gyro_body_radps, [0.1, -0.05, 0.005])
    assert decode(dec, mavlink.MAVLink_raw_imu_message(2_000_000, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                        1, 0)) == []  # IMU2 instance
    assert dec.imu_message == "RAW_IMU"
    # auto locked onto RAW_IMU: a second IMU type is not interleaved
    assert decode(dec, mavlink.MAVLink_scaled_imu2_message(2000, 0, 0, -1000, 0, 0, 0, 0, 0,
                                                            0, 0)) == []


def test_highres_imu_gives_imu_and_pressure_altitude():
    dec = InboundDecoder(imu_message="HIGHRES_IMU")
    out = decode(dec, mavlink.MAVLink_highres_imu_message(
        3_000_000, 0.1, 0.2, -9.8, 0.01, 0.02, 0.03, 0, 0, 0, 1000.0, 0, 123.5, 20.0,
        0x3F | 0x800, 0))
    imu, baro = out
    np.testing.assert_allclose(imu.accel_body_mps2, [0.1, 0.2, -9.8], rtol=1e-6)
    assert isinstance(baro, BaroSample) and baro.alt_m == pytest.approx(123.5)


def test_attitude_in_radians_with_fc_time_aligned():
    dec = InboundDecoder()
    att = [decode(dec, mavlink.MAVLink_attitude_message(ms, 0.1, -0.2, 3.0, 0, 0, 0),
                  arrival=T0 + arr_ms * 1_000_000)[0]
           for ms, arr_ms in ((1000, 5), (1010, 11), (1020, 25))]  # latencies 5, 1, 5 ms
    assert isinstance(att[0], AttitudeSample)
    assert (att[0].roll_rad, att[0].pitch_rad, att[0].yaw_rad) == pytest.approx((0.1, -0.2, 3.0))
    assert dec.clock_offset_ns == T0 + 11_000_000 - 1_010_000_000  # least-delayed message
    assert att[1].t_ns == T0 + 11_000_000
    # the slow third message is placed at FC time + offset, 10 ms after the second (FC
    # spacing), not at its late arrival (14 ms after)
    assert att[2].t_ns - att[1].t_ns == 10_000_000
    assert att[2].t_ns < T0 + 25_000_000


def test_gps_raw_int_fields_and_accuracy_fallback():
    dec = InboundDecoder()
    [g] = decode(dec, gps_raw())
    assert isinstance(g, GnssSample)
    assert (g.lat_deg, g.lon_deg, g.alt_m) == pytest.approx((50.45, 30.52, 180.25))
    np.testing.assert_allclose(g.v_ned_mps[:2], [0.0, 15.0], atol=1e-9)  # 15 m/s due east
    assert math.isnan(g.v_ned_mps[2])
    assert (g.h_acc_m, g.v_acc_m, g.fix_type, g.num_sats) == (2.5, 4.0, 3, 14)
    assert not g.spoofing and not g.jamming
    [g2] = decode(dec, gps_raw(h_acc=0, eph=150))  # no h_acc extension: HDOP x UERE
    assert g2.h_acc_m == pytest.approx(1.5 * C.NOMINAL_UERE_M)


def test_impossible_coordinates_are_refused():
    dec = InboundDecoder()
    with pytest.raises(InboundValueError, match="outside"):
        decode(dec, gps_raw(lat=95.0))


def test_gnss_integrity_sets_flags_on_its_receiver_and_expires():
    dec = InboundDecoder()
    [ev] = decode(dec, mavlink.MAVLink_gnss_integrity_message(
        0, 0, 0, C.GNSS_JAMMING_STATE_DETECTED, C.GNSS_SPOOFING_STATE_MITIGATED, 0, 0, 0, 0, 0,
        0, 0))
    assert isinstance(ev, GnssInterference) and ev.jamming and ev.spoofing
    [g] = decode(dec, gps_raw(time_usec=0))
    assert g.jamming and g.spoofing
    [g2] = decode(dec, mavlink.MAVLink_gps2_raw_message(0, 3, 504500000, 305200000, 0, 100, 100,
                                                         0, 0, 10, 0, 0))
    assert not g2.spoofing  # receiver 1 is not flagged by receiver 0's report
    later = T0 + int((C.GNSS_FLAG_HOLD_S + 1) * 1e9)
    [g3] = decode(dec, gps_raw(time_usec=0), arrival=later)
    assert not g3.spoofing and not g3.jamming


def test_statustext_spoofing_flags_every_receiver():
    dec = InboundDecoder()
    out = decode(dec, mavlink.MAVLink_statustext_message(2, b"GPS 1: spoofing detected", 0, 0))
    assert isinstance(out[0], FcStatusText) and out[0].text == "GPS 1: spoofing detected"
    assert isinstance(out[1], GnssInterference) and out[1].spoofing and not out[1].jamming
    [g] = decode(dec, gps_raw(time_usec=0))
    assert g.spoofing
    # an unrelated text raises nothing
    assert len(decode(dec, mavlink.MAVLink_statustext_message(6, b"Mission: 3 WP", 0, 0))) == 1


@pytest.mark.parametrize("state,on_ground", [(C.LANDED_STATE_ON_GROUND, True),
                                              (C.LANDED_STATE_UNDEFINED, False),
                                              (C.LANDED_STATE_IN_AIR, False),
                                              (C.LANDED_STATE_LANDING, False),
                                              (C.LANDED_STATE_TAKEOFF, False)])
def test_landed_state_fails_closed(state, on_ground):
    [s] = decode(InboundDecoder(), mavlink.MAVLink_extended_sys_state_message(0, state))
    assert isinstance(s, LandedState) and s.on_ground is on_ground


def test_scaled_pressure_isa_altitude_and_take_off_reference():
    dec = InboundDecoder()
    [b] = decode(dec, mavlink.MAVLink_scaled_pressure_message(100, 1013.25, 0, 2000, 0))
    assert b.alt_m == pytest.approx(0.0, abs=1e-6)
    p_950 = 1013.25 * (1 - 950 / 44330.769) ** (1 / 0.190263)
    [b] = decode(dec, mavlink.MAVLink_scaled_pressure_message(200, p_950, 0, 2000, 0))
    assert b.alt_m == pytest.approx(950.0, abs=0.05)  # float32 on the wire
    assert pressure_altitude_m(1013.25, 1013.25) == 0.0
    qnh = dec.set_baro_reference(1000.0)  # the take-off site is 1000 m, not 950 m
    [b] = decode(dec, mavlink.MAVLink_scaled_pressure_message(300, p_950, 0, 2000, 0))
    assert b.alt_m == pytest.approx(1000.0, abs=1e-6) and qnh > 1013.25


def test_global_position_int_is_the_fc_position_not_a_baro_sample():
    [p] = decode(InboundDecoder(), mavlink.MAVLink_global_position_int_message(
        500, 504500000, 305200000, 181000, 31000, 1500, -200, 50, 9000))
    assert isinstance(p, FcPosition)
    assert (p.lat_deg, p.lon_deg, p.alt_m, p.rel_alt_m) == pytest.approx((50.45, 30.52, 181, 31))
    np.testing.assert_allclose(p.v_ned_mps, [15.0, -2.0, 0.5])
    assert p.heading_rad == pytest.approx(math.pi / 2)


def test_heartbeat_armed_flag():
    [h] = decode(InboundDecoder(), mavlink.MAVLink_heartbeat_message(
        1, 3, C.MAV_MODE_FLAG_SAFETY_ARMED | 1, 10, 4, 3))
    assert isinstance(h, FcHeartbeat) and h.armed and h.is_autopilot
    assert (h.system_id, h.component_id) == (1, 1)


def test_unix_epoch_imu_time_uses_its_own_aligner():
    dec = InboundDecoder()
    decode(dec, mavlink.MAVLink_attitude_message(1000, 0, 0, 0, 0, 0, 0), arrival=T0)
    offset = dec.clock_offset_ns
    unix_us = 1_750_000_000_000_000
    imu = mavlink.MAVLink_raw_imu_message(unix_us, 0, 0, -1000, 0, 0, 0, 0, 0, 0, 0, 0)
    [s1] = decode(dec, imu, arrival=T0 + 3_000_000)
    imu2 = mavlink.MAVLink_raw_imu_message(unix_us + 5000, 0, 0, -1000, 0, 0, 0, 0, 0, 0, 0, 0)
    [s2] = decode(dec, imu2, arrival=T0 + 9_000_000)
    assert s1.t_ns == T0 + 3_000_000
    assert s2.t_ns - s1.t_ns == 5_000_000  # FC spacing kept in the UNIX domain too
    assert dec.clock_offset_ns == offset  # the boot-clock estimate was not disturbed


def test_gnss_time_in_unix_epoch_never_steers_the_clock():
    """GPS time comes from the satellites: under spoofing it is the attacker's, so GNSS samples
    stamped in UNIX time take their arrival time."""
    dec = InboundDecoder()
    unix_us = 1_750_000_000_000_000
    [g1] = decode(dec, gps_raw(time_usec=unix_us), arrival=T0 + 1_000_000)
    [g2] = decode(dec, gps_raw(time_usec=unix_us - 3_600_000_000), arrival=T0 + 201_000_000)
    assert (g1.t_ns, g2.t_ns) == (T0 + 1_000_000, T0 + 201_000_000)


def test_the_receivers_report_latency_is_taken_off_the_gnss_time():
    """ArduPilot stamps GPS_RAW_INT when its driver gets the fix, a receiver latency after
    the measurement (0.12 s for a u-blox M8): the sample is dated when the position was true.
    Boot-stamped and UNIX-stamped (arrival) reports alike; nonsense lags are refused."""
    plain, lagged = InboundDecoder(), InboundDecoder(gnss_lag_s=0.12)
    for dec in (plain, lagged):  # the same boot clock alignment for both
        decode(dec, mavlink.MAVLink_attitude_message(5000, 0, 0, 0, 0, 0, 0))
    [g0] = decode(plain, gps_raw(time_usec=5_000_000))
    [g1] = decode(lagged, gps_raw(time_usec=5_000_000))
    assert g0.t_ns - g1.t_ns == 120_000_000
    unix_us = int(C.UNIX_EPOCH_THRESHOLD_US) + 10**12
    [u] = decode(lagged, gps_raw(time_usec=unix_us), arrival=T0 + 10**9)
    assert u.t_ns == T0 + 10**9 - 120_000_000
    with pytest.raises(InboundValueError, match="gnss_lag_s"):
        InboundDecoder(gnss_lag_s=-0.1)
