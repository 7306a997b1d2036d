"""Reading a flight folder back, whatever state the recording stopped in.

A segment is scanned record by record from its start. A clean segment ends with DataEnd,
Summary, Footer and magic; a segment cut by a kill -9 or a power loss ends with at most one
torn record (or zeros); the scan keeps every complete record before the damage and reports the
rest as a `RecorderWarning` (also kept in `FlightLog.warnings`) instead of failing: after a
loss, the recorder is the only witness, so the reader must give back all it can (R4).

`clean_footer(folder)` is the check post-flight upload calls (U2): the last segment is a complete
MCAP file whose footer metadata says `clean_shutdown`, and every segment the footer lists is
there. It reads the footer through the `mcap` library's own seeking reader, so it also checks
that what the recorder writes is standard MCAP.
"""

from __future__ import annotations

import mmap
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson
from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError
from mcap.opcode import Opcode
from mcap.reader import SeekingReader
from mcap.records import Channel, Metadata, Schema

from terrafix.recorder.container import MAGIC, MESSAGE_HEAD, RECORD_HEAD
from terrafix.recorder.errors import RecorderFormatError
from terrafix.recorder.flight import FlightFooter, FlightHeader
from terrafix.recorder.schemas import SCHEMA_VERSION
from terrafix.recorder.segments import SEGMENT_GLOB
from terrafix.recorder.topics import FOOTER_METADATA, FORMAT_VERSION, HEADER_METADATA

_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)


