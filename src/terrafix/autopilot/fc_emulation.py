"""The flight-controller end of the link, behaving as ArduPilot does where it matters to us.

Why: the companion's behaviour can only be trusted if it is exercised against a peer that enforces
what a real ArduPilot enforces, byte for byte over a real transport: the signing rules
(SETUP_SIGNING accepted only while disarmed and, once a key is held, only when signed with it;
unsigned traffic then dropped except RADIO_STATUS; everything sent signed) and the acceptance of
GPS_INPUT (decoded only with fix_type >= 3 and time_week > 0; unhealthy when the average gap
exceeds ~215 ms or two consecutive gaps exceed ~245 ms; no fix after ~4 s of silence). The tests'
peer processes use it, and so does the simulated FC of `terrafix sim fc`, which adds the
dataset's telemetry through `send`.

Parameters: a table answered as ArduPilot answers it (PARAM_REQUEST_READ by name or index ->
PARAM_VALUE; PARAM_SET of a known name -> stored and echoed in PARAM_VALUE; an unknown name ->
silence). The default table is ArduPilot's defaults for the parameters the GNSS switch depends
on, with the topology of docs/ardupilot/terrafix.parm applied (an FC configured as documented);
`ARDUPILOT_DEFAULT_PARAMS` is the unconfigured FC.

The gap rule is our emulation of ArduPilot's GPS health check from its documented thresholds
(REQUIREMENTS A1): mean of the last ARDUPILOT_AVERAGE_WINDOW gaps, and a count of consecutive
late gaps reset by any on-time one.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import ChannelStats, HeartbeatSpec, MavlinkChannel
from terrafix.autopilot.signing import SigningKey
from terrafix.autopilot.transport import ByteTransport

mavlink = C.DIALECT

ARDUPILOT_DEFAULT_PARAMS: dict[str, float] = {
    "AHRS_EKF_TYPE": 3.0,
    "EK3_AFFINITY": 0.0,
    "EK3_SRC1_POSXY": 3.0,
    "EK3_SRC1_VELXY": 3.0,
    "EK3_SRC1_POSZ": 1.0,
    "EK3_SRC2_POSXY": 0.0,
    "EK3_SRC2_VELXY": 0.0,
    "EK3_SRC2_POSZ": 1.0,
    "EK3_SRC3_POSXY": 0.0,
    "GPS1_TYPE": 1.0,
    "GPS2_TYPE": 0.0,
    "GPS1_DELAY_MS": 0.0,
    "GPS2_DELAY_MS": 0.0,
    "GPS_AUTO_SWITCH": 1.0,
    "GPS_PRIMARY": 0.0,
}
"""ArduPilot 4.7's defaults for the parameters the GNSS switch depends on (AP_GPS.cpp,
AP_NavEKF_Source.cpp)."""
TERRAFIX_TOPOLOGY_PARAMS: dict[str, float] = {
    "GPS2_TYPE": float(C.GPS_TYPE_MAV),
    "GPS_AUTO_SWITCH": float(C.GPS_AUTO_SWITCH_PRIMARY_IF_3D),
    "GPS_PRIMARY": 0.0,
}
"""What docs/ardupilot/terrafix.parm changes among them (a test keeps the two in step)."""


EMULATED_LOOP_RATE_HZ = 50.0
"""ArduPlane's default main loop (SCHED_LOOP_RATE): it caps the stream rates it accepts."""


@dataclass(frozen=True, slots=True)
class GpsInputRecord:
    """One GPS_INPUT as the FC saw it. decoded: position/time taken (fix >= 3, week > 0);
    healthy: the gap rule held when it arrived."""

    arrival_ns: int
    gps_id: int
    fix_type: int
    time_week: int
    time_week_ms: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    h_acc_m: float
    v_acc_m: float
    speed_acc_mps: float
    hdop: float
    vdop: float
    satellites: int
    ignore_flags: int
    yaw_cdeg: int
    decoded: bool
    healthy: bool


