"""Policies (R3): thumbnails <= 0.1 Hz with coalesced counts, tile snapshots capped per flight,
warnings and errors of the logs recorded with a recursion guard."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pytest

from terrafix.recorder import (
    FailedMatchThumbnails,
    FlightLog,
    FlightRecorder,
    RecorderPolicyError,
    TileSnapshots,
)
from terrafix.recorder.policies import THUMBNAIL_TOPIC, TILE_SNAPSHOT_TOPIC
from terrafix.recorder.ratelimit import RateLimiter
from terrafix.recorder.topics import EVENTS_TOPIC, LOG_TOPIC

Factory = Callable[..., FlightRecorder]
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 500
S = 1_000_000_000


def _events(rec: FlightRecorder, kind: str) -> list[dict[str, object]]:
    return [
        m.payload()
        for m in FlightLog(rec.folder).messages([EVENTS_TOPIC])
        if m.payload()["kind"] == kind
    ]


def test_failed_match_thumbnails_at_most_one_per_10_s(open_recorder: Factory) -> None:
    rec = open_recorder()
    thumbs = FailedMatchThumbnails(rec)
    # 3 Hz of failed matches for 60 s -> one thumbnail per 10 s, the rest coalesced
    stored = [thumbs.offer(int(k * S / 3), JPEG) for k in range(180)]
    rec.close()
    assert sum(stored) == 6 and thumbs.coalesced == 174
    times = [m.t_ns for m in FlightLog(rec.folder).messages([THUMBNAIL_TOPIC])]
    assert times == [int(k * S / 3) for k in range(0, 180, 30)]
    assert all(b - a >= 10 * S for a, b in itertools.pairwise(times))
    coalesced = _events(rec, "coalesced")
    assert sum(e["count"] for e in coalesced) == 174  # every skipped one is counted
    assert coalesced[-1]["total"] == 174
    msg = next(iter(FlightLog(rec.folder).messages([THUMBNAIL_TOPIC]))).payload()
    assert msg["format"] == "jpeg" and msg["timestamp"] == {"sec": 0, "nsec": 0}


def test_thumbnails_must_be_small_jpegs(open_recorder: Factory) -> None:
    thumbs = FailedMatchThumbnails(open_recorder())
    with pytest.raises(RecorderPolicyError, match="JPEG"):
        thumbs.offer(0, b"\x89PNG....")
    with pytest.raises(RecorderPolicyError, match="at most"):
        thumbs.offer(0, b"\xff\xd8\xff" + b"\x00" * 200_000)


def test_tile_snapshots_are_capped_per_flight(open_recorder: Factory) -> None:
    rec = open_recorder()
    tiles = TileSnapshots(rec, max_per_flight=5)
    results = [tiles.offer(k * S, f"19/{k}/7", JPEG, sigma_m=2.5) for k in range(12)]
    rec.close()
    assert results == [True] * 5 + [False] * 7
    stored = [m.payload()["tile"] for m in FlightLog(rec.folder).messages([TILE_SNAPSHOT_TOPIC])]
    assert stored == [f"19/{k}/7" for k in range(5)]
    capped = _events(rec, "capped")
    assert capped[0]["count"] == 1 and capped[-1]["total"] == 7


def test_log_handler_records_warnings_and_errors_only(open_recorder: Factory) -> None:
    rec = open_recorder()
    logger = logging.getLogger("test.recorder.handler")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = rec.log_handler()
    logger.addHandler(handler)
    try:
        logger.info("not recorded")
        logger.warning("spoofed GNSS rejected: jump %d m", 412)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("matcher failed")
    finally:
        logger.removeHandler(handler)
    rec.close()
    logs = [m.payload() for m in FlightLog(rec.folder).messages([LOG_TOPIC])]
    assert [(r["level"], r["message"]) for r in logs] == [
        ("WARNING", "spoofed GNSS rejected: jump 412 m"),
        ("ERROR", "matcher failed"),
    ]
    assert "ValueError: boom" in logs[1]["exception"]


def test_log_handler_recursion_guard(open_recorder: Factory) -> None:
    rec = open_recorder()
    logger = logging.getLogger("test.recorder.recursion")
    logger.propagate = False
    handler = rec.log_handler()

    class Noisy(logging.Filter):
        """A filter that logs from inside the handler: without a guard, infinite recursion."""

        def filter(self, record: logging.LogRecord) -> bool:
            logger.warning("nested from filter")
            return True

    handler.addFilter(Noisy())
    logger.addHandler(handler)
    try:
        logger.warning("outer")
    finally:
        logger.removeHandler(handler)
    rec.close()
    assert handler.recursions >= 1
    msgs = [m.payload()["message"] for m in FlightLog(rec.folder).messages([LOG_TOPIC])]
    assert msgs == ["outer"]
    assert _events(rec, "log_recursion")[0]["total"] >= 1


def test_rate_limiter_counts_what_it_holds_back() -> None:
    now = [0.0]
    limiter = RateLimiter(10.0, clock=lambda: now[0])
    allowed = []
    for k in range(100):  # one call per second for 100 s
        now[0] = float(k)
        allowed.append(limiter.allow())
    assert sum(allowed) == 10
    assert limiter.take_suppressed() == 90 - 0 and limiter.suppressed == 0