class RecorderWarning(UserWarning):
    """A flight log that is readable but damaged (truncated segment, missing footer)."""


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One record as read back. data: the JSON bytes exactly as the producer's payload
    encoded; `payload()` decodes them."""

    topic: str
    t_ns: int
    sequence: int
    data: bytes
    segment: str

    def payload(self) -> Any:
        return orjson.loads(self.data)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    topic: str
    schema_name: str
    schema: dict[str, Any]
    messages: int
    first_t_ns: int | None
    last_t_ns: int | None


@dataclass(slots=True)
class SegmentScan:
    """What one pass over a segment found. damage: '' if the file is intact up to its end."""

    name: str
    size_bytes: int
    messages: int = 0
    complete: bool = False  # ends with DataEnd ... Footer, magic
    damage: str = ""
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    topics: dict[str, TopicInfo] = field(default_factory=dict)


def segment_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(SEGMENT_GLOB))


def _read_record(cls: type[Schema] | type[Channel] | type[Metadata], body: bytes) -> Any:
    return cls.read(ReadDataStream(BytesIO(body)))


def scan_segment(
    path: Path, topics: set[str] | None = None
) -> tuple[SegmentScan, Iterator[RecordedMessage]]:
    """Scan one segment. Returns its scan summary (filled in as the iterator is consumed) and
    an iterator over its messages (those of `topics` only, when given)."""
    scan = SegmentScan(name=path.name, size_bytes=path.stat().st_size)
    return scan, _iterate(path, scan, topics)


def _iterate(path: Path, scan: SegmentScan, topics: set[str] | None) -> Iterator[RecordedMessage]:
    with open(path, "rb") as fh:
        if scan.size_bytes == 0:
            scan.damage = "empty file"
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            yield from _records(buf, scan, topics)


def _records(
    buf: mmap.mmap, scan: SegmentScan, topics: set[str] | None
) -> Iterator[RecordedMessage]:
    n = len(buf)
    if n < len(MAGIC) or buf[: len(MAGIC)] != MAGIC:
        scan.damage = "no MCAP magic at the start"
        return
    channels: dict[int, tuple[str, bool]] = {}  # id -> topic, wanted
    schemas: dict[int, Schema] = {}
    counts: dict[str, list[Any]] = {}  # topic -> [schema_name, schema, count, first, last]
    head_unpack = RECORD_HEAD.unpack_from
    msg_unpack = MESSAGE_HEAD.unpack_from
    pos = len(MAGIC)
    in_data = True
    try:
        while pos < n:
            if pos + 9 > n:
                scan.damage = f"torn record header at byte {pos} ({n - pos} bytes)"
                return
            op, length = head_unpack(buf, pos)
            end = pos + 9 + length
            if op not in _KNOWN_OPCODES:
                scan.damage = f"unknown opcode 0x{op:02x} at byte {pos} (corrupt or zero-filled)"
                return
            if end > n:
                scan.damage = (
                    f"torn record at byte {pos}: opcode 0x{op:02x} needs {length} bytes, "
                    f"{n - pos - 9} present"
                )
                return
            if op == Opcode.MESSAGE:
                if in_data:
                    _, _, cid, seq, log_time, _ = msg_unpack(buf, pos)
                    ch = channels.get(cid)
                    if ch is None:
                        scan.damage = f"message on undeclared channel {cid} at byte {pos}"
                        return
                    # JSON text never holds a NUL byte: one here is a zero-filled tail (power
                    # loss before the data blocks were written) or a torn length field.
                    if (
                        length < MESSAGE_HEAD.size - 9
                        or buf.find(b"\x00", pos + MESSAGE_HEAD.size, end) != -1
                    ):
                        scan.damage = f"message at byte {pos} holds NUL bytes (zero-filled tail)"
                        return
                    topic, wanted = ch
                    scan.messages += 1
                    c = counts[topic]
                    c[2] += 1
                    if c[3] is None:
                        c[3] = log_time
                    c[4] = log_time
                    if wanted:
                        yield RecordedMessage(
                            topic, log_time, seq, buf[pos + MESSAGE_HEAD.size : end], scan.name
                        )
            elif op in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.METADATA) and in_data:
                # a garbled record body (bad UTF-8, short strings, bad JSON schema) is damage
                # like a torn one: read up to it, never raise
                try:
                    _declare(op, buf[pos + 9 : end], schemas, channels, counts, scan, topics)
                except (ValueError, EOFError, struct.error, McapError) as exc:
                    scan.damage = f"unreadable record (opcode 0x{op:02x}) at byte {pos}: {exc}"
                    return
            elif op == Opcode.DATA_END:
                in_data = False
            elif op == Opcode.FOOTER:
                if end + len(MAGIC) <= n and buf[end : end + len(MAGIC)] == MAGIC:
                    scan.complete = True
                else:
                    scan.damage = f"footer at byte {pos} not followed by the MCAP magic"
                return
            pos = end
    finally:
        scan.topics = {
            topic: TopicInfo(topic, c[0], c[1], c[2], c[3], c[4]) for topic, c in counts.items()
        }


class FlightLog:
    """A recorded flight folder, read back.

    header: from the first segment that has one (every segment repeats it).
    footer: the clean-close counters, or None if the recording did not end cleanly.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise RecorderFormatError(f"{self.folder}: expected a flight folder")
        self.segment_paths = segment_paths(self.folder)
        if not self.segment_paths:
            raise RecorderFormatError(f"{self.folder}: expected {SEGMENT_GLOB} files, found none")
        self.warnings: list[str] = []
        self.header = self._read_header()
        newer = newer_than_reader(self.header)
        if newer:
            self.warnings.append(newer)
            warnings.warn(newer, RecorderWarning, stacklevel=2)
        self.footer = read_footer(self.segment_paths[-1])
        self.scans: dict[str, SegmentScan] = {}

    def _read_header(self) -> FlightHeader:
        for path in self.segment_paths:
            scan, it = scan_segment(path, topics=set())
            for _ in it:  # no topics wanted: runs through, stops at damage
                pass
            if HEADER_METADATA in scan.metadata:
                return FlightHeader.from_metadata(scan.metadata[HEADER_METADATA])
        raise RecorderFormatError(
            f"{self.folder}: no segment holds a readable flight header ({HEADER_METADATA} "
            "metadata record)"
        )

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[RecordedMessage]:
        """Every readable message, segment by segment in file order (optionally some topics).

        Damage is reported once per segment as a RecorderWarning and in `self.warnings`.
        """
        wanted = None if topics is None else set(topics)
        last = self.segment_paths[-1]
        for path in self.segment_paths:
            scan, it = scan_segment(path, wanted)
            yield from it
            self.scans[scan.name] = scan
            problem = ""
            if scan.damage:
                problem = f"{scan.name}: read up to the damage ({scan.damage})"
            elif not scan.complete:
                problem = f"{scan.name}: ends without an MCAP footer (recording not closed)"
            if path == last and self.footer is None:
                # A kill between closing a segment and starting the next leaves every segment
                # complete: the missing flight footer is then the only sign, so say it too.
                missing = "no clean footer, the recording was interrupted"
                problem = f"{problem}; {missing}" if problem else f"{scan.name}: {missing}"
            if problem:
                self.warnings.append(problem)
                warnings.warn(problem, RecorderWarning, stacklevel=2)

    def scan_all(self) -> dict[str, TopicInfo]:
        """Scan every segment (filling `scans` and `warnings`); per-topic totals."""
        for _ in self.messages(topics=()):
            pass
        totals: dict[str, TopicInfo] = {}
        for scan in self.scans.values():
            for topic, info in scan.topics.items():
                prev = totals.get(topic)
                if prev is None:
                    totals[topic] = info
                else:
                    totals[topic] = TopicInfo(
                        topic,
                        info.schema_name,
                        info.schema,
                        prev.messages + info.messages,
                        _min(prev.first_t_ns, info.first_t_ns),
                        _max(prev.last_t_ns, info.last_t_ns),
                    )
        return totals


