"""One segment file of a flight: an unchunked MCAP file written by appends only.

A segment starts with the MCAP magic and Header, the flight header (Metadata record, repeated in
every segment so that any segment left after rollovers still says which flight it belongs to),
then Schema and Channel records of every producer known so far, then messages. `close()` ends it
with DataEnd, a Summary (schemas, channels, statistics, metadata index) and the Footer, so a
closed segment is a complete, indexed MCAP file.

Crash and disk-full safety rest on one invariant: `good_size` is always a record boundary.
A failed write (ENOSPC, EFBIG, EIO) truncates the file back to it before the error propagates,
so the next successful write continues a well-formed file instead of following a torn record.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mcap.records import MetadataIndex, Statistics

from terrafix.recorder import container
from terrafix.recorder.topics import MESSAGE_ENCODING, SCHEMA_ENCODING

SEGMENT_PATTERN = "segment-{index:05d}.mcap"
SEGMENT_GLOB = "segment-*.mcap"


def segment_name(index: int) -> str:
    return SEGMENT_PATTERN.format(index=index)


@dataclass(frozen=True, slots=True)
class ChannelDecl:
    """A producer's topic and schema, pre-encoded as the MCAP records every segment repeats."""

    channel_id: int
    topic: str
    schema_name: str
    schema_json: bytes
    schema_bytes: bytes = field(repr=False)
    channel_bytes: bytes = field(repr=False)

    @staticmethod
    def make(channel_id: int, topic: str, schema_name: str, schema_json: bytes) -> ChannelDecl:
        # One schema per channel: schema id = channel id keeps the bookkeeping trivial.
        return ChannelDecl(
            channel_id=channel_id,
            topic=topic,
            schema_name=schema_name,
            schema_json=schema_json,
            schema_bytes=container.schema_record(
                channel_id, schema_name, SCHEMA_ENCODING, schema_json
            ),
            channel_bytes=container.channel_record(channel_id, channel_id, topic, MESSAGE_ENCODING),
        )


class SegmentFile:
    """An open segment being appended to. Not thread-safe: the writer thread owns it."""

    def __init__(
        self,
        path: Path,
        index: int,
        library: str,
        header: Mapping[str, str],
        header_name: str,
        channels: list[ChannelDecl],
    ) -> None:
        """Create the file and write its preamble; raises OSError (file removed) on failure."""
        self.path = path
        self.index = index
        self.good_size = 0
        self.message_count = 0
        self.channel_counts: dict[int, int] = {}
        self.t_min: int | None = None
        self.t_max: int | None = None
        self._declared: list[ChannelDecl] = []
        self._metadata_index: list[MetadataIndex] = []
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC)
        try:
            preamble = bytearray(container.file_start(library))
            meta = container.metadata_record(header_name, header)
            self._metadata_index.append(
                MetadataIndex(offset=len(preamble), length=len(meta), name=header_name)
            )
            preamble += meta
            for decl in channels:
                preamble += decl.schema_bytes + decl.channel_bytes
            self.append(bytes(preamble))
            self._declared.extend(channels)
        except OSError:
            os.close(self.fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise

    def append(self, data: bytes) -> None:
        """Append whole records. On failure, cut back to the last record boundary and re-raise."""
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                n = os.write(self.fd, view[written:])
                if n <= 0:  # pragma: no cover - regular files write or raise
                    raise OSError(f"short write of {len(view) - written} bytes to {self.path}")
                written += n
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.good_size)
            raise
        self.good_size += written

    def declared(self, decl: ChannelDecl) -> None:
        """Note that `append` wrote decl's Schema and Channel (they go into the summary)."""
        self._declared.append(decl)

    def note(self, channel_id: int, count: int, t_min: int, t_max: int) -> None:
        """Account messages that `append` has just written (for the summary statistics)."""
        self.message_count += count
        self.channel_counts[channel_id] = self.channel_counts.get(channel_id, 0) + count
        self.t_min = t_min if self.t_min is None else min(self.t_min, t_min)
        self.t_max = t_max if self.t_max is None else max(self.t_max, t_max)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self, footer: Mapping[str, str] | None = None, footer_name: str = "") -> bool:
        """Write the optional footer metadata and the MCAP end; fsync; close the descriptor.

        Returns False (the file stays a readable, unterminated segment) if writing failed.
        """
        ok = True
        try:
            if footer is not None:
                meta = container.metadata_record(footer_name, footer)
                offset = self.good_size
                self.append(meta)
                self._metadata_index.append(
                    MetadataIndex(offset=offset, length=len(meta), name=footer_name)
                )
            stats = Statistics(
                message_count=self.message_count,
                schema_count=len(self._declared),
                channel_count=len(self._declared),
                attachment_count=0,
                metadata_count=len(self._metadata_index),
                chunk_count=0,
                message_start_time=self.t_min or 0,
                message_end_time=self.t_max or 0,
                channel_message_counts=dict(self.channel_counts),
            )
            self.append(
                container.file_end(
                    self.good_size,
                    [d.schema_bytes for d in self._declared],
                    [d.channel_bytes for d in self._declared],
                    stats,
                    self._metadata_index,
                )
            )
            os.fsync(self.fd)
        except OSError:
            ok = False
        finally:
            os.close(self.fd)
        return ok
