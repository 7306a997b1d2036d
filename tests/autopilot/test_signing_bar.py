"""The signing bar: an FC holding a different key makes take-off refuse; tampered inbound
messages are rejected and counted (REQUIREMENTS A2, issue bar "Signing")."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from terrafix.autopilot.ardupilot import ArduPilotLink, ArduPilotLinkConfig, FcCallbacks
from terrafix.autopilot.errors import SigningHandshakeError
from terrafix.measurements import AttitudeSample

from .helpers import solution
from .peers import OTHER_KEY, fc_peer_main


def make_link(port: int, callbacks: FcCallbacks | None = None, timeout: float = 2.0):
    cfg = ArduPilotLinkConfig(connection=f"udpout:127.0.0.1:{port}", signing_timeout_s=timeout)
    return ArduPilotLink(cfg, callbacks)


def test_fc_holding_a_different_key_makes_takeoff_refuse(start_peer):
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0", {"key": OTHER_KEY, "telemetry_hz": 20})
    link = make_link(fc.address[1])
    try:
        link.open()
        with pytest.raises(SigningHandshakeError, match=r"different key.*take-off refused"):
            link.establish_signing()
        assert not link.signing_established
        with pytest.raises(SigningHandshakeError, match="take-off refused"):
            link.start_output()
        link.publish(solution(time.monotonic_ns()))
        stats = link.stats()
        # the FC's traffic, signed with its own key, was rejected and counted by us
        assert stats.channel.rejected_bad_signature > 0
        summary = fc.call("summary")
        # and our unsigned SETUP_SIGNING was refused by the FC, which kept its key
        assert summary["setup_signing_accepted"] == 0
        assert summary["rejected_unsigned"] >= 1
        assert summary["acceptance"]["count"] == 0  # no GPS_INPUT ever reached it
    finally:
        link.close()


def test_fc_that_adopts_the_key_but_signs_with_another_is_refused(start_peer):
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0", {"sign_with": OTHER_KEY,
                                                         "telemetry_hz": 20})
    link = make_link(fc.address[1])
    try:
        link.open()
        with pytest.raises(SigningHandshakeError, match="did not answer a request signed"):
            link.establish_signing()
        assert fc.call("summary")["setup_signing_accepted"] >= 1
        assert link.stats().channel.rejected_bad_signature > 0
    finally:
        link.close()


def test_armed_fc_refuses_signing_setup_and_take_off_is_refused(start_peer):
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0", {"armed": True, "telemetry_hz": 0})
    link = make_link(fc.address[1])
    try:
        link.open()
        with pytest.raises(SigningHandshakeError, match="armed"):
            link.establish_signing()
    finally:
        link.close()


def test_no_flight_controller_means_no_take_off():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a port where nobody answers
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        link = make_link(port, timeout=0.8)
        try:
            link.open()
            with pytest.raises(SigningHandshakeError, match="no HEARTBEAT"):
                link.establish_signing()
        finally:
            link.close()


def test_tampered_inbound_messages_are_rejected_and_counted(start_peer):
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0", {"telemetry_hz": 0})
    rolls: list[float] = []
    lock = threading.Lock()

    def on_attitude(a: AttitudeSample) -> None:
        with lock:
            rolls.append(round(a.roll_rad, 3))

    link = make_link(fc.address[1], FcCallbacks(on_attitude=on_attitude), timeout=4.0)
    try:
        link.open()
        link.establish_signing()
        before = link.stats().channel
        expected = fc.call("tamper")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with lock:
                if 2.0 in rolls:
                    break
            time.sleep(0.02)
        after = link.stats().channel
        with lock:
            got = list(rolls)
        # the two genuine packets (and only them) reached the onboard program
        assert got == [1.0, 2.0]
        assert after.rejected_replay - before.rejected_replay == expected["replay"]
        assert (after.rejected_bad_signature - before.rejected_bad_signature
                == expected["bad_signature"])
        assert after.rejected_unsigned - before.rejected_unsigned == expected["unsigned"]
        assert after.malformed - before.malformed == expected["malformed"]
        assert after.rejected_mavlink1 - before.rejected_mavlink1 == expected["mavlink1"]
        assert link.stats().channel.handler_errors == 0
    finally:
        link.close()


def test_output_without_a_signed_link_is_refused():
    link = make_link(9)  # discard port; nothing is sent before the refusal
    try:
        with pytest.raises(SigningHandshakeError, match="establish_signing"):
            link.start_output()
        assert link.output_stats().sent == 0
    finally:
        link.close()
