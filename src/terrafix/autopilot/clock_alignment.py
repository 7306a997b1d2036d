"""Map flight-controller timestamps onto the companion's monotonic clock.

Why: IMU, attitude and GNSS samples must be fused with camera frames stamped on the companion's
monotonic clock. Stamping a sample with its arrival time would add the link's variable latency
(serial buffering, UDP scheduling: milliseconds, sometimes tens) to every sample; the FC's own
timestamps are precise but on another clock.

How: every message gives one observation of  d = arrival - fc_time = offset + latency,  with
latency >= 0. The smallest d seen is the best bound on the offset (the least-delayed message), so
the offset estimate is the minimum of d over a sliding window (CLOCK_OFFSET_WINDOW_S). The window
lets the estimate follow crystal drift between the two clocks (50 ppm is 1 ms per 20 s) instead of
freezing the first minimum forever. Because the current observation is in the window, an aligned
time is never later than its own arrival. A FC reboot (its clock jumps backwards) restarts the
filter.

Monotonicity: when a faster message lowers the offset estimate by more than the FC's sample
spacing, plain fc_time + offset would step backwards. For messages that arrive in FC-time order
(one FC stream: the normal case) the output is kept strictly increasing instead, so the estimator
never sees an IMU sample older than its predecessor; the correction is absorbed over the next
samples. Out-of-order FC times (interleaved message types) are mapped as they are.
"""

from __future__ import annotations

from collections import deque

from terrafix.autopilot import constants as C

_REBOOT_JUMP_NS = 1_000_000_000
"""An FC clock going backwards by more than this is a reboot, not reordering."""


class FcClockAligner:
    """Min-filter estimate of (companion monotonic - FC clock) for one FC time domain.

    Not thread-safe: the link's reader thread is its only user.
    """

    __slots__ = ("_last_fc_ns", "_last_out_ns", "_samples", "_window_ns", "resets")

    def __init__(self, window_s: float = C.CLOCK_OFFSET_WINDOW_S) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._window_ns = int(window_s * 1e9)
        # (arrival_ns, offset_ns) with strictly increasing offsets: a monotonic deque, so the
        # window minimum is always at the front (amortised O(1) per sample).
        self._samples: deque[tuple[int, int]] = deque()
        self._last_fc_ns: int | None = None
        self._last_out_ns: int | None = None
        self.resets = 0

    @property
    def offset_ns(self) -> int | None:
        """Current estimate of companion_monotonic - fc_time, or None before the first sample."""
        return self._samples[0][1] if self._samples else None

    def to_companion_ns(self, fc_time_ns: int, arrival_ns: int) -> int:
        """Companion monotonic time of an FC timestamp that arrived at `arrival_ns`."""
        last_fc = self._last_fc_ns
        if last_fc is not None and fc_time_ns < last_fc - _REBOOT_JUMP_NS:
            self._samples.clear()
            self._last_out_ns = None
            last_fc = None
            self.resets += 1
        self._last_fc_ns = fc_time_ns if last_fc is None else max(last_fc, fc_time_ns)
        offset = arrival_ns - fc_time_ns
        while self._samples and self._samples[-1][1] >= offset:
            self._samples.pop()
        self._samples.append((arrival_ns, offset))
        horizon = arrival_ns - self._window_ns
        while self._samples[0][0] < horizon:
            self._samples.popleft()
        out = fc_time_ns + self._samples[0][1]
        if last_fc is not None and fc_time_ns > last_fc and self._last_out_ns is not None:
            out = max(out, self._last_out_ns + 1)
        if last_fc is None or fc_time_ns > last_fc:
            self._last_out_ns = out
        return out
