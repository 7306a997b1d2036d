"""The MAVLink reader survives and counts garbage, truncation, bad CRCs, unknown ids, failing
handlers and unsigned traffic on a signed channel; connection strings are checked (T6)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest
from pymavlink.dialects.v20 import all as mavlink

from terrafix.autopilot.channel import MavlinkChannel
from terrafix.autopilot.errors import LinkClosedError, LinkConfigError
from terrafix.autopilot.signing import SigningKey
from terrafix.autopilot.transport import check_connection_string

PEER = mavlink.MAVLink(None, srcSystem=1, srcComponent=1)


def heartbeat() -> bytes:
    return mavlink.MAVLink_heartbeat_message(1, 3, 0, 0, 4, 3).pack(PEER)


UNKNOWN_ID = 0xFFFFFE
assert UNKNOWN_ID not in mavlink.mavlink_map


def unknown_id_packet() -> bytes:
    """A well-framed MAVLink 2 packet with an id no dialect defines (CRC cannot be checked)."""
    payload = b"\x01\x02\x03"
    header = struct.pack("<BBBBBBBHB", 0xFD, len(payload), 0, 0, 7, 1, 1, UNKNOWN_ID & 0xFFFF,
                         UNKNOWN_ID >> 16)
    return header + payload + b"\x00\x00"


@pytest.fixture
def channel():
    ch = MavlinkChannel("udpin:127.0.0.1:0", system_id=1, component_id=191, name="test")
    ch.start()
    yield ch
    ch.close()


def send(ch: MavlinkChannel, *packets: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in packets:
            s.sendto(p, ch.local_address())


def wait_heartbeats(seen: list, n: int) -> None:
    deadline = time.monotonic() + 5.0
    while len(seen) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(seen) >= n


def test_reader_survives_bad_input_and_counts_it(channel):
    seen: list = []
    channel.subscribe("HEARTBEAT", lambda m, t: seen.append(t))
    calls = []

    def failing(msg, t):
        calls.append(t)
        raise RuntimeError("handler bug")

    channel.subscribe("HEARTBEAT", failing)
    bad_crc = bytearray(heartbeat())
    bad_crc[-1] ^= 0xFF
    send(channel, os.urandom(64), heartbeat()[:7], bad_crc, unknown_id_packet(), b"\xfd" * 3,
         heartbeat())
    wait_heartbeats(seen, 1)
    send(channel, heartbeat())
    wait_heartbeats(seen, 2)
    st = channel.stats()
    assert st.malformed >= 2  # random bytes, the bad CRC (truncations may merge with them)
    assert st.unknown == 1
    assert st.handler_errors == len(calls) == 2  # counted, and the next handler still ran
    assert st.by_type["HEARTBEAT"] == 2


def test_signed_channel_rejects_unsigned_but_allows_the_listed_ids(channel):
    seen: list = []
    channel.subscribe("*", lambda m, t: seen.append(m.get_type()))
    channel.enable_signing(SigningKey(bytes(range(32))), allow_unsigned_ids=frozenset({109}))
    radio = mavlink.MAVLink_radio_status_message(200, 180, 50, 10, 9, 0, 0).pack(PEER)
    send(channel, heartbeat(), radio, heartbeat())
    deadline = time.monotonic() + 5.0
    while channel.stats().rejected_unsigned < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    st = channel.stats()
    assert st.rejected_unsigned == 2
    assert seen == ["RADIO_STATUS"]


def test_close_zeroes_the_key_and_refuses_further_sends():
    ch = MavlinkChannel("udpin:127.0.0.1:0", system_id=1, component_id=191)
    key = SigningKey.generate()
    ch.enable_signing(key)
    ch.start()
    ch.close()
    assert key.is_zeroed and not ch.signing_active
    with pytest.raises(LinkClosedError):
        ch.send(mavlink.MAVLink_heartbeat_message(18, 8, 0, 0, 4, 3))
    assert not [t for t in threading.enumerate() if t.name.startswith("mavlink-")]


@pytest.mark.parametrize("conn,kind", [
    ("udpout:10.0.0.2:14550", "udpout"), ("udpin:127.0.0.1:14550", "udpin"),
    ("udp:127.0.0.1:0", "udpin"), ("tcp:192.168.1.5:5760", "tcp"),
    ("tcpin:localhost:5760", "tcpin"), ("/dev/ttyACM0", "serial"),
    ("/dev/ttyTHS1,921600", "serial"),
])
def test_accepted_connection_strings(conn, kind):
    assert check_connection_string(conn) == kind


@pytest.mark.parametrize("conn,reason", [
    ("udpin:0.0.0.0:14550", "only listen on loopback"),
    ("tcpin:192.168.1.2:5760", "only listen on loopback"),
    ("udpout:host", "expected udpout:<host>:<port>"),
    ("udpout:host:99999", "port 0-65535"),
    ("wsserver:0.0.0.0:80", "not supported"),
    ("/dev/ttyACM0,fast", "not an integer"),
    ("", "empty"),
])
def test_refused_connection_strings(conn, reason):
    with pytest.raises(LinkConfigError, match=reason):
        check_connection_string(conn)


def test_external_listen_can_be_allowed_explicitly():
    assert check_connection_string("udpin:0.0.0.0:14550", allow_external_listen=True) == "udpin"
