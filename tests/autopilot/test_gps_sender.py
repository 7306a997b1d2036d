"""The fixed-rate sender: reads the latest solution at each tick, reports staleness once per
episode and turns a stale solution into an explicit no-fix; GPS_INPUT field encoding."""

from __future__ import annotations

import os
import threading
import time

from pymavlink.dialects.v20 import all as mavlink

from terrafix.autopilot import constants as C
from terrafix.autopilot.ardupilot import encode_gps_input
from terrafix.autopilot.gps_report import gps_report_from_solution
from terrafix.autopilot.gps_sender import FixedRateGpsSender, LatestSlot

from .helpers import solution


def test_stale_solution_becomes_no_fix_and_is_reported_once():
    slot = LatestSlot()
    reports, stale_calls = [], []
    lock = threading.Lock()

    def sink(r):
        with lock:
            reports.append(r)

    sender = FixedRateGpsSender(slot, sink, rate_hz=10.0, stale_after_s=0.3,
                                on_stale=stale_calls.append)
    slot.put(solution(time.monotonic_ns()))
    sender.start()
    time.sleep(1.0)  # the solution is never refreshed: stale after 0.3 s
    slot.put(solution(time.monotonic_ns()))  # fresh again: a new episode may be reported later
    time.sleep(0.25)
    sender.stop()
    with lock:
        fixes = [r.fix_type for r in reports]
    assert fixes[0] == C.GPS_FIX_TYPE_3D
    assert C.GPS_FIX_TYPE_NO_FIX in fixes
    first_no_fix = fixes.index(C.GPS_FIX_TYPE_NO_FIX)
    assert all(f == C.GPS_FIX_TYPE_3D for f in fixes[:first_no_fix])
    assert fixes[-1] == C.GPS_FIX_TYPE_3D  # the refreshed solution is a fix again
    assert len(stale_calls) == 1 and stale_calls[0] > 0.3
    st = sender.stats()
    assert st.sent == len(reports) and st.sent_no_fix == fixes.count(C.GPS_FIX_TYPE_NO_FIX)
    # ~12 ticks in ~1.25 s; counts only, generous margin
    assert 6 <= st.sent <= 20


def test_no_solution_at_all_sends_no_fix_without_a_stale_alarm():
    slot = LatestSlot()
    reports, stale_calls = [], []
    sender = FixedRateGpsSender(slot, reports.append, rate_hz=10.0, on_stale=stale_calls.append)
    sender.start()
    time.sleep(0.35)
    sender.stop()
    assert reports and all(r.fix_type == C.GPS_FIX_TYPE_NO_FIX for r in reports)
    assert stale_calls == []


def test_gps_input_fields():
    now = time.monotonic_ns()
    r = gps_report_from_solution(solution(now, lat=-33.8688197, lon=151.2092955, yaw_rad=0.0),
                                 now, 1_750_000_000_123_456_789, send_yaw=True)
    msg = encode_gps_input(r, gps_id=1)
    back = mavlink.MAVLink(None).parse_buffer(msg.pack(mavlink.MAVLink(None, 1, 191)))[0]
    assert back.get_type() == "GPS_INPUT"
    assert (back.lat, back.lon) == (-338688197, 1512092955)
    assert back.yaw == 36000  # north is 36000; 0 would mean "not provided"
    assert back.gps_id == 1 and back.fix_type == 3
    assert (back.time_week, back.time_week_ms) == (r.gps_week, r.gps_week_ms)
    assert back.time_usec == 1_750_000_000_123_456
    assert back.satellites_visible == r.satellites


def _may_use_realtime() -> bool:
    """Whether this process may put a thread under SCHED_FIFO (root or CAP_SYS_NICE)."""
    result = []

    def probe():
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            result.append(True)
        except (AttributeError, OSError):
            result.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return result[0]


def test_sender_thread_runs_real_time_when_allowed_and_says_so_otherwise(caplog):
    seen = []

    def sink(r):
        if not seen:
            seen.append(os.sched_getscheduler(0))

    sender = FixedRateGpsSender(LatestSlot(), sink, rate_hz=10.0, realtime_priority=5)
    sender.start()
    time.sleep(0.3)
    sender.stop()
    allowed = _may_use_realtime()
    assert sender.realtime is allowed
    assert seen and (seen[0] == os.SCHED_FIFO) is allowed
    if not allowed:
        assert "real-time priority 5 refused" in caplog.text
    # the main thread keeps its normal policy
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_every_send_is_reported_to_on_sent_with_its_time_and_a_failing_hook_stops_nothing():
    slot = LatestSlot()
    sent, seen = [], []

    def hook(report, t_ns):
        seen.append((report, t_ns))
        if len(seen) == 2:
            raise RuntimeError("a broken recorder hook")

    sender = FixedRateGpsSender(slot, sent.append, rate_hz=10.0, on_sent=hook)
    slot.put(solution(time.monotonic_ns()))
    sender.start()
    time.sleep(0.6)
    sender.stop()
    assert len(seen) == len(sent) == sender.stats().sent >= 3
    assert [r for r, _ in seen] == sent  # the very reports handed to the link, in order
    times = [t for _, t in seen]
    assert times == sorted(times) and sender.stats().last_sent_mono_ns == times[-1]
