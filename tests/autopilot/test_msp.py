"""MSP v2 framing, CRC-8/DVB-S2 and MSP2_SENSOR_GPS, byte for byte from the protocol layout."""

import calendar

import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.errors import MspError
from terrafix.autopilot.gps_report import GpsReport
from terrafix.autopilot.msp import (
    MspSensorGps,
    MspV2Parser,
    crc8_dvb_s2,
    encode_frame,
    encode_sensor_gps,
    sensor_gps_from_report,
)


def test_crc8_dvb_s2_check_value():
    # The catalogue check value of CRC-8/DVB-S2 (poly 0xD5, init 0): CRC("123456789") = 0xBC.
    assert crc8_dvb_s2(b"123456789") == 0xBC
    assert crc8_dvb_s2(b"") == 0


def test_empty_request_frame_matches_the_msp_v2_documentation_example():
    # "$X<" flag 0, function 100 (0x0064), size 0, CRC 0x8F
    assert encode_frame(100, b"") == bytes.fromhex("24 58 3c 00 64 00 00 00 8f")


REPORT = GpsReport(
    utc_unix_ns=calendar.timegm((2024, 3, 15, 12, 34, 56)) * 1_000_000_000 + 789_000_000,
    gps_week=2305,
    gps_week_ms=123456789,
    fix_type=3,
    lat_deg=50.4501234,
    lon_deg=30.5234567,
    alt_m=180.25,
    v_ned_mps=(15.0, -5.25, -1.5),
    h_acc_m=2.5,
    v_acc_m=4.0,
    speed_acc_mps=0.35,
    hdop=0.5,
    vdop=0.8,
    satellites=12,
    yaw_deg=None,
    ignore_flags=0,
    label="satellite_anchored",
    age_s=0.0,
)

# Written by hand from the field layout (little-endian, packed):
EXPECTED_PAYLOAD = bytes.fromhex(
    "00"            # instance u8 = 0
    "01 09"         # gps_week u16 = 2305
    "15 cd 5b 07"   # ms_tow u32 = 123456789
    "03"            # fix_type u8 = 3 (3D)
    "0c"            # satellites_in_view u8 = 12
    "c4 09"         # horizontal_pos_accuracy u16 = 2500 mm
    "a0 0f"         # vertical_pos_accuracy u16 = 4000 mm
    "5e 01"         # horizontal_vel_accuracy u16 = 350 mm/s
    "32 00"         # hdop u16 = 50 (0.50 x 100)
    "87 82 31 12"   # longitude i32 = 305234567 (30.5234567 deg)
    "f2 13 12 1e"   # latitude i32 = 504501234 (50.4501234 deg)
    "69 46 00 00"   # msl_altitude i32 = 18025 cm
    "dc 05 00 00"   # ned_vel_north i32 = 1500 cm/s
    "f3 fd ff ff"   # ned_vel_east i32 = -525 cm/s
    "6a ff ff ff"   # ned_vel_down i32 = -150 cm/s
    "ff ff"         # true_yaw u16 = 65535 (not available)
    "e8 07"         # year u16 = 2024
    "03 0f"         # month 3, day 15
    "0c 22 38"      # 12:34:56 UTC
)


def test_sensor_gps_payload_byte_for_byte():
    assert len(EXPECTED_PAYLOAD) == 50
    assert sensor_gps_from_report(REPORT).pack() == EXPECTED_PAYLOAD


def test_sensor_gps_frame_byte_for_byte():
    header = bytes.fromhex("24 58 3c" "00" "03 1f" "32 00")  # $X< flag fn=0x1F03 size=50
    crc = crc8_dvb_s2(bytes.fromhex("00 03 1f 32 00") + EXPECTED_PAYLOAD)
    assert crc == 0xA2  # from the CRC function validated above by its check values
    assert encode_sensor_gps(REPORT) == header + EXPECTED_PAYLOAD + bytes([0xA2])


def test_no_fix_report_gives_fix_type_zero_and_saturated_accuracy():
    no_fix = GpsReport(**{**{f: getattr(REPORT, f) for f in REPORT.__slots__},
                          "fix_type": C.GPS_FIX_TYPE_NO_FIX, "h_acc_m": 9999.0,
                          "v_acc_m": 9999.0, "hdop": 99.99})
    m = sensor_gps_from_report(no_fix)
    assert m.fix_type == 0
    assert m.horizontal_pos_accuracy_mm == 0xFFFF
    assert m.hdop_x100 == 9999


def test_yaw_is_sent_in_centidegrees_when_available():
    r = GpsReport(**{**{f: getattr(REPORT, f) for f in REPORT.__slots__}, "yaw_deg": 90.5})
    assert sensor_gps_from_report(r).true_yaw_cdeg == 9050


def test_parser_round_trip_across_arbitrary_chunking():
    frames = encode_sensor_gps(REPORT) + encode_frame(100, b"", direction=ord(">"))
    stream = b"\x00garbage$" + frames + frames
    p = MspV2Parser()
    out = []
    for i in range(0, len(stream), 7):
        out += p.feed(stream[i:i + 7])
    assert [f.function for f in out] == [C.MSP2_SENSOR_GPS, 100, C.MSP2_SENSOR_GPS, 100]
    assert MspSensorGps.unpack(out[0].payload) == sensor_gps_from_report(REPORT)
    assert out[1].direction == ord(">")
    assert p.garbage_bytes == 9 and p.crc_errors == 0


def test_parser_counts_a_corrupted_frame_and_recovers():
    good = encode_sensor_gps(REPORT)
    bad = bytearray(good)
    bad[20] ^= 0xFF
    p = MspV2Parser()
    out = p.feed(bytes(bad) + good)
    assert len(out) == 1 and out[0].payload == EXPECTED_PAYLOAD
    assert p.crc_errors == 1


def test_out_of_range_fields_raise_with_the_value():
    with pytest.raises(MspError, match="out of range"):
        MspSensorGps(*([0] * 6 + [70000] + [0] * 15)).pack()
    with pytest.raises(MspError, match="0x"):
        encode_frame(0x1_0000, b"")
    with pytest.raises(MspError, match="expected 50"):
        MspSensorGps.unpack(b"\x00" * 49)
