"""The companion's link to an ArduPilot flight controller (REQUIREMENTS A1, A2).

What it does, in the order of a flight:
1. `open()`: connect (serial/UDP/TCP), start the reader and a 1 Hz companion HEARTBEAT; FC
   telemetry starts flowing to the callbacks as typed samples on the companion clock.
2. `establish_signing()`: fresh per-flight key -> SETUP_SIGNING -> signed MAV_CMD_REQUEST_MESSAGE
   -> wait for a COMMAND_ACK that carries a valid signature with this key. That ack proves both
   directions: the FC accepted our signed command (ArduPilot drops badly signed packets once it
   holds a key) and signs with our key. Anything else raises SigningHandshakeError and take-off
   must be refused: an FC that is armed (ArduPilot refuses SETUP_SIGNING while armed), holds
   another key (it then rejects our unsigned SETUP_SIGNING and signs with its own), or does not
   sign. From then on every inbound packet must carry a valid signature (RADIO_STATUS excepted,
   as ArduPilot does); the others are dropped and counted by reason (channel stats).
3. `start_output()`: GPS_INPUT at a fixed 5-10 Hz from the latest `publish()`ed solution.
4. `check_switch_parameters()`: read (by name, on the signed link) the FC parameters that decide
   whether a GNSS switch keeps the position; any problem raises FcParameterError naming the
   parameter, and take-off must be refused (gnss_switch.py says which and why).
5. `set_gnss_trusted()`: on every change of GNSS trust, the switch of the chosen topology:
   PARAM_SET GPS_PRIMARY (default; real receiver GPS1 <-> terrafix GPS2), confirmed by
   ArduPilot's PARAM_VALUE echo, or MAV_CMD_SET_EKF_SOURCE_SET confirmed by its COMMAND_ACK.
6. `close()`: stop threads; if the FC is disarmed, disable signing on it (all-zero key, signed
   with ours) so that the next flight's fresh key can be installed, then zero the key.

Why signing is set up by the companion on its own link: a GCS/USB channel may still accept
unsigned messages, so the link that feeds the autopilot its position is the one that must be
authenticated (REQUIREMENTS A1).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import ChannelStats, HeartbeatSpec, MavlinkChannel
from terrafix.autopilot.errors import FcParameterError, LinkConfigError, SigningHandshakeError
from terrafix.autopilot.gnss_switch import GnssSwitchPlan, SwitchMethod, switch_parameter_problems
from terrafix.autopilot.gps_report import GpsReport
from terrafix.autopilot.gps_sender import FixedRateGpsSender, LatestSlot, OutputStats
from terrafix.autopilot.inbound import (
    FcHeartbeat,
    FcPosition,
    FcStatusText,
    GnssInterference,
    ImuMessage,
    InboundDecoder,
    InboundValueError,
    LandedState,
)
from terrafix.autopilot.parameters import FcParameters
from terrafix.autopilot.signing import SigningKey, signing_timestamp_now
from terrafix.autopilot.transport import ByteTransport
from terrafix.measurements import (
    AttitudeSample,
    BaroSample,
    GnssSample,
    ImuSample,
    NavSolution,
)

log = logging.getLogger(__name__)
mavlink = C.DIALECT


TELEMETRY_RATE_TRIES = 4
TELEMETRY_RATE_BACKOFF = 0.8
"""A denied message rate is asked again this much slower, up to TELEMETRY_RATE_TRIES times."""


class ArduPilotLinkConfig(BaseModel):
    """Settings of the FC link (validated; every value is logged by the onboard program)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    connection: str = Field(description="udpout:host:port, udpin:127.0.0.1:port, tcp:host:port "
                                        "or a serial device such as /dev/ttyACM0")
    baud: int = Field(921600, gt=0)
    system_id: int = Field(C.DEFAULT_SYSTEM_ID, ge=1, le=255)
    component_id: int = Field(C.COMPANION_COMPONENT_ID, ge=1, le=255)
    fc_system_id: int | None = Field(None, ge=1, le=255,
                                     description="None: the first autopilot HEARTBEAT decides")
    fc_component_id: int = Field(C.MAV_COMP_ID_AUTOPILOT1, ge=1, le=255)
    gps_input_rate_hz: float = Field(10.0, ge=C.GPS_INPUT_RATE_MIN_HZ,
                                     le=C.GPS_INPUT_RATE_MAX_HZ)
    gps_id: int = Field(1, ge=0, le=255, description="GPS_INPUT gps_id = terrafix's ArduPilot "
                        "receiver instance (0-based): 1 = GPS2, beside the real receiver on GPS1")
    sender_realtime_priority: int = Field(
        20, ge=0, le=99, description="SCHED_FIFO priority of the GPS_INPUT sender thread "
        "(Linux; needs CAP_SYS_NICE, else it runs at normal priority and says so); 0: off. "
        "Keeps the 5-10 Hz stream steady when the vision work loads every core.")
    stale_after_s: float = Field(C.DEFAULT_STALE_AFTER_S, gt=0.0, le=C.ARDUPILOT_NO_FIX_TIMEOUT_S)
    send_yaw: bool = False
    require_signing: bool = True
    signing_timeout_s: float = Field(C.SIGNING_HANDSHAKE_TIMEOUT_S, gt=0.0, le=5.0)
    imu_message: ImuMessage = "auto"
    qnh_hpa: float = Field(1013.25, gt=800.0, lt=1100.0)
    gnss_lag_s: float = Field(
        C.DEFAULT_GNSS_REPORT_LAG_S, ge=0.0, le=1.0,
        description="the real receiver's latency from measurement to the report ArduPilot "
        "stamps (ArduPilot's own assumption: 0.12 s for u-blox M8/F9/M10, 0.22 s for older)")
    fc_gps_lag_s: float | None = Field(
        None, ge=0.0, le=0.25,
        description="the lag ArduPilot subtracts from terrafix's GPS_INPUT arrival to place it "
        "in time; each report describes the aircraft that long before it is sent. None: "
        "GPSn_DELAY_MS of terrafix's instance, read at take-off (0 there = the MAVLink GPS "
        "driver's 0.2 s)")
    gnss_switch: SwitchMethod = Field(
        "gps_primary", description="gps_primary: PARAM_SET GPS_PRIMARY real_gps_instance / "
        "gps_id on trust changes (docs/ardupilot/terrafix.parm); ekf_source_set: "
        "MAV_CMD_SET_EKF_SOURCE_SET between the two source sets below")
    real_gps_instance: int = Field(0, ge=0, le=1)
    check_fc_parameters: bool = True
    """Read the FC's switch parameters before take-off and refuse when they would make a
    switch lose the position."""
    ekf_source_set_gnss_trusted: int = Field(1, ge=1, le=3)
    ekf_source_set_gnss_untrusted: int = Field(2, ge=1, le=3)
    telemetry_rates_hz: dict[int, float] = Field(
        default_factory=lambda: dict(C.COMPANION_TELEMETRY_RATES_HZ),
        description="MAVLink message id -> rate the link asks the FC for at take-off "
        "(`request_telemetry`); the IMU and attitude at the FC's loop rate")
    clear_fc_key_on_close: bool = True
    allow_external_listen: bool = False


