"""Fixed-rate schedules with absolute deadlines.

Why not `sleep(period)` after each send: the time spent encoding and sending (and any GIL wait
behind the reader thread) would add to every period, so the rate drifts below nominal and jitter
accumulates. ArduPilot declares a MAV GPS unhealthy when the average gap exceeds ~215 ms or two
consecutive gaps exceed ~245 ms (REQUIREMENTS A1), so the sender keeps the schedule
t0 + k * period: a late tick is served at once and the next deadline does not move. When the
process was stalled for more than a whole period the missed ticks are skipped (counted), never
sent in a burst: a burst would not make up for a gap in the FC's eyes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class FixedRateTicker:
    """Tick k is due at t0 + k * period (monotonic ns). Not thread-safe: one waiting thread."""

    __slots__ = ("_clock", "_k", "_t0", "period_ns", "skipped")

    def __init__(self, rate_hz: float, clock: Callable[[], int] = time.monotonic_ns) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.period_ns = round(1e9 / rate_hz)
        self._clock = clock
        self._t0 = clock()
        self._k = 0
        self.skipped = 0

    def wait(self, stop: threading.Event) -> int | None:
        """Block until the next deadline; return it (monotonic ns), or None once `stop` is set."""
        self._k += 1
        deadline = self._t0 + self._k * self.period_ns
        now = self._clock()
        late = now - deadline
        if late > self.period_ns:
            missed = late // self.period_ns
            self._k += missed
            deadline += missed * self.period_ns
            self.skipped += missed
        remaining = deadline - now
        if remaining > 0 and stop.wait(remaining / 1e9):
            return None
        return None if stop.is_set() else deadline