def newer_than_reader(header: FlightHeader) -> str:
    """What a flight log written by newer software means for this reader ("" if nothing):
    it still reads every record, but fields and record kinds may be unknown to it."""
    problems = []
    if header.schema_version > SCHEMA_VERSION:
        problems.append(f"record schema version {header.schema_version}")
    try:
        newer_format = int(header.format_version) > int(FORMAT_VERSION)
    except ValueError:
        newer_format = header.format_version != FORMAT_VERSION
    if newer_format:
        problems.append(f"recorder format version {header.format_version}")
    if not problems:
        return ""
    return (f"flight {header.flight_id} was recorded by terrafix {header.software_version} "
            f"with {' and '.join(problems)}, newer than this reader's (schema version "
            f"{SCHEMA_VERSION}, format version {FORMAT_VERSION}): its records are read as "
            f"they are, but fields and record kinds may be unknown here; use a terrafix at "
            f"least as new as {header.software_version} to interpret them")


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _declare(op: int, body: bytes, schemas: dict[int, Schema],
             channels: dict[int, tuple[str, bool]], counts: dict[str, list[Any]],
             scan: SegmentScan, topics: set[str] | None) -> None:
    """Take in one schema, channel or metadata record."""
    if op == Opcode.SCHEMA:
        schema = _read_record(Schema, body)
        schemas[schema.id] = schema
    elif op == Opcode.CHANNEL:
        channel = _read_record(Channel, body)
        s = schemas.get(channel.schema_id)
        if channel.topic not in counts:
            counts[channel.topic] = [s.name if s else "",
                                     orjson.loads(s.data) if s and s.data else {},
                                     0, None, None]
        channels[channel.id] = (channel.topic, topics is None or channel.topic in topics)
    else:
        meta = _read_record(Metadata, body)
        scan.metadata[meta.name] = meta.metadata


def read_footer(segment: Path) -> FlightFooter | None:
    """The footer of a segment read through its MCAP summary, or None if it has none."""
    try:
        with open(segment, "rb") as fh:
            reader = SeekingReader(fh)
            for meta in reader.iter_metadata():
                if meta.name == FOOTER_METADATA:
                    return FlightFooter.from_metadata(meta.metadata)
    except (McapError, OSError, ValueError, EOFError, RecorderFormatError):
        return None
    except Exception:  # mcap raises plain exceptions on short files (e.g. struct.error)
        return None
    return None


def footer_problem(folder: str | Path) -> str | None:
    """Why `folder` has no clean footer, or None when it has one."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder}: not a folder"
    paths = segment_paths(folder)
    if not paths:
        return f"{folder}: no segments"
    footer = read_footer(paths[-1])
    if footer is None:
        return f"{paths[-1].name}: no readable footer (recording interrupted or still open)"
    if not footer.clean_shutdown:
        return f"{paths[-1].name}: footer says the shutdown was not clean"
    present = {p.name for p in paths}
    missing = [s for s in footer.segments if s not in present]
    if missing:
        return f"segments listed in the footer are missing: {', '.join(missing)}"
    extra = sorted(present - set(footer.segments))
    if extra:
        return f"segments not listed in the footer: {', '.join(extra)}"
    return None


def clean_footer(folder: str | Path) -> bool:
    """True when the flight log in `folder` was closed cleanly and is complete (U2 gate)."""
    return footer_problem(folder) is None
