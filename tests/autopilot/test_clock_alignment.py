"""FC time -> companion monotonic time by a windowed min-filter on (arrival - FC time)."""

import itertools

import numpy as np
import pytest

from terrafix.autopilot.clock_alignment import FcClockAligner

OFFSET = 7_000_000_000_000  # companion clock is 7000 s ahead of the FC's boot clock


def test_recovers_the_offset_from_the_least_delayed_message():
    rng = np.random.default_rng(3)
    a = FcClockAligner(window_s=20.0)
    errs = []
    for k in range(2000):  # 10 s at 200 Hz
        fc = k * 5_000_000
        latency = int(rng.exponential(4e6)) + 300_000  # >= 0.3 ms, mean ~4 ms, long tail
        t = a.to_companion_ns(fc, fc + OFFSET + latency)
        errs.append(t - (fc + OFFSET))
    # after a second of data the estimate is within the smallest latency seen (~0.3 ms)
    late = np.abs(np.array(errs[200:]))
    assert late.max() < 1_000_000
    # a plain arrival stamp would be off by the latency itself (mean ~4 ms)
    assert np.mean(late) < 0.25 * 4e6


def test_aligned_time_is_never_after_arrival():
    rng = np.random.default_rng(4)
    a = FcClockAligner()
    for k in range(500):
        fc = k * 10_000_000
        arrival = fc + OFFSET + int(rng.uniform(0, 20e6))
        assert a.to_companion_ns(fc, arrival) <= arrival


def test_follows_clock_drift_within_the_window():
    a = FcClockAligner(window_s=5.0)
    drift = 100e-6  # FC crystal 100 ppm slow
    worst = 0
    for k in range(12_000):  # 120 s at 100 Hz
        true_t = k * 10_000_000
        fc = int(true_t * (1 - drift))
        t = a.to_companion_ns(fc, true_t + OFFSET + 1_000_000)
        if k > 1000:
            worst = max(worst, abs(t - (true_t + OFFSET)))
    # the error stays at the 1 ms latency plus drift over one window (100 ppm * 5 s = 0.5 ms)
    assert worst < 1_700_000
    # a frozen first minimum would be 12 ms off after 120 s
    frozen_error = drift * 120e9
    assert worst < frozen_error / 5


def test_in_order_samples_stay_strictly_increasing_when_the_offset_improves():
    a = FcClockAligner()
    out = []
    for k in range(200):
        fc = k * 5_000_000  # 200 Hz
        latency = 30_000_000 if k < 100 else 500_000  # a congested start, then a fast link
        out.append(a.to_companion_ns(fc, fc + OFFSET + latency))
    assert all(b > a_ for a_, b in itertools.pairwise(out))
    # and the estimate has converged to the fast link
    assert out[-1] == 199 * 5_000_000 + OFFSET + 500_000


def test_fc_reboot_restarts_the_filter():
    a = FcClockAligner()
    for k in range(100):
        fc = 500_000_000_000 + k * 10_000_000
        a.to_companion_ns(fc, OFFSET + fc)
    # the FC reboots: its clock starts again near zero while ours keeps going
    arrival = OFFSET + 600_000_000_000
    t = a.to_companion_ns(1_000_000, arrival)
    assert a.resets == 1
    assert t == arrival


def test_rejects_non_positive_window():
    with pytest.raises(ValueError):
        FcClockAligner(window_s=0.0)
