"""The fixed-rate position sender shared by the ArduPilot and iNav links.

Why decoupled from the estimator: the autopilot needs a steady 5-10 Hz stream whatever the camera
and the estimator are doing (ArduPilot drops a MAV GPS whose gaps grow, REQUIREMENTS A1). The
estimator publishes its latest IMU-propagated solution into a slot whenever it has one; the sender
thread wakes on absolute deadlines (scheduler.py), reads whatever is latest, maps it to a
GpsReport (gps_report.py) and hands it to the link's encoder. Nothing on the estimator's side can
delay a tick, and a tick never waits for the estimator.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from terrafix.autopilot import constants as C
from terrafix.autopilot.gps_report import GpsReport, gps_report_from_solution
from terrafix.autopilot.scheduler import FixedRateTicker
from terrafix.measurements import NavSolution

log = logging.getLogger(__name__)
T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A thread-safe single-value mailbox: writers overwrite, readers get the latest."""

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: T | None = None

    def put(self, value: T) -> None:
        with self._lock:
            self._value = value

    def get(self) -> T | None:
        with self._lock:
            return self._value


@dataclass(frozen=True, slots=True)
class OutputStats:
    """What a position output has done since it started (a snapshot)."""

    sent: int
    sent_3d_fix: int
    sent_no_fix: int
    skipped_ticks: int
    send_errors: int
    last_report: GpsReport | None
    last_sent_mono_ns: int | None = None
    """Monotonic time the last report was handed to the link (capture-to-output latency)."""
    max_gap_ms: float = math.nan
    """Longest interval between two consecutive reports handed to the link."""


def _make_this_thread_realtime(priority: int) -> bool:
    """SCHED_FIFO for the calling thread (Linux applies sched_setscheduler(0, ...) to the
    calling thread). Why: under load the OS may run the sender's wake-up tens or hundreds of
    milliseconds late, and ArduPilot drops a GPS whose gaps grow; a real-time thread that
    sleeps between ticks costs the rest of the system nothing. The GIL it then needs is
    handed over within the interpreter's switch interval. Without the privilege it says so
    and runs at normal priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as exc:
        log.warning("GPS sender: real-time priority %d refused (%s); running at normal "
                    "priority", priority, exc)
        return False
    return True


class FixedRateGpsSender:
    """Thread that sends the latest solution as a GpsReport at a fixed rate."""

    def __init__(
        self,
        slot: LatestSlot[NavSolution],
        send_report: Callable[[GpsReport], None],
        *,
        rate_hz: float,
        stale_after_s: float = C.DEFAULT_STALE_AFTER_S,
        send_yaw: bool = False,
        on_stale: Callable[[float], None] | None = None,
        on_sent: Callable[[GpsReport, int], None] | None = None,
        name: str = "gps-sender",
        mono_clock: Callable[[], int] = time.monotonic_ns,
        utc_clock: Callable[[], int] = time.time_ns,
        realtime_priority: int = 0,
        valid_lag_s: float = 0.0,
    ) -> None:
        self._slot = slot
        self.valid_lag_s = valid_lag_s
        """Each report describes the aircraft this long before it is sent: the lag the
        autopilot subtracts from its arrival (gps_report's module docstring)."""
        self._rt_priority = realtime_priority
        self.realtime = False
        """The sender thread got its real-time priority (after start)."""
        self._send_report = send_report
        self._rate_hz = rate_hz
        self._stale_after_s = stale_after_s
        self._send_yaw = send_yaw
        self._on_stale = on_stale
        self._on_sent = on_sent
        """(report, monotonic ns it was made) after each send, on the sender thread: the
        flight recorder's record of every output, so rate and gaps are reviewable."""
        self._mono = mono_clock
        self._utc = utc_clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()
        self._sent = self._sent_3d = self._sent_no_fix = self._errors = 0
        self._last: GpsReport | None = None
        self._last_sent_ns: int | None = None
        self._max_gap_ns = 0
        self._ticker: FixedRateTicker | None = None
        self._stale_reported = False

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def stats(self) -> OutputStats:
        with self._lock:
            skipped = self._ticker.skipped if self._ticker is not None else 0
            return OutputStats(self._sent, self._sent_3d, self._sent_no_fix, skipped,
                               self._errors, self._last, self._last_sent_ns,
                               self._max_gap_ns / 1e6 if self._max_gap_ns else math.nan)

    def make_report(self) -> GpsReport:
        """The report this sender would send now (also used by replay to encode offline)."""
        mono = self._mono()
        utc = self._utc()
        return gps_report_from_solution(self._slot.get(), mono, utc,
                                        stale_after_s=self._stale_after_s,
                                        send_yaw=self._send_yaw,
                                        valid_lag_s=self.valid_lag_s)

    def _run(self) -> None:
        if self._rt_priority > 0:
            self.realtime = _make_this_thread_realtime(self._rt_priority)
        self._ticker = FixedRateTicker(self._rate_hz, clock=self._mono)
        while self._ticker.wait(self._stop) is not None:
            t_make_ns = self._mono()
            report = self.make_report()
            try:
                self._send_report(report)
            except Exception:
                with self._lock:
                    self._errors += 1
                log.exception("sending the GPS report failed")
                continue
            with self._lock:
                self._sent += 1
                if report.has_3d_fix:
                    self._sent_3d += 1
                else:
                    self._sent_no_fix += 1
                self._last = report
                if self._last_sent_ns is not None:
                    self._max_gap_ns = max(self._max_gap_ns, t_make_ns - self._last_sent_ns)
                self._last_sent_ns = t_make_ns
            if self._on_sent is not None:
                try:
                    self._on_sent(report, t_make_ns)
                except Exception:
                    log.exception("on_sent callback failed")
            self._check_stale(report)

    def _check_stale(self, report: GpsReport) -> None:
        """Say once per episode that the estimate went stale (REQUIREMENTS N10)."""
        stale = report.age_s > self._stale_after_s
        if stale and not self._stale_reported and self._slot.get() is not None:
            self._stale_reported = True
            if self._on_stale is not None:
                try:
                    self._on_stale(report.age_s)
                except Exception:
                    log.exception("on_stale callback failed")
        elif not stale:
            self._stale_reported = False
