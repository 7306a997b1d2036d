"""MCAP framing: the bytes of the records a segment file is made of.

Why hand-framed, unchunked MCAP rather than `mcap.writer.Writer`:

* Crash safety (R4). The library writer buffers messages into chunks (1 MiB by default) and only
  writes a chunk when it is full or on `flush()`; between those, nothing is on disk, and a
  chunk is one record, so a kill in the middle of writing it loses the whole chunk. Unchunked
  MCAP puts every message in its own top-level record, appended in order: whatever reached the
  kernel before a kill is a prefix of complete records plus at most one torn record, and a
  scanning reader recovers every complete one.
* Cost. `Writer.add_message` builds a dataclass and updates statistics per message in Python;
  one `struct.pack` per message here keeps the writer thread far below the 100k records/s bar.
* No compression is needed: the real mix of rates comes to a few GiB per 8-hour flight (see
  bench/fdr.py), far under the 50 GiB budget, and compression would need chunks.

The file is still standard MCAP (magic, Header, Schema/Channel before their messages, DataEnd,
a Summary with Statistics and a Metadata index, Footer, magic): `mcap` tools, Foxglove and
PlotJuggler open it. The non-message records are encoded with the `mcap` library's own record
classes; only the message fast path is packed here.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

from mcap.data_stream import RecordBuilder
from mcap.opcode import Opcode
from mcap.records import (
    Channel,
    DataEnd,
    Footer,
    Header,
    Metadata,
    MetadataIndex,
    Schema,
    Statistics,
    SummaryOffset,
)

MAGIC = b"\x89MCAP0\r\n"

#: opcode u8, record length u64, channel_id u16, sequence u32, log_time u64, publish_time u64.
MESSAGE_HEAD = struct.Struct("<BQHIQQ")
MESSAGE_FIXED_LEN = MESSAGE_HEAD.size - 9  # the part of the record length before the payload
RECORD_HEAD = struct.Struct("<BQ")
FOOTER_RECORD_LEN = 9 + 20  # opcode + length + summary_start + summary_offset_start + crc


def frame_message(channel_id: int, sequence: int, t_ns: int, data: bytes) -> bytes:
    """One complete MCAP Message record (log_time = publish_time = t_ns)."""
    return (
        MESSAGE_HEAD.pack(
            Opcode.MESSAGE,
            MESSAGE_FIXED_LEN + len(data),
            channel_id,
            sequence & 0xFFFFFFFF,
            t_ns,
            t_ns,
        )
        + data
    )


def _encode(record: Header | Schema | Channel | Metadata | DataEnd | Footer) -> bytes:
    builder = RecordBuilder()
    record.write(builder)
    return bytes(builder.end())


def file_start(library: str) -> bytes:
    """Magic and Header record: the first bytes of every segment."""
    return MAGIC + _encode(Header(profile="", library=library))


def schema_record(schema_id: int, name: str, encoding: str, data: bytes) -> bytes:
    return _encode(Schema(id=schema_id, data=data, encoding=encoding, name=name))


def channel_record(channel_id: int, schema_id: int, topic: str, message_encoding: str) -> bytes:
    return _encode(
        Channel(
            id=channel_id,
            topic=topic,
            message_encoding=message_encoding,
            schema_id=schema_id,
            metadata={},
        )
    )


def metadata_record(name: str, values: Mapping[str, str]) -> bytes:
    return _encode(Metadata(name=name, metadata=dict(values)))


def file_end(
    summary_start: int,
    schemas: list[bytes],
    channels: list[bytes],
    statistics: Statistics,
    metadata_index: list[MetadataIndex],
) -> bytes:
    """DataEnd, Summary (schemas, channels, statistics, metadata index, offsets), Footer, magic.

    `summary_start` is the file offset where these bytes will begin; the summary proper starts
    after the DataEnd record, which is part of the data section.
    """
    data_end = _encode(DataEnd(data_section_crc=0))
    summary_offset = summary_start + len(data_end)
    summary = bytearray()
    offsets: list[SummaryOffset] = []

    def group(opcode: Opcode, records: list[bytes]) -> None:
        if not records:
            return
        start = len(summary)
        for r in records:
            summary.extend(r)
        offsets.append(
            SummaryOffset(
                group_opcode=opcode,
                group_start=summary_offset + start,
                group_length=len(summary) - start,
            )
        )

    group(Opcode.SCHEMA, schemas)
    group(Opcode.CHANNEL, channels)
    group(Opcode.STATISTICS, [_builder_bytes(statistics)])
    group(Opcode.METADATA_INDEX, [_builder_bytes(m) for m in metadata_index])
    summary_offset_start = summary_offset + len(summary)
    for off in offsets:
        summary.extend(_builder_bytes(off))
    crc = zlib.crc32(summary)
    crc = zlib.crc32(
        struct.pack("<BQQQ", Opcode.FOOTER, 20, summary_offset, summary_offset_start), crc
    )
    footer = _encode(
        Footer(
            summary_start=summary_offset,
            summary_offset_start=summary_offset_start,
            summary_crc=crc,
        )
    )
    return data_end + bytes(summary) + footer + MAGIC


def _builder_bytes(record: Statistics | MetadataIndex | SummaryOffset) -> bytes:
    builder = RecordBuilder()
    record.write(builder)
    return bytes(builder.end())
