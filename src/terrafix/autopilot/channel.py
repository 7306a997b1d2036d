"""One MAVLink 2 connection: transport, framing, signing policy, reader thread, dispatch.

Why this shape: the companion talks MAVLink on two kinds of link, the signed link to the flight
controller and unsigned side channels (a ground-station radio, iNav's telemetry); the simulated FC
speaks the same protocol from the other end. All of them need the same careful core:

- one reader thread per connection that never dies on bad input: truncated frames, bad CRCs,
  unknown ids, bad signatures and exceptions in handlers are counted (ChannelStats), never raised;
- inbound signature verification done by us before anything reaches a handler (signing.py says
  why not pymavlink's), with every rejected packet counted by reason;
- thread-safe sends (one lock around pymavlink's encoder, whose sequence number and signing
  timestamp are shared state), outbound signing by pymavlink with the same key object;
- COMMAND_LONG with acknowledgement and retries, since UDP and radios lose packets.

Handlers run on the reader thread and must be quick (hand work to a queue). They receive the
pymavlink message and its arrival time on the companion's monotonic clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from terrafix.autopilot import constants as C
from terrafix.autopilot.errors import LinkClosedError, LinkConfigError
from terrafix.autopilot.scheduler import FixedRateTicker
from terrafix.autopilot.signing import (
    SignatureVerdict,
    SignatureVerifier,
    SigningKey,
    signing_timestamp_now,
)
from terrafix.autopilot.transport import ByteTransport, open_transport

log = logging.getLogger(__name__)
mavlink = C.DIALECT

MessageHandler = Callable[[C.MavMessage, int], None]
"""handler(pymavlink message, arrival monotonic ns)."""

_ANY = "*"


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Counters of one channel since it was opened (a snapshot)."""

    received: int
    sent: int
    malformed: int
    unknown: int
    rejected_unsigned: int
    rejected_bad_signature: int
    rejected_replay: int
    rejected_stale_stream: int
    rejected_mavlink1: int
    handler_errors: int
    transport_errors: int
    signed_accepted: int
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return (self.rejected_unsigned + self.rejected_bad_signature + self.rejected_replay
                + self.rejected_stale_stream + self.rejected_mavlink1)


@dataclass(frozen=True, slots=True)
class HeartbeatSpec:
    """What this end announces in its 1 Hz HEARTBEAT."""

    mav_type: int
    autopilot: int
    base_mode: int = 0
    custom_mode: int = 0
    system_status: int = C.MAV_STATE_ACTIVE


class _Counters:
    """Mutable counters behind the channel's lock."""

    def __init__(self) -> None:
        self.values: dict[str, int] = defaultdict(int)
        self.by_type: dict[str, int] = defaultdict(int)

    def snapshot(self) -> ChannelStats:
        v = self.values
        return ChannelStats(
            received=v["received"], sent=v["sent"], malformed=v["malformed"],
            unknown=v["unknown"], rejected_unsigned=v["rejected_unsigned"],
            rejected_bad_signature=v["rejected_bad_signature"],
            rejected_replay=v["rejected_replay"], rejected_stale_stream=v["rejected_stale_stream"],
            rejected_mavlink1=v["rejected_mavlink1"], handler_errors=v["handler_errors"],
            transport_errors=v["transport_errors"], signed_accepted=v["signed_accepted"],
            by_type=dict(self.by_type),
        )


_VERDICT_COUNTER = {
    SignatureVerdict.UNSIGNED: "rejected_unsigned",
    SignatureVerdict.BAD_SIGNATURE: "rejected_bad_signature",
    SignatureVerdict.REPLAY: "rejected_replay",
    SignatureVerdict.STALE_STREAM: "rejected_stale_stream",
    SignatureVerdict.NOT_MAVLINK2: "rejected_mavlink1",
}


