"""Status to the ground station and operator hints from it (REQUIREMENTS A4, N8, N9).

Why it sits on a MavlinkChannel rather than owning a socket: the ground station is reached either
through the flight controller (ArduPilot routes a companion's STATUSTEXT and NAMED_VALUE_FLOAT to
its telemetry radios) or through a separate side channel (a dedicated radio, iNav setups). The
same object serves both; the caller picks the channel.

What the operator sees:
- NAMED_VALUE_FLOAT at 1-2 Hz: TF_SRC (label code), TF_CONF (display confidence), TF_ANCH_S
  (anchor age), TF_R95_M (95% horizontal radius), TF_GNSS_OK (GNSS trusted), TF_GNSS_DM
  (distance between our estimate and the GNSS the FC reports). See constants.py.
- STATUSTEXT (<= 50 ASCII characters) on label changes and for events the onboard program
  reports, rate-limited per severity. Rate limiting never silently loses what matters: label
  changes coalesce to the latest, spoof rejections are queued and sent as soon as the severity's
  budget allows, with a repeat count ("... x3"), whatever the log configuration (this path does
  not go through Python logging).

Hints: `RELOC:<lat>,<lon>,<radius_m>` as STATUSTEXT, or COMMAND_LONG CMD_RELOC_HINT (constants),
are validated, handed to the onboard program, then acknowledged on the reader thread (well
within the 2 s budget): COMMAND_ACK ACCEPTED/DENIED for the command form, and a STATUSTEXT
"RELOC ACK ..." / "RELOC NACK: <reason>" for both forms.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import MavlinkChannel
from terrafix.autopilot.errors import LinkClosedError, RelocHintError
from terrafix.autopilot.gps_report import horizontal_radius95_m
from terrafix.autopilot.reloc_hint import (
    RelocHint,
    ack_text,
    hint_from_command,
    nack_text,
    parse_reloc_text,
)
from terrafix.autopilot.scheduler import FixedRateTicker
from terrafix.geo import distance_m
from terrafix.measurements import GnssSample, NavSolution, SourceLabel

log = logging.getLogger(__name__)
mavlink = C.DIALECT


def sanitize_statustext(text: str) -> str:
    """Printable ASCII only (others become '?'), at most STATUSTEXT_MAX_CHARS characters."""
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text.strip())
    return clean[: C.STATUSTEXT_MAX_CHARS]


def _with_count(text: str, count: int) -> str:
    if count <= 1:
        return text
    suffix = f" x{count}"
    return text[: C.STATUSTEXT_MAX_CHARS - len(suffix)] + suffix


class StatusTextLimiter:
    """Per-severity minimum spacing of STATUSTEXT, with keyed coalescing.

    - an unkeyed message over budget is dropped and counted (`suppressed`);
    - a keyed message over budget replaces the pending one of the same key (latest wins);
    - a must-deliver message over budget is queued under its key and counted, and goes out
      with a repeat count when the budget allows: it is never dropped.
    Not thread-safe on its own: GroundStation serialises access.
    """

    def __init__(self, min_interval_s: dict[int, float] | None = None) -> None:
        self._interval = dict(C.STATUSTEXT_MIN_INTERVAL_S if min_interval_s is None
                              else min_interval_s)
        self._last: dict[int, float] = {}
        self._pending: dict[str, list] = {}  # key -> [severity, text, count, must_deliver]
        self.suppressed = 0

    def _allowed(self, severity: int, now: float) -> bool:
        last = self._last.get(severity)
        return last is None or now - last >= self._interval.get(severity, 1.0)

    def offer(self, severity: int, text: str, now: float, *, key: str | None = None,
              must_deliver: bool = False) -> str | None:
        """Text to send now, or None (queued, coalesced or suppressed)."""
        text = sanitize_statustext(text)
        if must_deliver and key is None:
            key = text
        if key is not None and key in self._pending:
            entry = self._pending[key]
            entry[1] = text
            entry[2] += 1
            return None
        if self._allowed(severity, now):
            self._last[severity] = now
            return text
        if key is None:
            self.suppressed += 1
            return None
        self._pending[key] = [severity, text, 1, must_deliver]
        return None

    def due(self, now: float) -> list[tuple[int, str]]:
        """Pending messages whose severity budget allows them now (removed from the queue)."""
        out: list[tuple[int, str]] = []
        for key in list(self._pending):
            severity, text, count, must = self._pending[key]
            if self._allowed(severity, now):
                self._last[severity] = now
                del self._pending[key]
                out.append((severity, _with_count(text, count) if must else text))
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)


class GroundStationConfig(BaseModel):
    """Ground-station behaviour. `hint_senders`: MAVLink system ids allowed to send hints
    (empty = any system on the channel)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    status_rate_hz: float = Field(1.0, ge=C.STATUS_RATE_MIN_HZ, le=C.STATUS_RATE_MAX_HZ)
    hint_senders: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class GroundStationStats:
    status_cycles: int
    texts_sent: int
    texts_suppressed: int
    texts_pending: int
    hints_accepted: int
    hints_rejected: int


