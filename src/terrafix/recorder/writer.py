"""`FlightRecorder`: per-flight producers, one writer thread, segments, capacity and disk-full.

Life of a record: a component's `Producer.record` serialises and frames it into that
producer's bounded queue (never blocking); the single writer thread wakes every
`poll_interval_s` (or at once on `flush`), drains every queue into one batch, appends the batch
to the current segment with one `os.write`, and rotates the segment by size. So the hot path
pays one orjson call and one deque append, and all I/O happens on one thread.

What "flushed" means: `flush()` returns True once everything enqueued before the call has been
handed to the kernel (it survives a kill -9 of this process; R4). Power loss is covered by
`fdatasync` every `fsync_interval_s`, at every segment end and on `flush(sync=True)`.

Capacity (R2): the folder never holds more than `max_flight_bytes`. Before a new segment
starts, the oldest closed segments are deleted until the new one fits, each deletion leaving a
`rollover` event in the stream and counted in the footer. Every segment repeats the flight
header, so the header survives any rollover.

Full disk (R2): a failed write is cut back to the last record boundary, the batch is counted as
lost per producer, the reserve file (kept from the start for this moment) is released so the
`disk_full` event and later the footer still fit, the ground station is alerted through
`on_disk_full` exactly once per flight, errors are logged at most once per
`disk_error_log_interval_s`, and writing is retried every `disk_retry_interval_s`. Producers
see none of it.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import errno
import logging
import os
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

from terrafix import __version__
from terrafix.recorder.errors import RecorderError
from terrafix.recorder.flight import FlightFooter, FlightHeader, ProducerCounters
from terrafix.recorder.logs import RecorderLogHandler
from terrafix.recorder.producer import Producer, encode_payload
from terrafix.recorder.ratelimit import RateLimiter
from terrafix.recorder.schemas import is_real_schema, record_of
from terrafix.recorder.segments import SEGMENT_GLOB, ChannelDecl, SegmentFile, segment_name
from terrafix.recorder.topics import (
    EVENT_SCHEMA,
    EVENTS_TOPIC,
    FOOTER_METADATA,
    HEADER_METADATA,
    LOG_SCHEMA,
    LOG_TOPIC,
    RESERVED_PREFIX,
    EventKind,
    RecorderEvent,
)

log = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30
RESERVE_NAME = ".fdr-reserve"
LIBRARY = f"terrafix-fdr/{__version__}"
DISK_FULL_ALERT = "FDR DISK FULL: recording degraded"
#: log_time of a framed Message record: after opcode u8, length u64, channel u16, sequence u32.
_LOG_TIME = struct.Struct("<15xQ").unpack_from
_POPLEFT = deque.popleft
_TOPIC_RE = re.compile(r"^/?[A-Za-z0-9_][A-Za-z0-9_./-]*$")


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """Recorder tuning. Defaults are the flight values; tests shrink the sizes."""

    segment_bytes: int = 256 * MiB  # a segment is closed at the first batch past this size
    max_flight_bytes: int = 64 * GiB  # folder cap; oldest closed segments roll over beyond it
    queue_capacity: int = 8192  # records per producer queue (drop-oldest beyond)
    max_record_bytes: int = 1 * MiB  # a bigger encoded record is a programming error
    batch_bytes: int = 4 * MiB  # one os.write at most this much (segment rotation granularity)
    poll_interval_s: float = 0.01  # writer wake-up period when nobody calls flush()
    fsync_interval_s: float = 1.0  # fdatasync period (power-loss window)
    reserve_bytes: int = 1 * MiB  # disk kept free for the disk_full event and the footer
    disk_retry_interval_s: float = 5.0  # in degraded mode, try writing again this often
    disk_error_log_interval_s: float = 10.0  # at most one error log per interval while degraded

    def __post_init__(self) -> None:
        for name in ("segment_bytes", "queue_capacity", "max_record_bytes", "batch_bytes"):
            if getattr(self, name) <= 0:
                raise RecorderError(f"RecorderConfig.{name}={getattr(self, name)}, expected > 0")
        floor = 2 * (self.segment_bytes + self.batch_bytes) + MiB
        if self.max_flight_bytes < floor:
            raise RecorderError(
                f"RecorderConfig.max_flight_bytes={self.max_flight_bytes}, expected >= {floor} "
                "(two segments plus a batch each, so one closed segment can always roll over)"
            )
        if self.reserve_bytes < 0 or self.poll_interval_s <= 0:
            raise RecorderError(
                f"RecorderConfig reserve_bytes={self.reserve_bytes} / poll_interval_s="
                f"{self.poll_interval_s}: expected >= 0 / > 0"
            )


class _State:
    """Writer-side bookkeeping of one producer (touched by the writer thread only)."""

    __slots__ = ("decl", "direct", "dropped", "lost", "popped", "producer", "rejected", "written")

    def __init__(self, producer: Producer, decl: ChannelDecl) -> None:
        self.producer = producer
        self.decl = decl
        self.popped = 0  # taken from the queue
        self.direct = 0  # framed by the writer itself (events)
        self.written = 0
        self.dropped = 0
        self.lost = 0
        self.rejected = 0

    def counters(self) -> ProducerCounters:
        p = self.producer
        return ProducerCounters(
            enqueued=self.popped + self.direct + self.dropped + len(p.queue),
            written=self.written,
            dropped=self.dropped,
            lost_disk=self.lost,
            rejected=self.rejected,
            late=p.late,
        )


class _Batch:
    """Framed records about to be written together, with whose they are.

    Everything per record is done by C-level builtins over the whole list (`sum(map(len))`,
    `map(unpack_from)`, `min`, `max`, `b"".join`): the writer runs no Python bytecode per
    record, so its share of the GIL stays small next to the producers'.
    """

    __slots__ = ("parts", "shares", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.shares: list[tuple[_State, int, int, int]] = []  # state, count, t_min, t_max

    def add(self, state: _State, items: list[bytes], size: int) -> None:
        """Add complete Message records of one producer (`size`: their total length)."""
        self.parts += items
        self.size += size
        times = list(map(_LOG_TIME, items))  # 1-tuples (log_time,) read back from the heads
        self.shares.append((state, len(items), min(times)[0], max(times)[0]))

    def add_one(self, state: _State, t_ns: int, framed: bytes) -> None:
        self.parts.append(framed)
        self.size += len(framed)
        self.shares.append((state, 1, t_ns, t_ns))


class _FlushRequest:
    __slots__ = ("done", "ok", "sync")

    def __init__(self, sync: bool) -> None:
        self.sync = sync
        self.ok = False
        self.done = threading.Event()


class FlightRecorder:
    """The flight data recorder of one flight, writing into `folder`.

    Open it once per flight (the folder must hold no segments yet), create one producer per
    component with `producer(name, schema)`, and `close()` it after landing; `clean_footer`
    then tells the upload that the log is complete. Usable as a context manager.

    flight_id, config_hash, software_version, key_fingerprints: the flight header (every
    segment). on_disk_full(message): the ground-station alert, called once per flight from the
    writer thread when a write first fails (keep it short; producers never wait for it).
    clock_ns: the monotonic clock of the recorder's own records (events, log records).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        flight_id: str,
        config_hash: str,
        software_version: str = __version__,
        key_fingerprints: Mapping[str, str] | None = None,
        config: RecorderConfig | None = None,
        on_disk_full: Callable[[str], None] | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if not flight_id or not re.fullmatch(r"[A-Za-z0-9_.:-]+", flight_id):
            raise RecorderError(f"flight_id {flight_id!r}: expected [A-Za-z0-9_.:-]+")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.folder.glob(SEGMENT_GLOB))
        if existing:
            raise RecorderError(
                f"{self.folder}: already holds {existing[0].name}; expected a new, empty "
                "flight folder (a flight log is written once)"
            )
        self.config = config or RecorderConfig()
        self._clock_ns = clock_ns
        self.header = FlightHeader(
            flight_id=flight_id,
            software_version=software_version,
            config_hash=config_hash,
            start_utc=_utc_now(),
            start_t_ns=clock_ns(),
            key_fingerprints=dict(key_fingerprints or {}),
        )
        self._on_disk_full = on_disk_full
        self._registry_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._states: list[_State] = []
        self._by_name: dict[str, _State] = {}
        self._decls: list[ChannelDecl] = []
        self._flush_requests: list[_FlushRequest] = []
        self._close_hooks: list[Callable[[], None]] = []
        self._wake = threading.Event()
        self._stopping = False
        self._footer: FlightFooter | None = None

        # writer-thread state
        self._seg: SegmentFile | None = None
        self._seg_index = 0
        self._closed_segments: list[tuple[str, int, int]] = []  # name, bytes, messages
        self._bytes_written = 0
        self._rollovers = 0
        self._rolled_over_records = 0
        self._degraded = False
        self._degraded_episodes = 0
        self._unwritten_disk_full: tuple[int, str] | None = None  # (episode, detail)
        self._episode_lost = 0
        self._alerted = False
        self._next_retry = 0.0
        self._last_sync = time.monotonic()
        self._error_limiter = RateLimiter(self.config.disk_error_log_interval_s)
        self._writer_errors = 0
        self._losses_at_flush = 0  # drops + disk losses when the last flush completed
        self._seg_declared = 0  # how many of self._decls the current segment has declared

        self._events = self._register(EVENTS_TOPIC, EVENT_SCHEMA, None)
        self._reserve_path = self.folder / RESERVE_NAME
        self._make_reserve()
        try:
            self._open_segment()
        except OSError as exc:  # a full disk at take-off: degrade, never crash
            self._on_disk_error(exc, "opening the first segment")
        self._thread = threading.Thread(target=self._run, name="fdr-writer", daemon=True)
        self._thread.start()
        atexit.register(self._close_at_exit)

    # ----------------------------------------------------------------- producer-facing API

    def producer(
        self, name: str, schema: Mapping[str, Any], *, capacity: int | None = None
    ) -> Producer:
        """The producer for topic `name` with JSON schema `schema` (a dict).

        Asking again for the same name with the same schema returns the same producer; a
        different schema for an existing name is a programming error (RecorderError).
        """
        if isinstance(name, str) and name.startswith(RESERVED_PREFIX):
            raise RecorderError(f"topic {name!r}: the {RESERVED_PREFIX} prefix is reserved")
        return self._register(name, schema, capacity).producer

    def log_handler(self, level: int = logging.WARNING) -> RecorderLogHandler:
        """A logging.Handler recording `level` and above (R3) on the /fdr/log topic."""
        return RecorderLogHandler(
            self._register(LOG_TOPIC, LOG_SCHEMA, None).producer,
            self.event,
            level,
            self._clock_ns,
        )

    def event(self, kind: str, producer: str, count: int, total: int, detail: str = "") -> None:
        """Put a bookkeeping event on /fdr/events (used by the policy helpers). Never raises."""
        self._events.producer.record(
            self._clock_ns(), record_of(RecorderEvent(kind, producer, count, total, detail)))

    def on_close(self, hook: Callable[[], None]) -> None:
        """Run `hook` at the start of close(), while producers still accept records."""
        self._close_hooks.append(hook)

    def flush(self, timeout_s: float | None = None, sync: bool = False) -> bool:
        """Block until everything enqueued before this call is written (or `timeout_s`).

        True when it all reached the kernel (and the disk too with `sync=True`). False when the
        recorder is degraded or closed, the writer is gone, the timeout expired, or any record
        was dropped (overrun) or lost (disk) since the previous flush completed: then something
        enqueued before this call may be missing, and the stream's events say what. Never
        raises.
        """
        if self._footer is not None or not self._thread.is_alive():
            return False
        req = _FlushRequest(sync)
        self._flush_requests.append(req)
        self._wake.set()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not req.done.wait(0.05):
            if not self._thread.is_alive():
                return False
            if deadline is not None and time.monotonic() > deadline:
                return False
        return req.ok

    def counters(self) -> dict[str, ProducerCounters]:
        """Per-topic counters so far (exact after close)."""
        with self._registry_lock:
            states = list(self._states)
        return {s.producer.name: s.counters() for s in states}

    @property
    def degraded(self) -> bool:
        """True while writes are failing (full disk or I/O error)."""
        return self._degraded

    def close(self, timeout_s: float = 60.0) -> FlightFooter:
        """Drain everything, write the footer with the counters and the clean-shutdown flag.

        Idempotent. Never raises for disk problems: a footer that could not be written leaves
        `clean_shutdown` False in the returned counters and no footer on disk.
        """
        with self._close_lock:
            if self._footer is not None:
                return self._footer
            for hook in self._close_hooks:
                try:
                    hook()
                except Exception:
                    log.exception("recorder close hook %r failed", hook)
            with self._registry_lock:
                for s in self._states:
                    s.producer.close()
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RecorderError(
                    f"{self.folder}: writer still running after {timeout_s} s; expected to "
                    "drain and stop"
                )
            with contextlib.suppress(Exception):
                atexit.unregister(self._close_at_exit)
            assert self._footer is not None
            return self._footer

    def __enter__(self) -> FlightRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------- registration

    def _register(self, name: str, schema: Mapping[str, Any], capacity: int | None) -> _State:
        if not isinstance(name, str) or not _TOPIC_RE.match(name):
            raise RecorderError(f"topic {name!r}: expected [A-Za-z0-9_./-]+ (MCAP topic)")
        if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
            raise RecorderError(
                f"schema for {name!r}: expected a JSON schema dict of type 'object', "
                f"got {schema!r:.80}"
            )
        if not is_real_schema(schema):
            raise RecorderError(
                f"schema for {name!r}: expected the properties of its records (a schema made "
                f"by terrafix.recorder.schemas from the record's class), got {schema!r:.80}"
            )
        schema_json = encode_payload(dict(schema))
        with self._registry_lock:
            state = self._by_name.get(name)
            if state is not None:
                if state.decl.schema_json != schema_json:
                    raise RecorderError(
                        f"topic {name!r} already has another schema; expected the same "
                        "schema for every producer(name) call"
                    )
                return state
            if self._footer is not None or self._stopping:
                raise RecorderError(f"{self.folder}: recorder is closed; expected an open one")
            decl = ChannelDecl.make(
                len(self._decls) + 1, name, str(schema.get("title", name)), schema_json
            )
            producer = Producer(
                name,
                decl.channel_id,
                capacity or self.config.queue_capacity,
                self.config.max_record_bytes,
            )
            state = _State(producer, decl)
            self._decls.append(decl)
            self._states.append(state)
            self._by_name[name] = state
            return state

    # ------------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        cfg = self.config
        while True:
            self._wake.wait(cfg.poll_interval_s)
            self._wake.clear()
            stopping = self._stopping
            requests, self._flush_requests = self._flush_requests, []
            try:
                self._cycle(sync=any(r.sync for r in requests))
            except Exception:  # the writer must outlive its own bugs; producers keep going
                self._writer_errors += 1
                log.exception("flight recorder writer cycle failed")
            if requests:
                losses = self._losses()
                ok = not self._degraded and losses == self._losses_at_flush
                self._losses_at_flush = losses
                for r in requests:
                    r.ok = ok
                    r.done.set()
            if stopping:
                break
        try:
            self._cycle(sync=False)  # anything that raced with close()
            self._finish()
        except Exception:
            self._writer_errors += 1
            log.exception("flight recorder could not finish")
            self._footer = self._make_footer(clean=False)
        for r in self._flush_requests:
            r.done.set()

    def _cycle(self, sync: bool) -> None:
        with self._registry_lock:
            states = list(self._states)
        batch = _Batch()
        limit = self.config.batch_bytes
        for st in states:
            p = st.producer
            ticks = p.drop_ticks
            n = len(ticks)
            if n:
                del ticks[:n]
                st.dropped += n
                self._frame_event(
                    batch, EventKind.DROPPED, p.name, n, st.dropped, "queue overrun (oldest)"
                )
            rejects = p.rejects
            n = len(rejects)
            if n:
                last = rejects[n - 1]
                del rejects[:n]
                st.rejected += n
                self._frame_event(batch, EventKind.UNSERIALISABLE, p.name, n, st.rejected, last)
            q = p.queue
            n = len(q)
            if n:
                items: list[bytes] = []
                # One C-level call pops all n (no bytecode runs in between, so no producer
                # interleaves); IndexError only if a producer dropped one just before it, and
                # list.extend keeps what was popped until then.
                with contextlib.suppress(IndexError):
                    items.extend(map(_POPLEFT, repeat(q, n)))
                n = len(items)
                if not n:
                    continue
                st.popped += n
                total = sum(map(len, items))
                if batch.size + total <= limit:
                    batch.add(st, items, total)
                    continue
                # Cut into batches of about batch_bytes (segments rotate at that granularity),
                # by count from the mean record size: no per-record Python loop.
                per_batch = max(1, int(n * limit / max(1, total)))
                start = 0
                while start < n:
                    room = max(1, int(per_batch * max(0, limit - batch.size) / limit))
                    chunk = items[start : start + room]
                    batch.add(st, chunk, sum(map(len, chunk)))
                    start += room
                    if batch.size >= limit:
                        self._write(batch)
                        batch = _Batch()
            elif batch.size >= limit:
                self._write(batch)
                batch = _Batch()
        self._write(batch)
        seg = self._seg
        if seg is not None and not self._degraded:
            now = time.monotonic()
            if sync or now - self._last_sync >= self.config.fsync_interval_s:
                try:
                    seg.sync()
                except OSError as exc:
                    self._on_disk_error(exc, "fdatasync")
                self._last_sync = now

    def _frame_event(
        self, batch: _Batch, kind: str, producer: str, count: int, total: int, detail: str
    ) -> None:
        t_ns = self._clock_ns()
        payload = {
            "kind": kind,
            "producer": producer,
            "count": count,
            "total": total,
            "detail": detail,
        }
        framed = self._events.producer.frame(t_ns, payload)
        self._events.direct += 1
        batch.add_one(self._events, t_ns, framed)

    def _write(self, batch: _Batch) -> None:
        if not batch.parts:
            return
        if self._degraded and not self._retry_due(batch.size):
            self._lose(batch)
            if self._error_limiter.allow():
                log.error(
                    "flight recorder still degraded in %s: %d records lost so far",
                    self.folder,
                    self._total_lost(),
                )
            return
        try:
            if self._seg is None:
                self._open_segment()
            assert self._seg is not None
            # Channels registered since the segment started are declared before their messages.
            decls = self._decls[self._seg_declared :]
            prefix = b"".join(d.schema_bytes + d.channel_bytes for d in decls)
            self._seg.append(prefix + b"".join(batch.parts) if prefix else b"".join(batch.parts))
            for d in decls:
                self._seg.declared(d)
            self._seg_declared += len(decls)
            self._bytes_written += len(prefix)
        except OSError as exc:
            self._lose(batch)
            self._on_disk_error(exc, "writing records")
            return
        seg = self._seg
        self._bytes_written += batch.size
        for st, n, t_min, t_max in batch.shares:
            st.written += n
            seg.note(st.decl.channel_id, n, t_min, t_max)
        if self._degraded:
            self._recover()
        if seg.good_size >= self.config.segment_bytes:
            self._rotate()

    # ---------------------------------------------------------------------- segments, cap

    def _open_segment(self) -> None:
        cfg = self.config
        # Make room first: the new segment may grow to segment_bytes + one batch (+ its end).
        budget = cfg.max_flight_bytes - (cfg.segment_bytes + cfg.batch_bytes + MiB)
        rolled: list[tuple[str, str, int, int, str]] = []
        while self._closed_segments and sum(b for _, b, _ in self._closed_segments) > budget:
            name, size, messages = self._closed_segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()
            self._rollovers += 1
            self._rolled_over_records += messages
            rolled.append(
                (
                    EventKind.ROLLOVER,
                    "",
                    messages,
                    self._rollovers,
                    f"deleted {name} ({size} bytes) to stay within {cfg.max_flight_bytes} bytes",
                )
            )
        index = self._seg_index + 1
        with self._registry_lock:
            decls = list(self._decls)
        seg = SegmentFile(
            self.folder / segment_name(index),
            index,
            LIBRARY,
            self.header.to_metadata(index),
            HEADER_METADATA,
            decls,
        )
        self._seg, self._seg_index = seg, index
        self._seg_declared = len(decls)
        self._bytes_written += seg.good_size
        _fsync_dir(self.folder)
        if rolled:
            batch = _Batch()
            for kind, producer, count, total, detail in rolled:
                self._frame_event(batch, kind, producer, count, total, detail)
            self._write(batch)

    def _rotate(self) -> None:
        seg = self._seg
        assert seg is not None
        self._seg = None
        seg.close()
        try:
            size = seg.path.stat().st_size
        except OSError:
            size = seg.good_size
        self._closed_segments.append((seg.path.name, size, seg.message_count))
        try:
            self._open_segment()
        except OSError as exc:
            self._on_disk_error(exc, "starting a new segment")

    # ------------------------------------------------------------------------- disk errors

    def _on_disk_error(self, exc: OSError, doing: str) -> None:
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self._next_retry = time.monotonic() + self.config.disk_retry_interval_s
        if not self._degraded:
            self._degraded = True
            self._degraded_episodes += 1
            self._episode_lost = 0
            self._release_reserve()
            detail = f"{code} while {doing}: {exc.strerror}"
            written = False
            if self._seg is not None:  # say where it happened, in the space just freed
                batch = _Batch()
                self._frame_event(batch, EventKind.DISK_FULL, "", 0, self._degraded_episodes,
                                  detail)
                try:
                    self._seg.append(b"".join(batch.parts))
                    self._bytes_written += batch.size
                    self._events.written += 1
                    written = True
                except OSError:
                    self._events.direct -= 1  # not lost: written again on recovery
            if not written:
                # No segment to say it in (the error came while starting one) or no room even
                # in the freed reserve: the log still says when the loss began, first thing
                # once writing succeeds again, so a disk_recovered never stands alone.
                self._unwritten_disk_full = (self._degraded_episodes, detail)
            self._alert()
        if self._error_limiter.allow():
            more = self._error_limiter.take_suppressed()
            log.error(
                "flight recorder: %s while %s in %s; recording degraded (%d records lost so "
                "far, %d similar errors not logged)",
                code,
                doing,
                self.folder,
                self._total_lost(),
                more,
            )

    def _alert(self) -> None:
        if self._alerted or self._on_disk_full is None:
            self._alerted = True
            return
        self._alerted = True
        try:
            self._on_disk_full(DISK_FULL_ALERT)
        except Exception:
            log.exception("flight recorder: the disk-full alert callback failed")

    def _retry_due(self, size: int) -> bool:
        if time.monotonic() < self._next_retry:
            return False
        self._next_retry = time.monotonic() + self.config.disk_retry_interval_s
        try:
            st = os.statvfs(self.folder)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize >= size + 2 * self.config.reserve_bytes

    def _recover(self) -> None:
        lost = self._episode_lost
        self._degraded = False
        log.warning("flight recorder: writing again after losing %d records", lost)
        self._make_reserve()
        batch = _Batch()
        self._frame_unwritten_disk_full(batch)
        self._frame_event(
            batch, EventKind.DISK_RECOVERED, "", lost, self._total_lost(), "writes succeed again"
        )
        self._write(batch)

    def _frame_unwritten_disk_full(self, batch: _Batch) -> int:
        """Frame the disk_full event that found no room when it happened; returns 0 or 1."""
        if self._unwritten_disk_full is None:
            return 0
        episode, detail = self._unwritten_disk_full
        self._unwritten_disk_full = None
        self._frame_event(batch, EventKind.DISK_FULL, "", 0, episode, detail)
        return 1

    def _lose(self, batch: _Batch) -> None:
        for st, n, _, _ in batch.shares:
            st.lost += n
            self._episode_lost += n

    def _make_reserve(self) -> None:
        if self.config.reserve_bytes <= 0:
            return
        try:
            fd = os.open(self._reserve_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.config.reserve_bytes)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("flight recorder: no disk reserve (%s)", exc)
            self._release_reserve()

    def _release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            self._reserve_path.unlink()

    # ---------------------------------------------------------------------------- counters

    def _losses(self) -> int:
        return sum(s.dropped + s.lost for s in list(self._states))

    def _total_lost(self) -> int:
        return sum(s.lost for s in list(self._states))

    # ------------------------------------------------------------------------------ footer

    def _make_footer(self, clean: bool) -> FlightFooter:
        with self._registry_lock:
            states = list(self._states)
        counters = {s.producer.name: s.counters() for s in states}
        segments = [name for name, _, _ in self._closed_segments]
        if self._seg is not None:
            segments.append(self._seg.path.name)
        dropped = sum(c.dropped for c in counters.values())
        lost = sum(c.lost_disk for c in counters.values())
        return FlightFooter(
            clean_shutdown=clean,
            records_written=sum(c.written for c in counters.values()),
            records_dropped=dropped + lost,
            dropped_overrun=dropped,
            lost_disk=lost,
            rejected=sum(c.rejected for c in counters.values()),
            bytes_written=self._bytes_written,
            rollovers=self._rollovers,
            rolled_over_records=self._rolled_over_records,
            segments=tuple(segments),
            degraded_episodes=self._degraded_episodes,
            end_t_ns=self._clock_ns(),
            end_utc=_utc_now(),
            producers=counters,
        )

    def _finish(self) -> None:
        if self._degraded:
            # Last chance: the reserve was released when the disk filled; the footer fits.
            self._release_reserve()
            self._next_retry = 0.0
            self._degraded = False
            batch = _Batch()
            events = 1 + self._frame_unwritten_disk_full(batch)
            self._frame_event(
                batch,
                EventKind.DISK_RECOVERED,
                "",
                self._episode_lost,
                self._total_lost(),
                "closing: final records after degraded mode",
            )
            try:
                if self._seg is None:
                    self._open_segment()
                assert self._seg is not None
                self._seg.append(b"".join(batch.parts))
                self._bytes_written += batch.size
                self._events.written += events
            except OSError as exc:
                self._lose(batch)
                self._degraded = True
                log.error("flight recorder: no room for the footer in %s (%s)", self.folder, exc)
        clean = self._seg is not None and not self._degraded
        footer = self._make_footer(clean=clean)
        if self._seg is not None:
            seg, self._seg = self._seg, None
            ok = seg.close(footer.to_metadata(), FOOTER_METADATA)
            if not ok:
                footer = self._make_footer(clean=False)
            else:
                self._closed_segments.append((seg.path.name, seg.good_size, seg.message_count))
        self._release_reserve()
        _fsync_dir(self.folder)
        self._footer = footer

    def _close_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.close(timeout_s=10.0)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _fsync_dir(folder: Path) -> None:
    """Make a created or deleted directory entry durable (segment files survive power loss)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
