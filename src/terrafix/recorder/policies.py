"""Recording policies for images (R3): what may be stored, how often, how much.

Raw navigation-camera frames are never stored (20 MP at 3 Hz would fill the disk in minutes and
is not what a reviewer needs); `Producer.record` refuses them at the call site. Two kinds of
small images are worth keeping, each under its own rule:

* failed-match thumbnails: a small JPEG of a frame the registration rejected, at most one per
  `min_interval_s` (10 s, i.e. 0.1 Hz); the ones in between are not stored but counted, and a
  `coalesced` event with the count is written when the next one is stored and at close;
* in-flight tile snapshots: JPEGs of tiles produced in flight, at most `max_per_flight`; the
  excess is refused, with a `capped` event at the first refusal and the total at close.

Both decide on the caller's monotonic time `t_ns`, so replays and tests are deterministic.
They take a short lock (a few microseconds, only at the frame rate), never I/O.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field

from terrafix.recorder.errors import RecorderPolicyError
from terrafix.recorder.schemas import dataclass_schema, doc, record_of
from terrafix.recorder.topics import (
    COMPRESSED_IMAGE_SCHEMA,
    CompressedImage,
    EventKind,
    ImageTimestamp,
)
from terrafix.recorder.writer import FlightRecorder

THUMBNAIL_TOPIC = "/vision/failed_match_thumbnail"
TILE_SNAPSHOT_TOPIC = "/tiles/snapshot"
JPEG_MAGIC = b"\xff\xd8\xff"



@dataclass(frozen=True, slots=True)
class TileSnapshot:
    """A map tile made in flight from the camera (capped per flight)."""

    tile: str = field(metadata=doc("slippy-map tile address z/x/y"))
    format: str = field(metadata=doc("image format", choices=("jpeg",)))
    data: str = field(metadata=doc("base64 of the image bytes"))
    sigma_m: float = field(metadata=doc("1-sigma pose uncertainty when it was made"))


TILE_SNAPSHOT_SCHEMA = dataclass_schema(TileSnapshot)
TILE_SNAPSHOT_SCHEMA["properties"]["data"]["contentEncoding"] = "base64"


def _check_jpeg(what: str, jpeg: bytes, max_bytes: int) -> None:
    if not isinstance(jpeg, (bytes, bytearray)) or not bytes(jpeg[:3]) == JPEG_MAGIC:
        raise RecorderPolicyError(
            f"{what}: expected JPEG bytes (starting FF D8 FF), got "
            f"{type(jpeg).__name__} {bytes(jpeg[:4])!r}"
        )
    if len(jpeg) > max_bytes:
        raise RecorderPolicyError(
            f"{what}: {len(jpeg)} bytes, expected at most {max_bytes} (a thumbnail, not a frame)"
        )


class FailedMatchThumbnails:
    """Failed-match thumbnails at most once per `min_interval_s`, the excess counted."""

    def __init__(
        self,
        recorder: FlightRecorder,
        *,
        min_interval_s: float = 10.0,
        max_bytes: int = 64 * 1024,
        topic: str = THUMBNAIL_TOPIC,
    ) -> None:
        self._recorder = recorder
        self._producer = recorder.producer(topic, COMPRESSED_IMAGE_SCHEMA, capacity=16)
        self._interval_ns = int(min_interval_s * 1e9)
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._last_t_ns: int | None = None
        self._pending = 0  # coalesced since the last stored thumbnail
        self.stored = 0
        self.coalesced = 0
        recorder.on_close(self._flush_pending)

    def offer(self, t_ns: int, jpeg: bytes, frame_id: str = "nav_camera") -> bool:
        """Store the thumbnail if the rate allows; True if stored, False if coalesced."""
        _check_jpeg(self._producer.name, jpeg, self._max_bytes)
        with self._lock:
            if self._last_t_ns is not None and t_ns - self._last_t_ns < self._interval_ns:
                self._pending += 1
                self.coalesced += 1
                return False
            self._last_t_ns = t_ns
            pending, self._pending = self._pending, 0
            self.stored += 1
        if pending:
            self._recorder.event(
                EventKind.COALESCED,
                self._producer.name,
                pending,
                self.coalesced,
                f"thumbnails not stored (limit one per {self._interval_ns / 1e9:g} s)",
            )
        self._producer.record(t_ns, record_of(CompressedImage(
            timestamp=ImageTimestamp(t_ns // 1_000_000_000, t_ns % 1_000_000_000),
            frame_id=frame_id, format="jpeg",
            data=base64.b64encode(bytes(jpeg)).decode("ascii"))))
        return True

    def _flush_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, 0
        if pending:
            self._recorder.event(
                EventKind.COALESCED,
                self._producer.name,
                pending,
                self.coalesced,
                "thumbnails not stored before close",
            )


class TileSnapshots:
    """In-flight tile snapshots, at most `max_per_flight`; refusals counted."""

    def __init__(
        self,
        recorder: FlightRecorder,
        *,
        max_per_flight: int = 500,
        max_bytes: int = 256 * 1024,
        topic: str = TILE_SNAPSHOT_TOPIC,
    ) -> None:
        self._recorder = recorder
        self._producer = recorder.producer(topic, TILE_SNAPSHOT_SCHEMA, capacity=64)
        self._max = max_per_flight
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self.stored = 0
        self.refused = 0
        recorder.on_close(self._report)

    def offer(self, t_ns: int, tile: str, jpeg: bytes, sigma_m: float) -> bool:
        """Store the snapshot unless the flight's cap is reached; True if stored."""
        _check_jpeg(self._producer.name, jpeg, self._max_bytes)
        with self._lock:
            if self.stored >= self._max:
                self.refused += 1
                first = self.refused == 1
                accept = False
            else:
                self.stored += 1
                accept = True
        if not accept:
            if first:
                self._recorder.event(
                    EventKind.CAPPED,
                    self._producer.name,
                    1,
                    1,
                    f"tile snapshot cap of {self._max} per flight reached",
                )
            return False
        self._producer.record(t_ns, record_of(TileSnapshot(
            tile=tile, format="jpeg", data=base64.b64encode(bytes(jpeg)).decode("ascii"),
            sigma_m=sigma_m)))
        return True

    def _report(self) -> None:
        if self.refused:
            self._recorder.event(
                EventKind.CAPPED,
                self._producer.name,
                self.refused,
                self.refused,
                f"tile snapshots refused in this flight (cap {self._max})",
            )