class GpsInputAcceptance:
    """ArduPilot's view of a MAV GPS fed by GPS_INPUT. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gaps: deque[float] = deque(maxlen=C.ARDUPILOT_AVERAGE_WINDOW)
        self._all_gaps_s: list[float] = []
        self._late_in_a_row = 0
        self._last_arrival_ns: int | None = None
        self._last_decoded_ns: int | None = None
        self._unhealthy_count = 0
        self.records: list[GpsInputRecord] = []

    def _healthy_locked(self) -> bool:
        if not self._gaps:
            return False
        avg = sum(self._gaps) / len(self._gaps)
        return (avg < C.ARDUPILOT_MAX_AVERAGE_GAP_S
                and self._late_in_a_row < C.ARDUPILOT_MAX_CONSECUTIVE_LATE)

    def observe(self, msg: C.MavMessage, arrival_ns: int) -> GpsInputRecord:
        with self._lock:
            if self._last_arrival_ns is not None:
                gap = (arrival_ns - self._last_arrival_ns) / 1e9
                self._gaps.append(gap)
                self._all_gaps_s.append(gap)
                self._late_in_a_row = self._late_in_a_row + 1 if gap > C.ARDUPILOT_MAX_GAP_S else 0
            self._last_arrival_ns = arrival_ns
            healthy = self._healthy_locked()
            if not healthy and self._gaps:
                self._unhealthy_count += 1
            decoded = (msg.fix_type >= C.ARDUPILOT_MIN_DECODED_FIX_TYPE and msg.time_week > 0)
            if decoded:
                self._last_decoded_ns = arrival_ns
            rec = GpsInputRecord(
                arrival_ns, int(msg.gps_id), int(msg.fix_type), int(msg.time_week),
                int(msg.time_week_ms), msg.lat / 1e7, msg.lon / 1e7, float(msg.alt),
                float(msg.horiz_accuracy), float(msg.vert_accuracy), float(msg.speed_accuracy),
                float(msg.hdop), float(msg.vdop), int(msg.satellites_visible),
                int(msg.ignore_flags), int(msg.yaw), decoded, healthy,
            )
            self.records.append(rec)
            return rec

    def healthy(self) -> bool:
        with self._lock:
            return self._healthy_locked()

    def has_fix(self, now_ns: int | None = None) -> bool:
        """A decoded 3D fix within the no-fix timeout, on a healthy stream."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            last = self._last_decoded_ns
            return (last is not None and (now - last) <= C.ARDUPILOT_NO_FIX_TIMEOUT_S * 1e9
                    and self._healthy_locked())

    def summary(self) -> dict[str, float]:
        """Rate, gaps and jitter of everything received so far (for benches and logs)."""
        with self._lock:
            gaps = list(self._all_gaps_s)
            n = len(self.records)
            decoded = sum(r.decoded for r in self.records)
            unhealthy = self._unhealthy_count
        if not gaps:
            return {"count": float(n), "decoded": float(decoded), "rate_hz": math.nan,
                    "max_gap_ms": math.nan, "mean_gap_ms": math.nan, "jitter_ms": math.nan,
                    "unhealthy_arrivals": float(unhealthy)}
        mean = sum(gaps) / len(gaps)
        return {
            "count": float(n),
            "decoded": float(decoded),
            "rate_hz": 1.0 / mean,
            "max_gap_ms": max(gaps) * 1e3,
            "mean_gap_ms": mean * 1e3,
            "jitter_ms": (statistics.pstdev(gaps) * 1e3) if len(gaps) > 1 else 0.0,
            "unhealthy_arrivals": float(unhealthy),
        }