@dataclass(frozen=True, slots=True)
class FcCallbacks:
    """Where the link delivers what it learns; each runs on the link's reader thread (or, for
    on_output_stale / on_ekf_source_set, on the sender / command thread) and must be quick:
    pass `queue.put_nowait` to move work elsewhere."""

    on_imu: Callable[[ImuSample], None] | None = None
    on_attitude: Callable[[AttitudeSample], None] | None = None
    on_baro: Callable[[BaroSample], None] | None = None
    on_gnss: Callable[[GnssSample], None] | None = None
    on_gnss_interference: Callable[[GnssInterference], None] | None = None
    on_fc_position: Callable[[FcPosition], None] | None = None
    on_heartbeat: Callable[[FcHeartbeat], None] | None = None
    on_status_text: Callable[[FcStatusText], None] | None = None
    on_landed_state: Callable[[LandedState], None] | None = None
    on_output_stale: Callable[[float], None] | None = None
    on_output_sent: Callable[[GpsReport, int], None] | None = None
    """(report, monotonic ns) after every GPS_INPUT sent, on the sender thread."""
    on_ekf_source_set: Callable[[int, int | None], None] | None = None
    """(source set id, MAV_RESULT or None when never acknowledged)."""
    on_gnss_switch: Callable[[GnssSwitchResult], None] | None = None
    """Every switch of either method, with whether ArduPilot confirmed it."""


