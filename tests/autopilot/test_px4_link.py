"""The PX4 output link: GLOBAL_POSITION_SENSOR bytes against the MAVLink XML definition that
pymavlink ships, the GpsReport mapping, and a signed round trip to an FC in another process."""

from __future__ import annotations

import math
import struct
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pymavlink
import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.ardupilot import ArduPilotLinkConfig, FcCallbacks
from terrafix.autopilot.gps_report import gps_report_from_solution
from terrafix.autopilot.px4 import Px4Link, Px4OutputConfig, encode_global_position_sensor

from .helpers import solution
from .px4_peer import px4_fc_peer_main

mavlink = C.DIALECT
COMMON_XML = Path(pymavlink.__file__).parent / "dialects" / "v20" / "common.xml"
_STRUCT = {"uint8_t": "B", "int8_t": "b", "uint16_t": "H", "int16_t": "h", "uint32_t": "I",
           "int32_t": "i", "uint64_t": "Q", "int64_t": "q", "float": "f", "double": "d"}


def _definition(msg_id: int) -> tuple[str, list[tuple[str, str]]]:
    """(name, [(type, field name)] of the base fields in wire order) from the XML: MAVLink
    sorts base fields by type size, largest first, keeping XML order among equals."""
    root = ET.parse(COMMON_XML).getroot()
    msg = next(m for m in root.iter("message") if int(m.get("id")) == msg_id)
    fields = []
    for child in msg:
        if child.tag == "extensions":
            break
        if child.tag == "field":
            fields.append((child.get("type"), child.get("name")))
    wire = sorted(fields, key=lambda f: -struct.calcsize(_STRUCT[f[0]]))
    return msg.get("name"), wire


def _crc_extra(name: str, wire: list[tuple[str, str]]) -> int:
    crc = mavlink.x25crc((name + " ").encode())
    for ftype, fname in wire:
        crc.accumulate((ftype + " ").encode())
        crc.accumulate((fname + " ").encode())
    return (crc.crc & 0xFF) ^ (crc.crc >> 8)


def test_global_position_sensor_bytes_match_the_xml_definition() -> None:
    name, wire = _definition(C.MSG_GLOBAL_POSITION_SENSOR)
    assert name == "GLOBAL_POSITION_SENSOR"
    crc_extra = _crc_extra(name, wire)
    assert mavlink.MAVLink_global_position_sensor_message.crc_extra == crc_extra
    report = gps_report_from_solution(solution(1_000_000_000, lat=47.397742, lon=8.545594,
                                               alt=488.1, sigma_ne=3.0, sigma_d=5.0),
                                      1_000_000_000, 1_767_225_600_123_456_000)
    msg = encode_global_position_sensor(report, 7, C.GLOBAL_POSITION_SRC_VISION)
    frame = msg.pack(mavlink.MAVLink(None, srcSystem=1, srcComponent=191))
    assert frame[0] == 0xFD
    plen = frame[1]
    assert int.from_bytes(frame[7:10], "little") == 296
    values = {"target_system": 0, "target_component": 0, "id": 7,
              "time_usec": 1_767_225_600_123_456, "processing_time": 0,
              "source": C.GLOBAL_POSITION_SRC_VISION, "flags": 0,
              "lat": round(47.397742e7), "lon": round(8.545594e7), "alt_ellipsoid": math.nan,
              "alt": 488.1, "eph": report.h_acc_m, "epv": report.v_acc_m}
    expected = struct.pack("<" + "".join(_STRUCT[t] for t, _ in wire),
                           *(values[n] for _, n in wire))
    # MAVLink 2 truncates trailing zero bytes of the payload
    assert frame[10:10 + plen] == expected.rstrip(b"\x00")
    crc = mavlink.x25crc(frame[1:10 + plen])
    crc.accumulate(bytes([crc_extra]))
    assert frame[10 + plen:12 + plen] == struct.pack("<H", crc.crc)
    # and back through the decoder
    decoded = mavlink.MAVLink(None).parse_char(frame)
    assert decoded.get_type() == "GLOBAL_POSITION_SENSOR"
    assert decoded.lat == values["lat"] and decoded.id == 7
    assert decoded.eph == pytest.approx(3.0, rel=1e-6)
    assert decoded.epv == pytest.approx(5.0, rel=1e-6)
    assert math.isnan(decoded.alt_ellipsoid)


def test_no_fix_is_sent_unhealthy_with_the_invalid_position() -> None:
    report = gps_report_from_solution(solution(0, failsafe=True), 0, 1_767_225_600_000_000_000)
    msg = encode_global_position_sensor(report, 1)
    assert msg.flags & C.GLOBAL_POSITION_FLAG_UNHEALTHY
    assert msg.lat == msg.lon == 2**31 - 1
    assert math.isnan(msg.eph) and math.isnan(msg.epv) and math.isnan(msg.alt)


def test_accuracy_is_the_worst_horizontal_axis() -> None:
    sol = solution(0)
    cov = np.diag([4.0, 36.0, 9.0])
    sol = type(sol)(**{**{f: getattr(sol, f) for f in sol.__slots__}, "cov_p_ned_m2": cov})
    report = gps_report_from_solution(sol, 0, 1_767_225_600_000_000_000)
    msg = encode_global_position_sensor(report, 1)
    assert msg.eph == pytest.approx(6.0) and msg.epv == pytest.approx(3.0)


def test_px4_link_signed_round_trip_between_processes(start_peer) -> None:
    peer = start_peer(px4_fc_peer_main, {"telemetry_hz": 50.0})
    _, port = peer.address
    imu = [0]
    link = Px4Link(ArduPilotLinkConfig(connection=f"udpout:127.0.0.1:{port}",
                                       gps_input_rate_hz=10.0, sender_realtime_priority=0),
                   FcCallbacks(on_imu=lambda s: imu.__setitem__(0, imu[0] + 1)),
                   px4=Px4OutputConfig(sensor_id=3))
    try:
        link.open()
        link.establish_signing()
        link.start_output()
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            link.publish(solution(time.monotonic_ns(), lat=47.3977, lon=8.5456, sigma_ne=2.5))
            time.sleep(0.05)
            if link.output_stats().sent >= 15:
                break
        link.publish(solution(time.monotonic_ns(), failsafe=True))
        t_failsafe = time.monotonic_ns()
        time.sleep(0.6)
        recs = peer.call("records")
        summary = peer.call("summary")
    finally:
        link.close()
    assert summary["signing_active"] and summary["gps_input"] == 0
    assert summary["rejected_unsigned"] == 0 and summary["rejected_bad_signature"] == 0
    assert imu[0] > 0  # PX4's HIGHRES_IMU reached the companion
    good = [r for r in recs if not r["flags"] & C.GLOBAL_POSITION_FLAG_UNHEALTHY]
    assert len(good) >= 10 and all(r["signed"] for r in recs)
    for r in good:
        assert r["id"] == 3 and r["source"] == C.GLOBAL_POSITION_SRC_VISION
        assert r["lat"] / 1e7 == pytest.approx(47.3977, abs=2e-5)
        assert r["lon"] / 1e7 == pytest.approx(8.5456, abs=2e-5)
        assert 2.5 <= r["eph"] < 3.5  # 2.5 m grown by the extrapolation since publication
    late = [r for r in recs if r["arrival_ns"] > t_failsafe + 200_000_000]
    assert late and all(r["flags"] & C.GLOBAL_POSITION_FLAG_UNHEALTHY for r in late)