class MavlinkChannel:
    """A MAVLink 2 connection with a reader thread, optional signing and message dispatch.

    Thread model: `start()` launches the reader thread (and the heartbeat thread when a
    HeartbeatSpec is given); `send`, `command_long` and `subscribe` may be called from any thread;
    handlers run on the reader thread. `close()` stops both threads, closes the port and zeroes
    the signing key.
    """

    def __init__(
        self,
        connection: str | ByteTransport,
        *,
        system_id: int,
        component_id: int,
        heartbeat: HeartbeatSpec | None = None,
        baud: int = 115200,
        allow_external_listen: bool = False,
        name: str = "mavlink",
    ) -> None:
        for label, v in (("system_id", system_id), ("component_id", component_id)):
            if not 1 <= v <= 255:
                raise LinkConfigError(f"{label} must be within 1..255, got {v}")
        self.name = name
        self._transport = open_transport(connection, baud=baud,
                                         allow_external_listen=allow_external_listen)
        self._encoder = mavlink.MAVLink(None, srcSystem=system_id,
                                        srcComponent=component_id)
        self._decoder = mavlink.MAVLink(None)
        self._decoder.robust_parsing = True
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._handlers: dict[str, list[MessageHandler]] = defaultdict(list)
        self._counters = _Counters()
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False
        self._key: SigningKey | None = None
        self._verifier: SignatureVerifier | None = None
        self._require_signed = False
        self._unsigned_allowed: frozenset[int] = frozenset()
        self._acks: dict[int, list[object]] = defaultdict(list)
        self._ack_cond = threading.Condition(self._state_lock)
        self.subscribe("COMMAND_ACK", self._on_command_ack)

    # --- identity and state ------------------------------------------------------------------
    @property
    def system_id(self) -> int:
        return self._encoder.srcSystem

    @property
    def component_id(self) -> int:
        return self._encoder.srcComponent

    @property
    def description(self) -> str:
        return self._transport.description

    def local_address(self) -> tuple[str, int] | None:
        """Bound (host, port) of a socket transport (useful with port 0), else None."""
        return self._transport.local_address()

    @property
    def signing_active(self) -> bool:
        return self._key is not None

    def stats(self) -> ChannelStats:
        with self._state_lock:
            return self._counters.snapshot()

    def _count(self, key: str, n: int = 1) -> None:
        with self._state_lock:
            self._counters.values[key] += n

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._closed:
            raise LinkClosedError(f"channel {self.name} on {self.description} is closed")
        if self._started:
            return
        self._started = True
        reader = threading.Thread(target=self._read_loop, name=f"{self.name}-reader", daemon=True)
        self._threads.append(reader)
        reader.start()
        if self._heartbeat is not None:
            hb = threading.Thread(target=self._heartbeat_loop, name=f"{self.name}-heartbeat",
                                  daemon=True)
            self._threads.append(hb)
            hb.start()

    def close(self) -> None:
        """Stop the threads, close the port, zero the signing key. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2.0)
        self._transport.close()
        self.disable_signing()
        with self._ack_cond:
            self._ack_cond.notify_all()

    def __enter__(self) -> MavlinkChannel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- signing ------------------------------------------------------------------------------
    def enable_signing(
        self,
        key: SigningKey,
        *,
        sign_outgoing: bool = True,
        require_signed_inbound: bool = True,
        allow_unsigned_ids: frozenset[int] = frozenset(),
        link_id: int = C.SIGNING_OUTBOUND_LINK_ID,
        initial_timestamp: int | None = None,
    ) -> None:
        """Sign outbound packets with `key` and (by default) accept only packets signed with it."""
        if key.is_zeroed:
            raise LinkConfigError("refusing to enable signing with a zeroed key")
        ts = signing_timestamp_now() if initial_timestamp is None else initial_timestamp
        with self._send_lock, self._state_lock:
            self._key = key
            self._verifier = SignatureVerifier(key)
            self._require_signed = require_signed_inbound
            self._unsigned_allowed = frozenset(allow_unsigned_ids)
            sig = self._encoder.signing
            sig.secret_key = key.material  # the live bytearray: zeroing the key zeroes this too
            sig.sign_outgoing = sign_outgoing
            sig.link_id = link_id
            sig.timestamp = max(sig.timestamp, ts)

    def disable_signing(self) -> None:
        """Stop signing and checking signatures; zero the key held by this channel."""
        with self._send_lock, self._state_lock:
            key, self._key = self._key, None
            self._verifier = None
            self._require_signed = False
            sig = self._encoder.signing
            sig.secret_key = None
            sig.sign_outgoing = False
            sig.timestamp = 0
        if key is not None:
            key.zero()

    # --- sending ------------------------------------------------------------------------------
    def send(self, msg: C.MavMessage, *, sign: bool = True) -> None:
        """Encode and write one message (signed when signing is on, unless sign=False)."""
        self._write(msg, sign=sign, write=True)

    def pack(self, msg: C.MavMessage, *, sign: bool = True) -> bytes:
        """Encode one message exactly as `send` would, without writing it (sequence and signing
        timestamp advance). The simulated FC uses it to build packets it then tampers with."""
        return self._write(msg, sign=sign, write=False)

    def _write(self, msg: C.MavMessage, *, sign: bool, write: bool) -> bytes:
        if self._closed:
            raise LinkClosedError(f"channel {self.name} on {self.description} is closed")
        with self._send_lock:
            sig = self._encoder.signing
            restore = sig.sign_outgoing
            if not sign:
                sig.sign_outgoing = False
            elif sig.sign_outgoing:
                # Signing timestamps must track real time (not only +1 per packet) so that a
                # receiver restarted later does not see our stream as stale.
                sig.timestamp = max(sig.timestamp, signing_timestamp_now())
            try:
                buf = msg.pack(self._encoder)
                self._encoder.seq = (self._encoder.seq + 1) % 256
                if write:
                    self._transport.write(buf)
            except OSError:
                self._count("transport_errors")
                raise
            finally:
                sig.sign_outgoing = restore
        if write:
            self._count("sent")
        return bytes(buf)

    def send_raw(self, data: bytes) -> None:
        """Write already-framed bytes (the simulated FC uses it to inject tampered packets)."""
        with self._send_lock:
            self._transport.write(data)

    # --- commands -----------------------------------------------------------------------------
    def _on_command_ack(self, msg: C.MavMessage, _arrival_ns: int) -> None:
        with self._ack_cond:
            self._acks[msg.command].append(msg)
            self._ack_cond.notify_all()

    def command_long(
        self,
        target_system: int,
        target_component: int,
        command: int,
        params: tuple[float, ...] = (),
        *,
        timeout_s: float = 1.0,
        retries: int = 3,
    ) -> C.MavMessage | None:
        """Send COMMAND_LONG and wait for its COMMAND_ACK; resend (confirmation+1) on timeout.

        Returns the ack message, or None when every try timed out.
        """
        p = [float(x) for x in params] + [0.0] * (7 - len(params))
        if len(p) != 7:
            raise LinkConfigError(f"COMMAND_LONG takes at most 7 params, got {len(params)}")
        with self._ack_cond:
            self._acks.pop(command, None)
        for confirmation in range(max(1, retries)):
            msg = mavlink.MAVLink_command_long_message(
                target_system, target_component, command, confirmation, *p
            )
            self.send(msg)
            deadline = time.monotonic() + timeout_s
            with self._ack_cond:
                while not self._closed:
                    for ack in self._acks.get(command, []):
                        if self._ack_is_for_us(ack):
                            self._acks.pop(command, None)
                            return ack
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ack_cond.wait(remaining)
            if self._closed:
                return None
        return None

    def _ack_is_for_us(self, ack: object) -> bool:
        ts = getattr(ack, "target_system", 0)
        tc = getattr(ack, "target_component", 0)
        return ts in (0, self.system_id) and tc in (0, self.component_id)

    # --- receiving ----------------------------------------------------------------------------
    def subscribe(self, msg_type: str, handler: MessageHandler) -> None:
        """Call handler(msg, arrival_ns) for each accepted message of this type ('*' = all)."""
        with self._state_lock:
            self._handlers[msg_type].append(handler)

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._transport.wait_readable(0.1):
                    continue
                data = self._transport.read()
            except OSError as e:
                self._count("transport_errors")
                log.warning("%s: transport error on %s: %s", self.name, self.description, e)
                self._stop.wait(0.2)
                continue
            if not data:
                self._stop.wait(0.01)  # a closed stream stays readable: do not spin
                continue
            self.feed(data, time.monotonic_ns(), whole_packets=self._transport.datagram)

    def _reset_parser(self) -> None:
        self._decoder.buf = bytearray()
        self._decoder.buf_index = 0
        self._decoder.expected_length = mavlink.HEADER_LEN_V1 + 2

    def feed(self, data: bytes, arrival_ns: int, *, whole_packets: bool = False) -> None:
        """Parse bytes as received at arrival_ns and dispatch what is accepted (reader thread).

        whole_packets: the bytes are one datagram, so a partial packet left at its end is
        garbage (dropped and counted) rather than the start of the next datagram's packet;
        otherwise one junk datagram could swallow the next genuine one.
        """
        try:
            msgs = self._decoder.parse_buffer(data) or []
        except Exception:  # pymavlink raises assorted errors on garbage; none may kill the reader
            self._count("malformed")
            self._reset_parser()
            return
        if whole_packets and self._decoder.buf_len() > 0:
            self._count("malformed")
            self._reset_parser()
        for msg in msgs:
            self._accept(msg, arrival_ns)

    def _accept(self, msg: C.MavMessage, arrival_ns: int) -> None:
        mtype = msg.get_type()
        if mtype == "BAD_DATA":
            self._count("malformed")
            return
        raw = msg.get_msgbuf()
        with self._state_lock:
            verifier, require = self._verifier, self._require_signed
            allowed = self._unsigned_allowed
        if verifier is not None:
            verdict = verifier.check(raw)
            if verdict is SignatureVerdict.ACCEPTED:
                self._count("signed_accepted")
            elif require and not (verdict is SignatureVerdict.UNSIGNED
                                  and msg.get_msgId() in allowed):
                self._count(_VERDICT_COUNTER[verdict])
                return
        if mtype.startswith("UNKNOWN"):
            self._count("unknown")
            return
        with self._state_lock:
            self._counters.values["received"] += 1
            self._counters.by_type[mtype] += 1
            handlers = list(self._handlers.get(mtype, ())) + list(self._handlers.get(_ANY, ()))
        for handler in handlers:
            try:
                handler(msg, arrival_ns)
            except Exception:
                self._count("handler_errors")
                log.exception("%s: handler for %s failed", self.name, mtype)

    def _heartbeat_loop(self) -> None:
        assert self._heartbeat is not None
        ticker = FixedRateTicker(1.0)
        while True:
            hb = self._heartbeat
            try:
                self.send(mavlink.MAVLink_heartbeat_message(
                    hb.mav_type, hb.autopilot, hb.base_mode, hb.custom_mode, hb.system_status, 3
                ))
            except (OSError, LinkClosedError):
                if self._closed:
                    return
            if ticker.wait(self._stop) is None:
                return

    def set_heartbeat(self, heartbeat: HeartbeatSpec) -> None:
        """Change what the 1 Hz heartbeat announces (e.g. the simulated FC arming)."""
        self._heartbeat = heartbeat