class FcEmulator:
    """An ArduPilot-like FC endpoint: heartbeat, signing rules, commands, GPS_INPUT acceptance.

    key: a key the FC already holds (signing active from the start, as after an earlier flight).
    sign_with: a misbehaving FC that adopts SETUP_SIGNING but then signs and verifies with this
    other key instead. Thread model: the channel's reader thread runs the handlers; `send` may be
    called from any thread.
    """

    def __init__(
        self,
        connection: str | ByteTransport,
        *,
        system_id: int = C.DEFAULT_SYSTEM_ID,
        component_id: int = C.MAV_COMP_ID_AUTOPILOT1,
        key: bytes | None = None,
        armed: bool = False,
        sign_with: bytes | None = None,
        allow_external_listen: bool = False,
        params: dict[str, float] | None = None,
    ) -> None:
        self._armed = armed
        self.params: dict[str, float] = dict(
            params if params is not None
            else {**ARDUPILOT_DEFAULT_PARAMS, **TERRAFIX_TOPOLOGY_PARAMS})
        self.param_sets: list[tuple[str, float]] = []
        self.param_reads: list[str] = []
        self._sign_with = sign_with
        self._channel = MavlinkChannel(
            connection, system_id=system_id, component_id=component_id,
            heartbeat=self._heartbeat_spec(), allow_external_listen=allow_external_listen,
            name="fc-emulator",
        )
        self.acceptance = GpsInputAcceptance()
        self.ekf_source_sets: list[int] = []
        self.message_intervals_us: dict[int, float] = {}
        self.setup_signing_accepted = 0
        self.setup_signing_refused_armed = 0
        self.signing_disabled_by_peer = 0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        if key is not None:
            self._enable(key, None)
        self._channel.subscribe("SETUP_SIGNING", self._on_setup_signing)
        self._channel.subscribe("COMMAND_LONG", self._on_command_long)
        self._channel.subscribe("GPS_INPUT", self._on_gps_input)
        self._channel.subscribe("PARAM_REQUEST_READ", self._on_param_request_read)
        self._channel.subscribe("PARAM_SET", self._on_param_set)

    def _heartbeat_spec(self) -> HeartbeatSpec:
        mode = mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
        if self._armed:
            mode |= C.MAV_MODE_FLAG_SAFETY_ARMED
        return HeartbeatSpec(mavlink.MAV_TYPE_FIXED_WING, mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA,
                             base_mode=mode)

    def _enable(self, key: bytes, initial_timestamp: int | None) -> None:
        self._channel.enable_signing(
            SigningKey(key), require_signed_inbound=True,
            allow_unsigned_ids=C.SIGNING_ALWAYS_UNSIGNED_MSG_IDS,
            initial_timestamp=initial_timestamp,
        )

    # --- lifecycle and sending --------------------------------------------------------------
    @property
    def channel(self) -> MavlinkChannel:
        return self._channel

    def start(self) -> None:
        self._channel.start()

    def close(self) -> None:
        self._channel.close()

    def local_address(self) -> tuple[str, int] | None:
        return self._channel.local_address()

    def boot_ms(self) -> int:
        """Milliseconds since this FC 'booted' (for *_boot_ms fields)."""
        return int((time.monotonic() - self._t0) * 1000)

    def boot_us(self) -> int:
        """Microseconds since this FC 'booted' (for time_usec fields)."""
        return int((time.monotonic() - self._t0) * 1e6)

    def send(self, msg: C.MavMessage) -> None:
        self._channel.send(msg)

    def on(self, msg_type: str, handler: Callable[[C.MavMessage, int], None]) -> None:
        """Extra handling of an accepted inbound message type (the simulated FC's hooks)."""
        self._channel.subscribe(msg_type, handler)

    @property
    def armed(self) -> bool:
        return self._armed

    def set_armed(self, armed: bool) -> None:
        self._armed = armed
        self._channel.set_heartbeat(self._heartbeat_spec())

    @property
    def signing_active(self) -> bool:
        return self._channel.signing_active

    def stats(self) -> ChannelStats:
        return self._channel.stats()

    # --- handlers (reader thread) -----------------------------------------------------------
    def _addressed_to_us(self, target_system: int, target_component: int) -> bool:
        return (target_system in (0, self._channel.system_id)
                and target_component in (0, self._channel.component_id))

    def _on_setup_signing(self, msg: C.MavMessage, _arrival_ns: int) -> None:
        if not self._addressed_to_us(msg.target_system, msg.target_component):
            return
        if self._armed:
            with self._lock:
                self.setup_signing_refused_armed += 1
            return
        key = bytes(msg.secret_key)
        if not any(key) and msg.initial_timestamp == 0:
            self._channel.disable_signing()
            with self._lock:
                self.signing_disabled_by_peer += 1
            return
        self._enable(self._sign_with if self._sign_with is not None else key,
                     int(msg.initial_timestamp))
        with self._lock:
            self.setup_signing_accepted += 1

    def _ack(self, msg: C.MavMessage, result: int) -> None:
        hdr = msg.get_header()
        self._channel.send(mavlink.MAVLink_command_ack_message(
            msg.command, result, 0, 0, hdr.srcSystem, hdr.srcComponent))

    def _on_command_long(self, msg: C.MavMessage, _arrival_ns: int) -> None:
        if not self._addressed_to_us(msg.target_system, msg.target_component):
            return
        if msg.command == C.CMD_REQUEST_MESSAGE:
            if int(msg.param1) == C.MSG_AUTOPILOT_VERSION:
                self._ack(msg, C.RESULT_ACCEPTED)
                self._channel.send(mavlink.MAVLink_autopilot_version_message(
                    0, 0x04060000, 0, 0, 0, [0] * 8, [0] * 8, [0] * 8, 0, 0, 0))
            else:
                self._ack(msg, C.RESULT_UNSUPPORTED)
        elif msg.command == C.CMD_SET_MESSAGE_INTERVAL:
            # as ArduPilot (GCS_MAVLINK::set_message_interval): a rate faster than 0.8x the
            # main loop is DENIED ("Increase SCHED_LOOP_RATE"); the emulator records what was
            # asked and keeps streaming what its driver sends
            interval_us = float(msg.param2)
            fastest_us = 1e6 / (EMULATED_LOOP_RATE_HZ * 0.8)
            if 0 < interval_us < fastest_us - 1.0:
                self._ack(msg, C.RESULT_DENIED)
            else:
                with self._lock:
                    self.message_intervals_us[int(msg.param1)] = interval_us
                self._ack(msg, C.RESULT_ACCEPTED)
        elif msg.command == C.CMD_SET_EKF_SOURCE_SET:
            set_id = int(msg.param1)
            if 1 <= set_id <= 3:
                with self._lock:
                    self.ekf_source_sets.append(set_id)
                self._ack(msg, C.RESULT_ACCEPTED)
            else:
                self._ack(msg, C.RESULT_DENIED)
        elif msg.target_component == self._channel.component_id:
            self._ack(msg, C.RESULT_UNSUPPORTED)

    def _on_gps_input(self, msg: C.MavMessage, arrival_ns: int) -> None:
        self.acceptance.observe(msg, arrival_ns)

    def _send_param(self, name: str) -> None:
        with self._lock:
            names = list(self.params)
            value = self.params[name]
        self._channel.send(mavlink.MAVLink_param_value_message(
            name.encode("ascii"), value, C.PARAM_TYPE_REAL32, len(names), names.index(name)))

    @staticmethod
    def _name(raw: object) -> str:
        if isinstance(raw, bytes):
            raw = raw.decode("ascii", "replace")
        return str(raw).rstrip("\x00")

    def _on_param_request_read(self, msg: C.MavMessage, _arrival_ns: int) -> None:
        if not self._addressed_to_us(msg.target_system, msg.target_component):
            return
        with self._lock:
            names = list(self.params)
            if msg.param_index >= 0:
                name = names[msg.param_index] if msg.param_index < len(names) else None
            else:
                name = self._name(msg.param_id)
                name = name if name in self.params else None
            self.param_reads.append(name or self._name(msg.param_id))
        if name is not None:  # an unknown name: ArduPilot stays silent
            self._send_param(name)

    def _on_param_set(self, msg: C.MavMessage, _arrival_ns: int) -> None:
        if not self._addressed_to_us(msg.target_system, msg.target_component):
            return
        name = self._name(msg.param_id)
        with self._lock:
            if name not in self.params:
                return
            self.params[name] = float(msg.param_value)
            self.param_sets.append((name, float(msg.param_value)))
        self._send_param(name)

    def param(self, name: str) -> float | None:
        with self._lock:
            return self.params.get(name)
