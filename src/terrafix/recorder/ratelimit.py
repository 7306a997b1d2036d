"""A minimum-interval gate with a count of what it held back.

Used where a repeated condition must be reported without flooding: the writer's disk errors
(R2: rate-limited errors) and the log handler's recursion notices. The clock is injected so
tests drive it deterministically.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """`allow()` is True at most once per `interval_s`; `suppressed` counts the refusals since
    the last allowed call (read it when allowed to say "N more since")."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next = float("-inf")
        self.suppressed = 0

    def allow(self) -> bool:
        now = self._clock()
        if now >= self._next:
            self._next = now + self.interval_s
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n
