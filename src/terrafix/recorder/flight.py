"""The flight header and footer: what a flight log says about itself.

Both travel as MCAP Metadata records (string -> string maps), so any MCAP tool shows them. The
header is repeated at the start of every segment, so a folder whose oldest segments were rolled
over still names its flight; the footer is written once, at the end of the last segment, by a
clean `FlightRecorder.close()`. Its absence is how a crash or power loss shows (and post-flight
upload refuses to run, U2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import orjson

from terrafix.recorder.errors import RecorderFormatError
from terrafix.recorder.schemas import SCHEMA_VERSION
from terrafix.recorder.topics import FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class FlightHeader:
    """Identity of a flight log.

    start_utc: ISO-8601 UTC wall time at open; start_t_ns: the monotonic clock at the same
    instant, so record times (monotonic ns) convert to UTC as start_utc + (t_ns - start_t_ns).
    key_fingerprints: name -> fingerprint of the public keys in force (e.g. the per-flight
    upload key), never the keys themselves. schema_version: the version of the record
    schemas the topics carry (recorder.schemas.SCHEMA_VERSION; 1 for logs written before the
    header said, whose onboard topics had empty schemas).
    """

    flight_id: str
    software_version: str
    config_hash: str
    start_utc: str
    start_t_ns: int
    key_fingerprints: Mapping[str, str] = field(default_factory=dict)
    format_version: str = FORMAT_VERSION
    schema_version: int = SCHEMA_VERSION

    def to_metadata(self, segment_index: int) -> dict[str, str]:
        return {
            "flight_id": self.flight_id,
            "software_version": self.software_version,
            "config_hash": self.config_hash,
            "start_utc": self.start_utc,
            "start_t_ns": str(self.start_t_ns),
            "key_fingerprints": orjson.dumps(
                dict(self.key_fingerprints), option=orjson.OPT_SORT_KEYS
            ).decode(),
            "format_version": self.format_version,
            "schema_version": str(self.schema_version),
            "segment_index": str(segment_index),
        }

    @staticmethod
    def from_metadata(values: Mapping[str, str]) -> FlightHeader:
        try:
            return FlightHeader(
                flight_id=values["flight_id"],
                software_version=values["software_version"],
                config_hash=values["config_hash"],
                start_utc=values["start_utc"],
                start_t_ns=int(values["start_t_ns"]),
                key_fingerprints=dict(orjson.loads(values["key_fingerprints"])),
                format_version=values["format_version"],
                schema_version=int(values.get("schema_version", "1")),
            )
        except (KeyError, ValueError, orjson.JSONDecodeError) as exc:
            raise RecorderFormatError(
                f"flight header metadata {dict(values)!r}: expected the keys written by "
                f"FlightHeader.to_metadata ({exc})"
            ) from exc


@dataclass(frozen=True, slots=True)
class ProducerCounters:
    """Per-topic counters. At close: enqueued == written + dropped + lost_disk."""

    enqueued: int = 0
    written: int = 0
    dropped: int = 0  # oldest records dropped on queue overrun
    lost_disk: int = 0  # records that could not be written (full disk, I/O error)
    rejected: int = 0  # payloads that could not be encoded (never enqueued)
    late: int = 0  # offered after close (never enqueued)


@dataclass(frozen=True, slots=True)
class FlightFooter:
    """Counters of a whole flight (R1), written by a clean close.

    records_written counts every message that reached a segment, the recorder's own events and
    log records included, also those later deleted by rollovers (rolled_over_records says how
    many). records_dropped = dropped on overrun + lost to the disk. bytes_written counts all
    segment bytes ever written.
    """

    clean_shutdown: bool
    records_written: int
    records_dropped: int
    dropped_overrun: int
    lost_disk: int
    rejected: int
    bytes_written: int
    rollovers: int
    rolled_over_records: int
    segments: tuple[str, ...]
    degraded_episodes: int
    end_t_ns: int
    end_utc: str
    producers: Mapping[str, ProducerCounters] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, str]:
        out = {
            k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in (
                ("clean_shutdown", self.clean_shutdown),
                ("records_written", self.records_written),
                ("records_dropped", self.records_dropped),
                ("dropped_overrun", self.dropped_overrun),
                ("lost_disk", self.lost_disk),
                ("rejected", self.rejected),
                ("bytes_written", self.bytes_written),
                ("rollovers", self.rollovers),
                ("rolled_over_records", self.rolled_over_records),
                ("degraded_episodes", self.degraded_episodes),
                ("end_t_ns", self.end_t_ns),
                ("end_utc", self.end_utc),
            )
        }
        out["segments"] = orjson.dumps(list(self.segments)).decode()
        out["producers"] = orjson.dumps(
            {name: asdict(c) for name, c in self.producers.items()}, option=orjson.OPT_SORT_KEYS
        ).decode()
        return out

    @staticmethod
    def from_metadata(values: Mapping[str, str]) -> FlightFooter:
        try:
            ints = {
                k: int(values[k])
                for k in (
                    "records_written",
                    "records_dropped",
                    "dropped_overrun",
                    "lost_disk",
                    "rejected",
                    "bytes_written",
                    "rollovers",
                    "rolled_over_records",
                    "degraded_episodes",
                    "end_t_ns",
                )
            }
            producers = {
                name: ProducerCounters(**counters)
                for name, counters in orjson.loads(values["producers"]).items()
            }
            return FlightFooter(
                clean_shutdown=values["clean_shutdown"] == "true",
                segments=tuple(orjson.loads(values["segments"])),
                end_utc=values["end_utc"],
                producers=producers,
                **ints,
            )
        except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
            raise RecorderFormatError(
                f"flight footer metadata {dict(values)!r}: expected the keys written by "
                f"FlightFooter.to_metadata ({exc})"
            ) from exc
