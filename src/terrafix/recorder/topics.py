"""Reserved topic names and the JSON schemas of the recorder's own records.

One place for the names (as gisnav keeps its topic names) so the writer, the reader and the
command-line tools agree. Topics under `/fdr/` belong to the recorder; producers may not use
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from terrafix.recorder.schemas import dataclass_schema, doc

RESERVED_PREFIX = "/fdr/"
EVENTS_TOPIC = "/fdr/events"
LOG_TOPIC = "/fdr/log"

#: MCAP Metadata record names carrying the flight header (every segment) and the footer (last).
HEADER_METADATA = "terrafix.flight"
FOOTER_METADATA = "terrafix.footer"

#: Version of the recorder's own conventions (metadata keys, event kinds), not of MCAP.
FORMAT_VERSION = "1"

SCHEMA_ENCODING = "jsonschema"
MESSAGE_ENCODING = "json"


class EventKind:
    """`kind` values of records on EVENTS_TOPIC. Every loss of data has one."""

    SEGMENT_START = "segment_start"
    DROPPED = "dropped"  # queue overrun: `count` oldest records of `producer` dropped
    ROLLOVER = "rollover"  # flight cap reached: oldest closed segment `detail` deleted
    DISK_FULL = "disk_full"  # write failed: degraded mode entered
    DISK_RECOVERED = "disk_recovered"  # writes succeed again; `count` records were lost
    COALESCED = "coalesced"  # rate policy: `count` records of `producer` coalesced
    CAPPED = "capped"  # per-flight cap: `count` records of `producer` refused
    UNSERIALISABLE = "unserialisable"  # payload could not be encoded: `detail` says why
    LOG_RECURSION = "log_recursion"  # log records refused by the handler's recursion guard


@dataclass(frozen=True, slots=True)
class RecorderEvent:
    """Recorder bookkeeping: drops, rollovers, disk errors, policy coalescing (EventKind)."""

    kind: str = field(metadata=doc("what happened", choices=tuple(
        v for k, v in vars(EventKind).items() if k.isupper())))
    producer: str = field(metadata=doc("topic the event is about, or ''"))
    count: int = field(metadata=doc("records concerned"))
    total: int = field(metadata=doc("running total for this producer and kind"))
    detail: str = field(metadata=doc("human-readable detail"))


EVENT_SCHEMA: dict[str, Any] = dataclass_schema(RecorderEvent, title="terrafix.fdr.Event")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A WARNING-or-above record of Python logging (R3)."""

    level: str = field(metadata=doc("level name (WARNING, ERROR, CRITICAL)"))
    levelno: int = field(metadata=doc("numeric level"))
    logger: str = field(metadata=doc("logger name"))
    message: str = field(metadata=doc("formatted message"))
    thread: str = field(metadata=doc("name of the thread that logged"))
    where: str = field(metadata=doc("path:line of the logging call"))
    exception: str = field(metadata=doc("formatted traceback, or ''"))


LOG_SCHEMA: dict[str, Any] = dataclass_schema(LogEntry, title="terrafix.fdr.LogRecord")


@dataclass(frozen=True, slots=True)
class ImageTimestamp:
    sec: int = field(metadata=doc("seconds of the recorder clock", unit="s"))
    nsec: int = field(metadata=doc("nanoseconds within the second", unit="ns"))


@dataclass(frozen=True, slots=True)
class CompressedImage:
    """A JPEG image in Foxglove's well-known CompressedImage layout (JSON flavour), so that
    failed-match thumbnails show as images in Foxglove."""

    timestamp: ImageTimestamp = field(metadata=doc("capture time"))
    frame_id: str = field(metadata=doc("camera frame the image was taken in"))
    format: str = field(metadata=doc("image format", choices=("jpeg",)))
    data: str = field(metadata=doc("base64 of the image bytes"))


COMPRESSED_IMAGE_SCHEMA: dict[str, Any] = dataclass_schema(
    CompressedImage, title="foxglove.CompressedImage")
COMPRESSED_IMAGE_SCHEMA["properties"]["data"]["contentEncoding"] = "base64"


