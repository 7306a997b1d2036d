"""Python logging into the flight log (R3: warnings and errors are recorded too).

The handler forwards WARNING and above to the /fdr/log topic through an ordinary producer, so
a log storm can overrun its queue but never block the thread that logs. A thread-local guard
stops recursion: if recording a log record makes something log again on the same thread (a
logging filter, a faulty formatter, a future recorder change), the inner record is refused and
counted, and an event says so at most once per second, instead of looping forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from terrafix.recorder.producer import Producer
from terrafix.recorder.ratelimit import RateLimiter
from terrafix.recorder.schemas import record_of
from terrafix.recorder.topics import EventKind, LogEntry


class RecorderLogHandler(logging.Handler):
    """Records log records of `level` and above. Get it from `FlightRecorder.log_handler()`."""

    def __init__(
        self,
        producer: Producer,
        event: Callable[[str, str, int, int, str], None],
        level: int = logging.WARNING,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        super().__init__(level)
        self._clock_ns = clock_ns
        self._producer = producer
        self._event = event
        self._local = threading.local()
        self._notice = RateLimiter(1.0)
        self.recursions = 0

    def handle(self, record: logging.LogRecord) -> bool:
        """The guard wraps filtering too: a filter or formatter may log as well."""
        if getattr(self._local, "busy", False):
            self.recursions += 1
            if self._notice.allow():
                self._event(
                    EventKind.LOG_RECURSION,
                    self._producer.name,
                    1,
                    self.recursions,
                    f"refused a nested log record from {record.name}",
                )
            return False
        self._local.busy = True
        try:
            return bool(super().handle(record))
        finally:
            self._local.busy = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception as exc:  # bad %-args: keep the template and say so
            message = f"{record.msg!r} (unformattable args: {exc})"
        payload = record_of(LogEntry(
            level=record.levelname,
            levelno=record.levelno,
            logger=record.name,
            message=message,
            thread=record.threadName or "",
            where=f"{record.pathname}:{record.lineno}",
            exception=(
                logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
            ),
        ))
        # Log records carry wall time; the flight log's clock is the recorder's (monotonic).
        self._producer.record(self._clock_ns(), payload)