_CALLBACK_FOR = {
    ImuSample: "on_imu",
    AttitudeSample: "on_attitude",
    BaroSample: "on_baro",
    GnssSample: "on_gnss",
    GnssInterference: "on_gnss_interference",
    FcPosition: "on_fc_position",
    FcHeartbeat: "on_heartbeat",
    FcStatusText: "on_status_text",
    LandedState: "on_landed_state",
}


_GPS_REPORT_OF_INSTANCE = {0: "GPS_RAW_INT", 1: "GPS2_RAW"}
"""ArduPilot reports receiver instance 0 in GPS_RAW_INT and instance 1 in GPS2_RAW."""


@dataclass(frozen=True, slots=True)
class GnssSwitchResult:
    """One switch made on a change of GNSS trust.

    target: the GPS_PRIMARY value or the EKF source set asked for; answer: the echoed
    GPS_PRIMARY or the MAV_RESULT, None when ArduPilot never answered; confirmed: the answer
    is the one asked for."""

    trusted: bool
    method: SwitchMethod
    target: int
    answer: float | None
    confirmed: bool
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class SigningReport:
    """How the signing handshake went (no key material)."""

    elapsed_s: float
    attempts: int
    fc_system_id: int
    fc_component_id: int


@dataclass(frozen=True, slots=True)
class ArduPilotLinkStats:
    channel: ChannelStats
    output: OutputStats
    decode_errors: int
    signing_established: bool
    clock_offset_ns: int | None
    fc_heartbeat: FcHeartbeat | None


def encode_gps_input(report: GpsReport, gps_id: int = 0) -> C.MavMessage:
    """GPS_INPUT for a report. time_usec carries UTC (ArduPilot uses week/ms, not this)."""
    yaw_cdeg = 0 if report.yaw_deg is None else max(1, min(36000, round(report.yaw_deg * 100)))
    vn, ve, vd = report.v_ned_mps
    return mavlink.MAVLink_gps_input_message(
        report.utc_unix_ns // 1000, gps_id, report.ignore_flags, report.gps_week_ms,
        report.gps_week, report.fix_type, round(report.lat_deg * 1e7),
        round(report.lon_deg * 1e7), report.alt_m, report.hdop, report.vdop, vn, ve, vd,
        report.speed_acc_mps, report.h_acc_m, report.v_acc_m, report.satellites, yaw_cdeg,
    )