def confidence(solution: NavSolution | None) -> float:
    """Display confidence in [0, 1] (see CONFIDENCE_SCALE_M)."""
    if solution is None or solution.failsafe or solution.label == SourceLabel.NO_FIX:
        return 0.0
    r95 = horizontal_radius95_m(solution.cov_p_ned_m2)
    return 0.0 if not math.isfinite(r95) else math.exp(-r95 / C.CONFIDENCE_SCALE_M)


class GroundStation:
    """Status publisher and hint receiver on one MAVLink channel.

    Thread model: `start()` subscribes to the channel (hint handling then runs on the channel's
    reader thread) and starts one status thread at `status_rate_hz`; `update`, `update_fc_gnss`,
    `send_text` and `report_spoof_rejection` may be called from any thread.
    """

    def __init__(
        self,
        channel: MavlinkChannel,
        config: GroundStationConfig | None = None,
        *,
        on_reloc_hint: Callable[[RelocHint], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ch = channel
        self._cfg = config or GroundStationConfig()
        self._on_hint = on_reloc_hint
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self._limiter = StatusTextLimiter()
        self._solution: NavSolution | None = None
        self._fc_gnss: GnssSample | None = None
        self._label: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ground-station", daemon=True)
        self._status_cycles = self._texts_sent = 0
        self._hints_ok = self._hints_bad = 0
        self._started = False

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._ch.subscribe("COMMAND_LONG", self._on_command_long)
        self._ch.subscribe("STATUSTEXT", self._on_statustext)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def stats(self) -> GroundStationStats:
        with self._lock:
            return GroundStationStats(self._status_cycles, self._texts_sent,
                                      self._limiter.suppressed, self._limiter.pending,
                                      self._hints_ok, self._hints_bad)

    # --- inputs from the onboard program ------------------------------------------------------
    def update(self, solution: NavSolution) -> None:
        """Latest solution; a label change is announced by STATUSTEXT."""
        label = SourceLabel.NO_FIX if solution.failsafe else solution.label
        with self._lock:
            self._solution = solution
            previous, self._label = self._label, label
        if previous is not None and previous != label:
            r95 = horizontal_radius95_m(solution.cov_p_ned_m2)
            r_txt = f" r95 {r95:.0f}m" if math.isfinite(r95) else ""
            self.send_text(C.LABEL_CHANGE_SEVERITY.get(label, C.SEVERITY_NOTICE),
                           f"TF {previous}->{label}{r_txt}", key="label")

    def update_fc_gnss(self, sample: GnssSample) -> None:
        """The GNSS fix the FC reports (shown as its distance from our estimate)."""
        with self._lock:
            self._fc_gnss = sample

    def send_text(self, severity: int, text: str, *, key: str | None = None,
                  must_deliver: bool = False) -> bool:
        """Send a STATUSTEXT subject to the per-severity limit; True if it went out now."""
        with self._lock:
            out = self._limiter.offer(severity, text, self._clock(), key=key,
                                      must_deliver=must_deliver)
        if out is None:
            return False
        return self._send_statustext(severity, out)

    def report_spoof_rejection(self, reason: str) -> None:
        """A GNSS spoof rejection: always reaches the ground station (queued if over budget)."""
        self.send_text(C.SEVERITY_CRITICAL, f"{C.SPOOF_TEXT_PREFIX}: {reason}", key="spoof",
                       must_deliver=True)

    # --- outputs ------------------------------------------------------------------------------
    def _send_statustext(self, severity: int, text: str) -> bool:
        try:
            self._ch.send(mavlink.MAVLink_statustext_message(
                severity, sanitize_statustext(text).encode("ascii"), 0, 0))
        except (OSError, LinkClosedError):
            return False
        with self._lock:
            self._texts_sent += 1
        return True

    def _status_values(self) -> list[tuple[str, float]]:
        with self._lock:
            sol, gnss = self._solution, self._fc_gnss
        if sol is None:
            return [(C.NVF_SOURCE, 0.0), (C.NVF_CONFIDENCE, 0.0),
                    (C.NVF_ANCHOR_AGE, C.ANCHOR_AGE_NONE_S), (C.NVF_RADIUS95, -1.0),
                    (C.NVF_GNSS_TRUSTED, 0.0), (C.NVF_GNSS_DISTANCE, -1.0)]
        label = SourceLabel.NO_FIX if sol.failsafe else sol.label
        r95 = horizontal_radius95_m(sol.cov_p_ned_m2)
        age = sol.anchor_age_s if math.isfinite(sol.anchor_age_s) else C.ANCHOR_AGE_NONE_S
        dist = -1.0
        if gnss is not None and gnss.fix_type >= C.GPS_FIX_TYPE_3D:
            dist = float(distance_m(sol.lat_deg, sol.lon_deg, gnss.lat_deg, gnss.lon_deg))
        return [
            (C.NVF_SOURCE, float(C.SOURCE_LABEL_CODES.get(label, 0))),
            (C.NVF_CONFIDENCE, confidence(sol)),
            (C.NVF_ANCHOR_AGE, float(age)),
            (C.NVF_RADIUS95, float(r95) if math.isfinite(r95) else -1.0),
            (C.NVF_GNSS_TRUSTED, 1.0 if sol.gnss_trusted else 0.0),
            (C.NVF_GNSS_DISTANCE, dist),
        ]

    def _run(self) -> None:
        ticker = FixedRateTicker(self._cfg.status_rate_hz)
        while ticker.wait(self._stop) is not None:
            boot_ms = int((self._clock() - self._t0) * 1000) & 0xFFFFFFFF
            try:
                for name, value in self._status_values():
                    self._ch.send(mavlink.MAVLink_named_value_float_message(
                        boot_ms, name.encode("ascii"), value))
            except (OSError, LinkClosedError):
                if self._stop.is_set():
                    return
                continue
            with self._lock:
                due = self._limiter.due(self._clock())
                self._status_cycles += 1
            for severity, text in due:
                self._send_statustext(severity, text)

    # --- hints (reader thread) ----------------------------------------------------------------
    def _sender_allowed(self, sender: tuple[int, int]) -> bool:
        return not self._cfg.hint_senders or sender[0] in self._cfg.hint_senders

    def _deliver(self, hint: RelocHint) -> None:
        """Hand the hint over; a failing consumer turns into a NACK, not a silent loss."""
        if self._on_hint is not None:
            try:
                self._on_hint(hint)
            except Exception as e:
                log.exception("the onboard program failed to take a RELOC hint")
                raise RelocHintError("onboard program could not take it") from e
        with self._lock:
            self._hints_ok += 1

    def _on_statustext(self, msg: C.MavMessage, arrival_ns: int) -> None:
        raw = msg.text
        text = (raw.decode("ascii", "replace") if isinstance(raw, bytes | bytearray)
                else str(raw)).rstrip("\x00").strip()
        if not text.upper().startswith(C.RELOC_PREFIX):
            return
        hdr = msg.get_header()
        sender = (hdr.srcSystem, hdr.srcComponent)
        try:
            if not self._sender_allowed(sender):
                raise RelocHintError(f"sender {sender[0]} not allowed")
            hint = parse_reloc_text(C.RELOC_PREFIX + text[len(C.RELOC_PREFIX):], arrival_ns,
                                    sender)
            self._deliver(hint)
        except RelocHintError as e:
            with self._lock:
                self._hints_bad += 1
            self._send_statustext(C.SEVERITY_WARNING, nack_text(str(e)))
            return
        self._send_statustext(C.SEVERITY_INFO, ack_text(hint))

    def _on_command_long(self, msg: C.MavMessage, arrival_ns: int) -> None:
        if msg.command != C.CMD_RELOC_HINT:
            return
        if msg.target_system not in (0, self._ch.system_id) or msg.target_component not in (
                0, self._ch.component_id):
            return
        hdr = msg.get_header()
        sender = (hdr.srcSystem, hdr.srcComponent)
        params = (msg.param1, msg.param2, msg.param3, msg.param4, msg.param5, msg.param6,
                  msg.param7)
        try:
            if not self._sender_allowed(sender):
                raise RelocHintError(f"sender {sender[0]} not allowed")
            hint = hint_from_command(params, arrival_ns, sender)
            self._deliver(hint)
        except RelocHintError as e:
            with self._lock:
                self._hints_bad += 1
            self._ack(msg.command, C.RESULT_DENIED, sender)
            self._send_statustext(C.SEVERITY_WARNING, nack_text(str(e)))
            return
        self._ack(msg.command, C.RESULT_ACCEPTED, sender)
        self._send_statustext(C.SEVERITY_INFO, ack_text(hint))

    def _ack(self, command: int, result: int, sender: tuple[int, int]) -> None:
        self._ch.send(mavlink.MAVLink_command_ack_message(command, result, 0, 0, sender[0],
                                                          sender[1]))
