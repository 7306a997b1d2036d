"""The flight-state gate against the FC emulator in its own process over real UDP MAVLink:
only a fresh ON_GROUND + disarmed + a clean recorder footer opens it; UNKNOWN, IN_AIR,
TAKEOFF, LANDING, armed, no answer, a failing read and a dirty footer refuse with an ERROR
naming the state, and nothing is sent (REQUIREMENTS U2)."""

from __future__ import annotations

import logging

import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.ardupilot import ArduPilotLink, ArduPilotLinkConfig
from terrafix.recorder import FlightRecorder
from terrafix.upload.errors import GateRefusedError
from terrafix.upload.gate import FcStateReading, check_upload_gate, read_fc_state
from terrafix.upload.post_flight import upload_flight
from tests.autopilot.conftest import Peer
from tests.autopilot.peers import fc_peer_main

from .fixtures import make_flight_store

RECORD_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
"""Any real schema: the gate reads only the log's footer (the recorder refuses an empty one)."""


@pytest.fixture
def recorder_folder(tmp_path):
    folder = tmp_path / "flights" / "f1"
    rec = FlightRecorder(folder, flight_id="f1", config_hash="x")
    rec.producer("nav/solution", RECORD_SCHEMA).record(1, {"a": 1})
    rec.close()
    return folder


def _reading(options: dict) -> FcStateReading:
    peer = Peer(fc_peer_main, "udpin:127.0.0.1:0", {"telemetry_hz": 50, **options})
    link = ArduPilotLink(ArduPilotLinkConfig(connection=f"udpout:127.0.0.1:{peer.address[1]}"))
    try:
        link.open()
        return read_fc_state(link, wait_s=3.0 if options.get("telemetry_hz", 50) else 1.0)
    finally:
        link.close()
        peer.close()


def test_on_ground_disarmed_clean_footer_opens(recorder_folder):
    reading = _reading({"landed_state": C.LANDED_STATE_ON_GROUND})
    assert reading.landed_name == "ON_GROUND" and reading.armed is False
    check_upload_gate(reading, recorder_folder)  # no exception


@pytest.mark.parametrize("state,name", [(C.LANDED_STATE_UNDEFINED, "UNKNOWN"),
                                        (C.LANDED_STATE_IN_AIR, "IN_AIR"),
                                        (C.LANDED_STATE_TAKEOFF, "TAKEOFF"),
                                        (C.LANDED_STATE_LANDING, "LANDING")])
def test_not_on_ground_refuses_naming_the_state(recorder_folder, caplog, state, name):
    reading = _reading({"landed_state": state})
    caplog.set_level(logging.ERROR)
    with pytest.raises(GateRefusedError, match=name):
        check_upload_gate(reading, recorder_folder)
    assert any(r.levelno == logging.ERROR and name in r.getMessage() for r in caplog.records)


def test_armed_on_ground_refuses(recorder_folder):
    reading = _reading({"landed_state": C.LANDED_STATE_ON_GROUND, "armed": True})
    assert reading.armed is True
    with pytest.raises(GateRefusedError, match="ARMED"):
        check_upload_gate(reading, recorder_folder)


def test_no_answer_refuses(recorder_folder):
    reading = _reading({"telemetry_hz": 0})  # heartbeats only, no EXTENDED_SYS_STATE
    assert reading.landed_state is None
    with pytest.raises(GateRefusedError, match="no answer"):
        check_upload_gate(reading, recorder_folder)


def test_failing_read_and_stale_reading_refuse(recorder_folder):
    class Broken:
        def wait_for_fc(self, _t):
            raise OSError("link gone")

    reading = read_fc_state(Broken(), wait_s=0.1)
    assert reading.error and "link gone" in reading.error
    with pytest.raises(GateRefusedError, match="could not be read"):
        check_upload_gate(reading, recorder_folder)
    stale = FcStateReading(C.LANDED_STATE_ON_GROUND, C.LANDED_STATE_MAX_AGE_S + 1, False)
    with pytest.raises(GateRefusedError, match="old"):
        check_upload_gate(stale, recorder_folder)


def test_dirty_or_missing_footer_refuses(tmp_path):
    ok = FcStateReading(C.LANDED_STATE_ON_GROUND, 0.1, False)
    folder = tmp_path / "flights" / "open"
    rec = FlightRecorder(folder, flight_id="open", config_hash="x")
    rec.producer("t", RECORD_SCHEMA).record(1, {"a": 1})
    rec.flush()
    try:
        with pytest.raises(GateRefusedError, match="footer"):
            check_upload_gate(ok, folder)  # still recording: no footer yet
    finally:
        rec.close()
    with pytest.raises(GateRefusedError, match="footer"):
        check_upload_gate(ok, tmp_path / "nowhere")
    with pytest.raises(GateRefusedError, match="recorder"):
        check_upload_gate(ok, None)


def test_refusal_sends_nothing(ground, tmp_path, recorder_folder):
    root = tmp_path / "store"
    make_flight_store(root, "f1", 3)
    in_air = FcStateReading(C.LANDED_STATE_IN_AIR, 0.1, False)
    with pytest.raises(GateRefusedError, match="IN_AIR"):
        upload_flight(root, "f1", ground.config(), in_air, recorder_folder)
    assert ground.double.requests == []
    ok = FcStateReading(C.LANDED_STATE_ON_GROUND, 0.1, False)
    s = upload_flight(root, "f1", ground.config(), ok, recorder_folder)
    assert s.accepted == 3
