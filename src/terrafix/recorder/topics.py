"""Reserved topic names and the JSON schemas of the recorder's own records.

One place for the names (as gisnav keeps its topic names) so the writer, the reader and the
command-line tools agree. Topics under `/fdr/` belong to the recorder; producers may not use
them.
"""

from __future__ import annotations

from typing import Any

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


EVENT_SCHEMA: dict[str, Any] = {
    "title": "terrafix.fdr.Event",
    "description": "Recorder bookkeeping: drops, rollovers, disk errors, policy coalescing.",
    "type": "object",
    "properties": {
        "kind": {"type": "string"},
        "producer": {"type": "string", "description": "topic the event is about, or ''"},
        "count": {"type": "integer", "description": "records concerned"},
        "total": {"type": "integer", "description": "running total for this producer/kind"},
        "detail": {"type": "string"},
    },
    "required": ["kind", "producer", "count", "total", "detail"],
}

LOG_SCHEMA: dict[str, Any] = {
    "title": "terrafix.fdr.LogRecord",
    "description": "A WARNING-or-above record of Python logging.",
    "type": "object",
    "properties": {
        "level": {"type": "string"},
        "levelno": {"type": "integer"},
        "logger": {"type": "string"},
        "message": {"type": "string"},
        "thread": {"type": "string"},
        "where": {"type": "string", "description": "path:line of the logging call"},
        "exception": {"type": "string"},
    },
    "required": ["level", "levelno", "logger", "message"],
}

#: Foxglove's well-known image schema (JSON flavour), so failed-match thumbnails show as images.
COMPRESSED_IMAGE_SCHEMA: dict[str, Any] = {
    "title": "foxglove.CompressedImage",
    "type": "object",
    "properties": {
        "timestamp": {
            "type": "object",
            "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}},
        },
        "frame_id": {"type": "string"},
        "data": {"type": "string", "contentEncoding": "base64"},
        "format": {"type": "string"},
    },
}
