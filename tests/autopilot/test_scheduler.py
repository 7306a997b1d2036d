"""Fixed-rate ticker: absolute deadlines (no drift from work time), skip instead of burst."""

import threading

from terrafix.autopilot.scheduler import FixedRateTicker


class FakeClock:
    """A clock that only moves when the ticker waits or the 'work' advances it."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


class AdvancingEvent(threading.Event):
    """Event whose wait(timeout) advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout=None):
        if timeout:
            self.clock.now += int(timeout * 1e9)
        return self.is_set()


def test_deadlines_stay_on_the_grid_despite_work_time():
    clock = FakeClock()
    t0 = clock.now
    ticker = FixedRateTicker(10.0, clock=clock)
    stop = AdvancingEvent(clock)
    deadlines = []
    for k in range(50):
        d = ticker.wait(stop)
        deadlines.append(d)
        clock.now += 37_000_000 if k % 3 else 12_000_000  # work of 12-37 ms per tick
    assert deadlines == [t0 + (k + 1) * 100_000_000 for k in range(50)]
    assert ticker.skipped == 0


def test_late_tick_is_served_immediately_and_next_deadline_does_not_move():
    clock = FakeClock()
    t0 = clock.now
    ticker = FixedRateTicker(10.0, clock=clock)
    stop = AdvancingEvent(clock)
    assert ticker.wait(stop) == t0 + 100_000_000
    clock.now = t0 + 330_000_000  # work overran: tick 2 (due 200 ms) is now 130 ms late
    # 130 ms late is more than one period (100 ms): tick 2 is skipped, tick 3 (300 ms) served now
    assert ticker.wait(stop) == t0 + 300_000_000
    assert clock.now == t0 + 330_000_000  # served at once, no sleep
    assert ticker.skipped == 1
    clock.now = t0 + 430_000_000  # 30 ms late for tick 4: served at once, not skipped
    assert ticker.wait(stop) == t0 + 400_000_000
    assert clock.now == t0 + 430_000_000
    assert ticker.skipped == 1
    assert ticker.wait(stop) == t0 + 500_000_000  # the grid did not move
    assert clock.now == t0 + 500_000_000


def test_stall_longer_than_a_period_skips_ticks_without_a_burst():
    clock = FakeClock()
    t0 = clock.now
    ticker = FixedRateTicker(10.0, clock=clock)
    stop = AdvancingEvent(clock)
    assert ticker.wait(stop) == t0 + 100_000_000
    clock.now = t0 + 650_000_000  # stalled: ticks at 200..600 ms are all past
    d = ticker.wait(stop)
    assert d == t0 + 600_000_000  # one tick now (the latest due), not five
    assert ticker.skipped == 4
    assert ticker.wait(stop) == t0 + 700_000_000


def test_stop_ends_the_wait():
    clock = FakeClock()
    ticker = FixedRateTicker(5.0, clock=clock)
    stop = AdvancingEvent(clock)
    stop.set()
    assert ticker.wait(stop) is None
