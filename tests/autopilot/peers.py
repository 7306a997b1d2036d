"""Peer processes for the link tests: a flight controller, a ground station, an iNav MSP port.

Each runs in its own process (multiprocessing, spawn) and talks to the code under test only
through real bytes on loopback sockets or a pseudo-terminal; the test steers it over a Pipe.
Ports are chosen by the OS (bind to port 0) and reported back, so parallel test workers never
collide.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import tty
from typing import Any

from pymavlink.dialects.v20 import all as mavlink

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import HeartbeatSpec, MavlinkChannel
from terrafix.autopilot.fc_emulation import FcEmulator
from terrafix.autopilot.msp import MspV2Parser
from terrafix.autopilot.signing import signing_timestamp_now
from terrafix.autopilot.transport import FdTransport

OTHER_KEY = bytes([0xA5] * 32)


# --- flight controller -------------------------------------------------------------------------
def _telemetry(fc: FcEmulator, k: int, options: dict[str, Any]) -> None:
    ms = fc.boot_ms()
    fc.send(mavlink.MAVLink_attitude_message(ms, 0.0, 0.05, 1.0, 0.0, 0.0, 0.0))
    fc.send(mavlink.MAVLink_raw_imu_message(fc.boot_us(), 0, 0, -1000, 0, 0, 0, 0, 0, 0, 0, 0))
    if k % 10 == 0:
        fc.send(mavlink.MAVLink_gps_raw_int_message(
            ms * 1000, 3, 504500000, 305200000, 180000, 90, 150, 1500, 9000, 12, 180000, 2500,
            4000, 300, 0, 0))
        fc.send(mavlink.MAVLink_scaled_pressure_message(ms, 992.0, 0.0, 2000, 0))
    if k % 25 == 0:
        fc.send(mavlink.MAVLink_extended_sys_state_message(0, options.get("landed_state", 1)))
    if k % 25 and options.get("unsigned_landed_state") is not None:
        # reports injected by someone on the link without the key (the FC's ids, unsigned),
        # between each of the FC's own
        fc.channel.send_raw(mavlink.MAVLink_extended_sys_state_message(
            0, options["unsigned_landed_state"]).pack(mavlink.MAVLink(None, 1, 1)))


def _tampered_sequence(fc: FcEmulator) -> dict[str, int]:
    """Genuine and tampered ATTITUDE packets, in this order, on the same wire.

    Genuine markers have roll 1.0 and 2.0; every tampered packet has roll >= 100.
    """
    ch = fc.channel

    def att(roll: float) -> Any:
        return mavlink.MAVLink_attitude_message(fc.boot_ms(), roll, 0.0, 0.5, 0.0, 0.0, 0.0)

    genuine1 = ch.pack(att(1.0))
    ch.send_raw(genuine1)
    ch.send_raw(genuine1)  # replay
    # payload altered and CRC recomputed (an attacker who knows CRC_EXTRA): bad signature
    forged = bytearray(ch.pack(att(101.0)))
    plen = forged[1]
    forged[14:18] = struct.pack("<f", 102.0)
    crc = mavlink.x25crc(forged[1:10 + plen])
    crc.accumulate(struct.pack("B", mavlink.MAVLink_attitude_message.crc_extra))
    forged[10 + plen:12 + plen] = struct.pack("<H", crc.crc)
    ch.send_raw(bytes(forged))
    # unsigned
    ch.send_raw(att(103.0).pack(mavlink.MAVLink(None, 1, 1)))
    # signed with another key
    other = mavlink.MAVLink(None, 1, 1)
    other.signing.secret_key = OTHER_KEY
    other.signing.sign_outgoing = True
    other.signing.timestamp = signing_timestamp_now() + 1000
    ch.send_raw(att(104.0).pack(other))
    # a bit flipped on the wire without fixing the CRC: malformed
    flipped = bytearray(ch.pack(att(105.0)))
    flipped[15] ^= 0x40
    ch.send_raw(bytes(flipped))
    # MAVLink 1 (cannot be signed)
    ch.send_raw(att(106.0).pack(mavlink.MAVLink(None, 1, 1), force_mavlink1=True))
    ch.send_raw(ch.pack(att(2.0)))
    return {"replay": 1, "bad_signature": 2, "unsigned": 1, "malformed": 1, "mavlink1": 1}


def fc_peer_main(ctrl, listen: str, options: dict[str, Any]) -> None:
    """An FcEmulator with telemetry at `telemetry_hz` (0 = none) until told to stop."""
    slave_fd = None
    if listen == "pty":
        master, slave_fd = os.openpty()
        tty.setraw(slave_fd)
        transport: Any = FdTransport(master, "pty")
        address: Any = os.ttyname(slave_fd)
    else:
        transport = listen
    fc = FcEmulator(transport, key=options.get("key"), armed=options.get("armed", False),
                    sign_with=options.get("sign_with"), params=options.get("params"))
    fc.start()
    if listen != "pty":
        address = fc.local_address()
    ctrl.send(("ready", address))
    hz = options.get("telemetry_hz", 50)
    period = 1.0 / hz if hz else 0.2
    k = 0
    next_t = time.monotonic()
    try:
        while True:
            timeout = max(0.0, next_t - time.monotonic())
            if ctrl.poll(timeout):
                cmd, *args = ctrl.recv()
                if cmd == "stop":
                    break
                ctrl.send(_fc_command(fc, cmd, args, options))
                continue
            next_t += period
            if hz:
                _telemetry(fc, k, options)
                k += 1
    finally:
        fc.close()
        if slave_fd is not None:
            os.close(slave_fd)


def _fc_command(fc: FcEmulator, cmd: str, args: list[Any], options: dict[str, Any]) -> Any:
    if cmd == "summary":
        st = fc.stats()
        return {
            "acceptance": fc.acceptance.summary(),
            "has_fix": fc.acceptance.has_fix(),
            "healthy": fc.acceptance.healthy(),
            "ekf_source_sets": list(fc.ekf_source_sets),
            "message_intervals_us": dict(fc.message_intervals_us),
            "params": dict(fc.params),
            "param_sets": list(fc.param_sets),
            "param_reads": list(fc.param_reads),
            "setup_signing_accepted": fc.setup_signing_accepted,
            "setup_signing_refused_armed": fc.setup_signing_refused_armed,
            "signing_disabled_by_peer": fc.signing_disabled_by_peer,
            "signing_active": fc.signing_active,
            "rejected_unsigned": st.rejected_unsigned,
            "rejected_bad_signature": st.rejected_bad_signature,
            "by_type": st.by_type,
        }
    if cmd == "records":
        return list(fc.acceptance.records)
    if cmd == "tamper":
        return _tampered_sequence(fc)
    if cmd == "landed_state":
        options["landed_state"] = args[0]
        return True
    if cmd == "gps2_raw":
        fc.send(mavlink.MAVLink_gps2_raw_message(
            fc.boot_us(), 3, 504600000, 305300000, 180000, 90, 150, 1500, 9000, 12, 0, 0))
        return True
    if cmd == "statustext":
        fc.send(mavlink.MAVLink_statustext_message(args[0], args[1].encode(), 0, 0))
        return True
    if cmd == "set_armed":
        fc.set_armed(args[0])
        return True
    raise ValueError(f"unknown FC peer command {cmd!r}")


# --- ground station ------------------------------------------------------------------------------
class _Collector:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.nvf: list[tuple[float, str, float]] = []
        self.texts: list[tuple[float, int, str]] = []
        self.acks: list[tuple[float, int, int]] = []
        self.any = threading.Event()

    def on_any(self, msg: Any, _arrival: int) -> None:
        now = time.monotonic()
        with self.cond:
            t = msg.get_type()
            if t == "NAMED_VALUE_FLOAT":
                name = msg.name if isinstance(msg.name, str) else msg.name.decode()
                self.nvf.append((now, name, float(msg.value)))
            elif t == "STATUSTEXT":
                text = msg.text if isinstance(msg.text, str) else msg.text.decode()
                self.texts.append((now, int(msg.severity), text))
            elif t == "COMMAND_ACK":
                self.acks.append((now, int(msg.command), int(msg.result)))
            self.cond.notify_all()
        self.any.set()

    def wait_text(self, prefixes: tuple[str, ...], after: float, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, sev, text in self.texts:
                    if t >= after and text.startswith(prefixes):
                        return t, sev, text
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.cond.wait(remaining)


def gcs_peer_main(ctrl, listen: str, options: dict[str, Any]) -> None:
    """A ground station: collects status, sends RELOC hints and times the acknowledgements."""
    ch = MavlinkChannel(listen, system_id=255, component_id=mavlink.MAV_COMP_ID_MISSIONPLANNER,
                        heartbeat=HeartbeatSpec(C.MAV_TYPE_GCS, C.AUTOPILOT_INVALID),
                        name="gcs-peer")
    col = _Collector()
    ch.subscribe("*", col.on_any)
    ch.start()
    ctrl.send(("ready", ch.local_address()))
    try:
        while True:
            cmd, *args = ctrl.recv()
            if cmd == "stop":
                break
            if not col.any.wait(5.0):
                ctrl.send(("error", "nothing received from the companion"))
                continue
            if cmd == "reloc_text":
                t0 = time.monotonic()
                ch.send(mavlink.MAVLink_statustext_message(C.SEVERITY_NOTICE, args[0].encode(),
                                                           0, 0))
                got = col.wait_text(("RELOC ACK", "RELOC NACK"), t0, 3.0)
                ctrl.send(None if got is None else (got[0] - t0, got[2]))
            elif cmd == "reloc_cmd":
                target, radius, lat, lon = args
                t0 = time.monotonic()
                ack = ch.command_long(target[0], target[1], C.CMD_RELOC_HINT,
                                      (radius, 0, 0, 0, lat, lon, 0), timeout_s=2.0, retries=1)
                got = col.wait_text(("RELOC ACK", "RELOC NACK"), t0, 3.0)
                ctrl.send((time.monotonic() - t0 if ack is not None else None,
                           None if ack is None else int(ack.result),
                           None if got is None else got[2]))
            elif cmd == "collected":
                with col.lock:
                    ctrl.send({"nvf": list(col.nvf), "texts": list(col.texts)})
            else:
                ctrl.send(("error", f"unknown command {cmd}"))
    finally:
        ch.close()


# --- iNav MSP port ------------------------------------------------------------------------------
def msp_peer_main(ctrl, host: str, options: dict[str, Any]) -> None:
    """A TCP MSP port (like iNav SITL's): records every frame with its arrival time."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((host, 0))
    srv.listen(1)
    ctrl.send(("ready", srv.getsockname()))
    srv.settimeout(10.0)
    conn, _ = srv.accept()
    conn.settimeout(0.05)
    parser = MspV2Parser()
    frames: list[tuple[float, int, int, bytes]] = []
    try:
        while True:
            if ctrl.poll(0):
                cmd, *_ = ctrl.recv()
                if cmd == "stop":
                    break
                if cmd == "frames":
                    ctrl.send({"frames": list(frames), "crc_errors": parser.crc_errors,
                               "garbage": parser.garbage_bytes})
                continue
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            if not data:
                break
            now = time.monotonic()
            for f in parser.feed(data):
                frames.append((now, f.direction, f.function, f.payload))
    finally:
        conn.close()
        srv.close()