class ArduPilotLink:
    """The signed MAVLink 2 link to ArduPilot: inbound samples, GPS_INPUT out, trust commands.

    Thread model: a reader thread and a heartbeat thread (from `open()`), a GPS_INPUT sender
    thread (from `start_output()`), and a command thread for EKF source-set changes. `publish`,
    `set_gnss_trusted`, `on_ground`, `stats` are safe from any thread. Implements the
    PositionOutput protocol.
    """

    def __init__(
        self,
        config: ArduPilotLinkConfig,
        callbacks: FcCallbacks | None = None,
        *,
        transport: ByteTransport | None = None,
        mono_clock: Callable[[], int] = time.monotonic_ns,
        utc_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._cfg = config
        self._cb = callbacks or FcCallbacks()
        self._channel = MavlinkChannel(
            transport if transport is not None else config.connection,
            system_id=config.system_id,
            component_id=config.component_id,
            heartbeat=HeartbeatSpec(C.COMPANION_MAV_TYPE, C.AUTOPILOT_INVALID),
            baud=config.baud,
            allow_external_listen=config.allow_external_listen,
            name="fc-link",
        )
        self._decoder = InboundDecoder(imu_message=config.imu_message, qnh_hpa=config.qnh_hpa,
                                       gnss_lag_s=config.gnss_lag_s)
        self._slot: LatestSlot[NavSolution] = LatestSlot()
        self._sender = FixedRateGpsSender(
            self._slot, self._send_gps_input, rate_hz=config.gps_input_rate_hz,
            stale_after_s=config.stale_after_s, send_yaw=config.send_yaw,
            on_stale=self._cb.on_output_stale, on_sent=self._cb.on_output_sent,
            name="gps-input", mono_clock=mono_clock,
            utc_clock=utc_clock, realtime_priority=config.sender_realtime_priority,
            valid_lag_s=(C.ARDUPILOT_MAV_GPS_LAG_S if config.fc_gps_lag_s is None
                         else config.fc_gps_lag_s),
        )
        self._lock = threading.Lock()
        self._fc_id: tuple[int, int] | None = None
        self._fc_heartbeat: FcHeartbeat | None = None
        self._heartbeat_seen = threading.Event()
        self._landed: LandedState | None = None
        self._landed_cond = threading.Condition(self._lock)
        self._decode_errors = 0
        self._signing_established = False
        self._gnss_trusted: bool | None = None
        self._commands: queue.Queue[bool | None] = queue.Queue()
        self._params = FcParameters(self._channel)
        self._plan = GnssSwitchPlan(config.gnss_switch, config.real_gps_instance,
                                    config.gps_id, config.ekf_source_set_gnss_trusted,
                                    config.ekf_source_set_gnss_untrusted)
        self._switches: list[GnssSwitchResult] = []
        self._own_gps_report = _GPS_REPORT_OF_INSTANCE.get(config.gps_id)
        self._own_gps_echoes = 0
        self._command_thread: threading.Thread | None = None
        self._mono = mono_clock
        self._opened = False

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def channel(self) -> MavlinkChannel:
        """The underlying channel (a GroundStation may share it: ArduPilot routes to the GCS)."""
        return self._channel

    def open(self) -> None:
        if self._opened:
            return
        self._opened = True
        self._channel.subscribe("*", self._on_message)
        self._channel.start()

    def wait_for_fc(self, timeout_s: float) -> bool:
        """Block until the FC's first HEARTBEAT (True) or the timeout (False). The onboard
        program waits here at start-up, before the signing handshake's own short timeout."""
        if not self._opened:
            self.open()
        return self._heartbeat_seen.wait(timeout=timeout_s)

    def fc_boot_to_companion_ns(self, fc_boot_ns: int) -> int | None:
        """Companion monotonic time of an FC boot-clock time (e.g. an FC-triggered camera's
        capture time), by the link's clock alignment; None before the first timed message."""
        offset = self._decoder.clock_offset_ns
        return None if offset is None else int(fc_boot_ns) + offset

    def companion_to_fc_boot_ns(self, companion_ns: int) -> int | None:
        """The inverse of `fc_boot_to_companion_ns` (an FC-triggered camera schedules its
        triggers in FC time); None before the first timed message."""
        offset = self._decoder.clock_offset_ns
        return None if offset is None else int(companion_ns) - offset

    def request_telemetry(self, rates_hz: Mapping[int, float] | None = None,
                          timeout_s: float = 1.0) -> dict[int, int | None]:
        """Ask the FC to stream what the navigation reads, on this link (MAV_CMD_SET_MESSAGE_
        INTERVAL per message: ArduPilot's rates are per channel, and a companion port streams
        little or nothing until asked). Returns {message id: MAV_RESULT or None (no answer)};
        an FC that refuses or ignores a request keeps its own rates, which is logged, not
        fatal: the navigation works at whatever rate the samples come."""
        rates = dict(self._cfg.telemetry_rates_hz if rates_hz is None else rates_hz)
        target = self._target()
        answers: dict[int, int | None] = {}
        for msg_id, hz in rates.items():
            if not (0.0 < hz <= 1000.0):
                raise LinkConfigError(f"telemetry rate {hz} Hz for message {msg_id}: expected "
                                      "0 < rate <= 1000")
            asked = hz
            for _ in range(TELEMETRY_RATE_TRIES):
                ack = self._channel.command_long(*target, C.CMD_SET_MESSAGE_INTERVAL,
                                                 (float(msg_id), 1e6 / asked),
                                                 timeout_s=timeout_s, retries=2)
                answers[msg_id] = None if ack is None else int(ack.result)
                # ArduPilot denies a rate above ~0.8x its main loop ("too fast. Increase
                # SCHED_LOOP_RATE"): the fastest it allows is what the navigation wants
                if answers[msg_id] != C.RESULT_DENIED:
                    break
                asked *= TELEMETRY_RATE_BACKOFF
            if answers[msg_id] == C.RESULT_ACCEPTED and asked != hz:
                log.info("FC streams message %d at %.1f Hz (%.1f Hz asked for was too fast)",
                         msg_id, asked, hz)
        refused = {m: r for m, r in answers.items() if r != C.RESULT_ACCEPTED}
        if refused:
            log.info("FC kept its own rate for messages %s (MAV_RESULT %s)", sorted(refused),
                     sorted({str(r) for r in refused.values()}))
        return answers

    def establish_signing(self) -> SigningReport:
        """Install a fresh key on the FC and prove it is used both ways, or refuse take-off."""
        if not self._opened:
            self.open()
        t0 = time.monotonic()
        deadline = t0 + self._cfg.signing_timeout_s
        where = self._channel.description
        if not self._heartbeat_seen.wait(timeout=max(0.0, deadline - time.monotonic())):
            raise SigningHandshakeError(
                f"no HEARTBEAT from the flight controller on {where} within "
                f"{self._cfg.signing_timeout_s:.1f} s: take-off refused"
            )
        hb = self._fc_heartbeat
        assert hb is not None
        if hb.armed:
            raise SigningHandshakeError(
                f"the flight controller (system {hb.system_id}) is armed and ArduPilot refuses "
                "SETUP_SIGNING while armed: disarm it; take-off refused"
            )
        key = SigningKey.generate()
        ts0 = signing_timestamp_now()
        before = self._channel.stats()
        self._channel.enable_signing(key, require_signed_inbound=True,
                                     allow_unsigned_ids=C.SIGNING_ALWAYS_UNSIGNED_MSG_IDS,
                                     initial_timestamp=ts0)
        # The channel owns the key from here on and zeroes it on close or on failure.
        target = (hb.system_id, hb.component_id)
        attempts = 0
        while (remaining := deadline - time.monotonic()) > 0:
            attempts += 1
            self._send_setup_signing(key, target, ts0)
            ack = self._channel.command_long(
                *target, C.CMD_REQUEST_MESSAGE, (float(C.MSG_AUTOPILOT_VERSION),),
                timeout_s=min(C.SIGNING_HANDSHAKE_RETRY_S, remaining), retries=1,
            )
            if ack is not None:
                with self._lock:
                    self._signing_established = True
                del key
                return SigningReport(time.monotonic() - t0, attempts, *target)
        after = self._channel.stats()
        self._channel.disable_signing()  # zeroes the key
        del key
        bad = after.rejected_bad_signature - before.rejected_bad_signature
        unsigned = after.rejected_unsigned - before.rejected_unsigned
        raise SigningHandshakeError(
            f"the flight controller on {where} did not answer a request signed with this "
            f"flight's key within {self._cfg.signing_timeout_s:.1f} s ({attempts} attempts; "
            f"meanwhile rejected {bad} packets with a wrong signature, {unsigned} unsigned): it "
            "holds a different key or does not sign; take-off refused"
        )

    def _send_setup_signing(self, key: SigningKey, target: tuple[int, int],
                            initial_timestamp: int) -> None:
        """SETUP_SIGNING, unsigned: an FC without a key accepts it; one with another key
        rejects it (and the handshake then fails, as it must)."""
        if key.is_zeroed:
            raise SigningHandshakeError("the signing key was zeroed during the handshake")
        msg = mavlink.MAVLink_setup_signing_message(*target, list(key.material), initial_timestamp)
        self._channel.send(msg, sign=False)
        msg.secret_key = [0] * C.SIGNING_KEY_BYTES

    def start_output(self) -> None:
        """Start GPS_INPUT. Refused (SigningHandshakeError) without an established signed link
        unless the configuration explicitly does not require signing."""
        if self._cfg.require_signing and not self._signing_established:
            raise SigningHandshakeError(
                "GPS_INPUT output needs an established signed link (call establish_signing); "
                "take-off refused"
            )
        if not self._opened:
            self.open()
        self._sender.start()

    def close(self) -> None:
        """Stop everything; on a disarmed FC disable its signing; zero the key. Idempotent."""
        self._sender.stop()
        if self._command_thread is not None:
            self._commands.put(None)
            self._command_thread.join(timeout=5.0)
        hb = self._fc_heartbeat
        if (self._signing_established and self._cfg.clear_fc_key_on_close and hb is not None
                and not hb.armed and self._channel.signing_active):
            try:
                self._channel.send(mavlink.MAVLink_setup_signing_message(
                    hb.system_id, hb.component_id, [0] * C.SIGNING_KEY_BYTES, 0))
            except OSError as e:
                log.warning("could not clear the FC's signing key: %s", e)
        self._channel.close()
        with self._lock:
            self._signing_established = False

    def __enter__(self) -> ArduPilotLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- outputs ------------------------------------------------------------------------------
    def publish(self, solution: NavSolution) -> None:
        """Latest solution for the next GPS_INPUT tick (thread-safe, never blocks)."""
        self._slot.put(solution)

    def output_stats(self) -> OutputStats:
        return self._sender.stats()

    def _send_gps_input(self, report: GpsReport) -> None:
        self._channel.send(encode_gps_input(report, self._cfg.gps_id))

    @property
    def parameters(self) -> FcParameters:
        """Parameter reads and sets on this (signed) link."""
        return self._params

    @property
    def switch_plan(self) -> GnssSwitchPlan:
        return self._plan

    def _target(self) -> tuple[int, int]:
        fc = self._fc_id
        if fc is None:
            raise FcParameterError("no flight controller heartbeat yet: its parameters cannot "
                                   "be read; take-off refused")
        return fc

    def check_switch_parameters(self) -> dict[str, float | None]:
        """Read the parameters the GNSS switch depends on; raise FcParameterError naming each
        one that would make a switch lose the position (take-off refused). Returns the values."""
        if self._cfg.require_signing and not self._signing_established:
            raise FcParameterError("the FC's parameters are read on the signed link: establish "
                                   "signing first; take-off refused")
        delay_param = C.gps_delay_param(self._plan.terrafix_gps_instance)
        values = self._params.read_many(self._target(),
                                        (*self._plan.required_parameters(), delay_param))
        self._align_to_fc_gps_lag(values.get(delay_param))
        problems = switch_parameter_problems(self._plan, values)
        log.info("FC parameters for the GNSS switch: %s",
                 ", ".join(f"{name}={v:g}" if v is not None else f"{name}=?"
                           for name, v in values.items()))
        if problems:
            raise FcParameterError(
                "take-off refused: with these flight-controller parameters a GNSS switch "
                "would lose the position (see docs/ardupilot/terrafix.parm): "
                + "; ".join(problems))
        return values

    def _align_to_fc_gps_lag(self, delay_ms: float | None) -> None:
        """Time GPS_INPUT to the lag ArduPilot will assume for it (unless configured)."""
        if self._cfg.fc_gps_lag_s is not None:
            return
        name = C.gps_delay_param(self._plan.terrafix_gps_instance)
        if delay_ms is None or not math.isfinite(delay_ms) or delay_ms < 0.0:
            log.warning("the FC did not report %s: GPS_INPUT timed for the MAVLink GPS "
                        "driver's default lag %.2f s", name, C.ARDUPILOT_MAV_GPS_LAG_S)
            return
        lag_s = delay_ms / 1000.0 if delay_ms > 0.0 else C.ARDUPILOT_MAV_GPS_LAG_S
        self._sender.valid_lag_s = min(lag_s, 0.25)
        log.info("GPS_INPUT describes the aircraft %.3f s before it is sent (%s=%g)",
                 self._sender.valid_lag_s, name, delay_ms)

    def set_gnss_trusted(self, trusted: bool, *, force: bool = False) -> None:
        """On a change of GNSS trust (or always, with force), make ArduPilot use the real
        receiver (trusted) or terrafix (not trusted), asynchronously; the outcome goes to
        on_gnss_switch (and on_ekf_source_set for that method) and `switches()`."""
        with self._lock:
            if self._gnss_trusted is trusted and not force:
                return
            self._gnss_trusted = trusted
            if self._command_thread is None:
                self._command_thread = threading.Thread(target=self._command_loop,
                                                        name="fc-commands", daemon=True)
                self._command_thread.start()
        self._commands.put(bool(trusted))

    @property
    def own_gps_echoes(self) -> int:
        """FC reports of terrafix's own receiver instance, dropped (never fed back as GNSS)."""
        with self._lock:
            return self._own_gps_echoes

    def switches(self) -> list[GnssSwitchResult]:
        with self._lock:
            return list(self._switches)

    def _command_loop(self) -> None:
        while (trusted := self._commands.get()) is not None:
            t0 = time.monotonic()
            fc = self._fc_id
            plan = self._plan
            if plan.method == "gps_primary":
                target = plan.primary_for(trusted)
                answer: float | None = None
                if fc is None:
                    log.error("GPS_PRIMARY %d not set: no flight controller heartbeat yet",
                              target)
                else:
                    pv = self._params.set(fc, C.PARAM_GPS_PRIMARY, float(target),
                                          param_type=C.PARAM_TYPE_INT8)
                    answer = None if pv is None else pv.value
                    if answer is None:
                        log.error("GPS_PRIMARY %d: no PARAM_VALUE echo from the FC", target)
                confirmed = answer is not None and round(answer) == target
            else:
                target = (self._cfg.ekf_source_set_gnss_trusted if trusted
                          else self._cfg.ekf_source_set_gnss_untrusted)
                result = None
                if fc is None:
                    log.error("EKF source set %d not sent: no flight controller heartbeat yet",
                              target)
                else:
                    ack = self._channel.command_long(*fc, C.CMD_SET_EKF_SOURCE_SET,
                                                     (float(target),), timeout_s=1.0, retries=3)
                    result = None if ack is None else int(ack.result)
                    if result != C.RESULT_ACCEPTED:
                        log.error("EKF source set %d: FC answered %s", target, result)
                answer = None if result is None else float(result)
                confirmed = result == C.RESULT_ACCEPTED
                if self._cb.on_ekf_source_set is not None:
                    try:
                        self._cb.on_ekf_source_set(target, result)
                    except Exception:
                        log.exception("on_ekf_source_set callback failed")
            res = GnssSwitchResult(trusted, plan.method, target, answer, confirmed,
                                   time.monotonic() - t0)
            log.log(logging.INFO if confirmed else logging.ERROR, "GNSS switch: %s", res)
            with self._lock:
                self._switches.append(res)
            if self._cb.on_gnss_switch is not None:
                try:
                    self._cb.on_gnss_switch(res)
                except Exception:
                    log.exception("on_gnss_switch callback failed")

    # --- inbound ------------------------------------------------------------------------------
    def _is_from_fc(self, sys_id: int, comp_id: int) -> bool:
        if comp_id != self._cfg.fc_component_id:
            return False
        if self._fc_id is not None:
            return sys_id == self._fc_id[0]
        return self._cfg.fc_system_id is None or sys_id == self._cfg.fc_system_id

    def _on_message(self, msg: C.MavMessage, arrival_ns: int) -> None:
        hdr = msg.get_header()
        if not self._is_from_fc(hdr.srcSystem, hdr.srcComponent):
            return
        if msg.get_type() == self._own_gps_report:
            # ArduPilot's report of the receiver that terrafix feeds is our own GPS_INPUT
            # echoed back: GNSS to the navigator only from the real receiver (no feedback)
            with self._lock:
                self._own_gps_echoes += 1
            return
        try:
            samples = self._decoder.decode(msg, arrival_ns)
        except (InboundValueError, ValueError, TypeError, AttributeError) as e:
            with self._lock:
                self._decode_errors += 1
            log.warning("dropping %s from the FC: %s", msg.get_type(), e)
            return
        for sample in samples:
            if isinstance(sample, FcHeartbeat):
                if not sample.is_autopilot:
                    continue
                with self._lock:
                    if self._fc_id is None:
                        self._fc_id = (sample.system_id, sample.component_id)
                    self._fc_heartbeat = sample
                self._heartbeat_seen.set()
            elif isinstance(sample, LandedState):
                with self._lock:
                    self._landed = sample
                    self._landed_cond.notify_all()
            name = _CALLBACK_FOR.get(type(sample))
            cb = getattr(self._cb, name) if name else None
            if cb is not None:
                cb(sample)

    # --- state --------------------------------------------------------------------------------
    @property
    def fc_heartbeat(self) -> FcHeartbeat | None:
        return self._fc_heartbeat

    @property
    def signing_established(self) -> bool:
        return self._signing_established

    @property
    def landed_state(self) -> LandedState | None:
        """The latest EXTENDED_SYS_STATE landed state (None before the first)."""
        return self._landed

    def wait_for_landed_state(self, timeout_s: float, newer_than_ns: int | None = None) -> bool:
        """Block until an EXTENDED_SYS_STATE has arrived (after `newer_than_ns` on the
        companion clock, when given) (True) or the timeout (False). Waits for a report, not
        for a value: the caller judges the state it gets."""
        if not self._opened:
            self.open()
        with self._landed_cond:
            return self._landed_cond.wait_for(
                lambda: self._landed is not None and (
                    newer_than_ns is None or self._landed.t_ns > newer_than_ns), timeout_s)

    def on_ground(self, now_ns: int | None = None) -> bool:
        """True only for a fresh ON_GROUND report; unknown, in-air or stale read False."""
        landed = self._landed
        if landed is None or not landed.on_ground:
            return False
        now = self._mono() if now_ns is None else now_ns
        return (now - landed.t_ns) <= C.LANDED_STATE_MAX_AGE_S * 1e9

    def set_baro_reference(self, alt_amsl_m: float) -> float:
        """Make the current static pressure read the known take-off altitude; returns QNH."""
        if not math.isfinite(alt_amsl_m):
            raise LinkConfigError(f"take-off altitude must be finite, got {alt_amsl_m}")
        return self._decoder.set_baro_reference(alt_amsl_m)

    def stats(self) -> ArduPilotLinkStats:
        with self._lock:
            errors, signed = self._decode_errors, self._signing_established
        return ArduPilotLinkStats(self._channel.stats(), self._sender.stats(), errors, signed,
                                  self._decoder.clock_offset_ns, self._fc_heartbeat)
