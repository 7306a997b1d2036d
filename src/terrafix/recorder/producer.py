"""The producer side: what a component calls on its hot path.

`Producer.record` serialises the payload at once (a snapshot: the caller may reuse or mutate
its dict and arrays afterwards) and appends one framed MCAP message to this producer's own
bounded queue. It never blocks and never raises for run-time conditions:

* queue full -> the oldest queued record is dropped; the drop is counted, and the writer puts a
  `dropped` event carrying the count in the stream where the gap is (R1: nothing silently);
* payload that cannot be encoded -> counted, and an `unserialisable` event says why;
* recorder closed -> counted as late.

It raises `RecorderPolicyError` only for a programming error at the call site (R3): a raw
camera frame (a `CameraFrame`, or an image-shaped array among the payload's values), a large
raw bytes value, or a record larger than the configured maximum.

Lock-free by design: `deque.append`/`popleft`, `list.append` and `next(itertools.count)` are
atomic under the GIL, so several threads may share a producer, and the writer thread drains
without ever making a producer wait on a lock the writer could hold across a GIL switch.

Serialisation is orjson: stdlib `json.dumps` measured 16-230 µs per record on this machine
(bench/fdr.py reports it), which alone would cap the recorder below 10k records/s; orjson is
10-30x faster and also serialises numpy arrays and scalars natively. Non-finite floats
(e.g. an anchor age of inf before the first anchor) are written as JSON null.
"""

from __future__ import annotations

import base64
import itertools
import struct
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
from mcap.opcode import Opcode

from terrafix.measurements import CameraFrame
from terrafix.recorder.container import MESSAGE_FIXED_LEN, MESSAGE_HEAD, frame_message
from terrafix.recorder.errors import RecorderPolicyError

_DUMPS = orjson.dumps
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_MIN_IMAGE_SIDE_PX = 64
_MAX_INLINE_BYTES = 64 * 1024
_SUSPECT_TYPES = frozenset({np.ndarray, bytes, bytearray, CameraFrame})
_PACK = MESSAGE_HEAD.pack
_OP_MESSAGE = int(Opcode.MESSAGE)
_FIXED = MESSAGE_FIXED_LEN
_IMAGE_DTYPES = frozenset({np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.bool_)})


def looks_like_camera_frame(value: object) -> bool:
    """True for things that are camera frames by shape, whatever they are called.

    Image-shaped means: a `CameraFrame`; a 2-D uint8/uint16/bool array, or a 3-D array with 1,
    3 or 4 channels, whose two spatial sides are both >= 64 px. Float matrices (covariances,
    descriptor tables) and thin arrays (keypoints (N, 2)) are not images.
    """
    if isinstance(value, CameraFrame):
        return True
    if not isinstance(value, np.ndarray):
        return False
    shape = value.shape
    if value.ndim == 2:
        return value.dtype in _IMAGE_DTYPES and min(shape) >= _MIN_IMAGE_SIDE_PX
    if value.ndim == 3 and shape[2] in (1, 3, 4):
        return min(shape[0], shape[1]) >= _MIN_IMAGE_SIDE_PX
    return False


def _default(obj: Any) -> Any:
    """orjson fallback for values it does not encode natively."""
    if isinstance(obj, np.ndarray):  # non-contiguous or exotic dtype
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(f"cannot record a {type(obj).__name__}")


def encode_payload(payload: object) -> bytes:
    """The JSON bytes the recorder stores for a payload (same rules as `Producer.record`)."""
    return _DUMPS(payload, default=_default, option=_OPTIONS)


class Producer:
    """One component's bounded queue into the flight recorder.

    Obtain it from `FlightRecorder.producer(name, schema)`; do not construct it directly.
    `name` is the MCAP topic; `capacity` the queue bound in records.
    """

    __slots__ = (
        "_closed",
        "_max_record_bytes",
        "_seq",
        "capacity",
        "channel_id",
        "drop_ticks",
        "late",
        "name",
        "queue",
        "rejects",
    )

    def __init__(
        self,
        name: str,
        channel_id: int,
        capacity: int,
        max_record_bytes: int,
    ) -> None:
        self.name = name
        self.channel_id = channel_id
        self.capacity = capacity
        self._max_record_bytes = max_record_bytes
        self._seq = itertools.count()
        self._closed = False
        #: (t_ns, MCAP message record head, JSON payload); drained by the writer thread only.
        self.queue: deque[tuple[int, bytes, bytes]] = deque()
        #: one entry per record dropped on overrun; the writer counts and clears them.
        self.drop_ticks: list[int] = []
        #: reasons of payloads that could not be encoded; the writer counts and clears them.
        self.rejects: list[str] = []
        #: records offered after the recorder was closed (no stream left to mark them in).
        self.late = 0

    def record(self, t_ns: int, payload: Mapping[str, Any]) -> None:
        """Queue one record taken at monotonic time `t_ns` (ns). Never blocks.

        Raises RecorderPolicyError only for a raw camera frame or an oversized record.
        """
        if self._closed:
            self.late += 1
            return
        if type(payload) is dict:
            for value in payload.values():
                if type(value) in _SUSPECT_TYPES:  # one set lookup per value on the hot path
                    self._refuse_raw(value)
        elif isinstance(payload, CameraFrame):
            self._refuse_raw(payload)
        try:
            data = _DUMPS(payload, default=_default, option=_OPTIONS)
        except (TypeError, orjson.JSONEncodeError) as exc:
            self.rejects.append(f"{type(payload).__name__}: {exc}")
            return
        n = len(data)
        if n > self._max_record_bytes:
            raise RecorderPolicyError(
                f"{self.name}: record of {n} bytes, expected at most "
                f"{self._max_record_bytes} (RecorderConfig.max_record_bytes)"
            )
        q = self.queue
        if len(q) >= self.capacity:
            try:
                q.popleft()
                self.drop_ticks.append(1)
            except IndexError:  # the writer emptied it meanwhile
                pass
        seq = next(self._seq) & 0xFFFFFFFF
        try:
            head = _PACK(_OP_MESSAGE, _FIXED + n, self.channel_id, seq, t_ns, t_ns)
        except struct.error:  # the sequence gap this leaves is explained by the reject event
            self.rejects.append(f"t_ns={t_ns!r}: expected an int in [0, 2**64) (monotonic ns)")
            return
        # Record head and payload stay separate objects (no 1 KB copy here); the writer joins.
        q.append((t_ns, head, data))

    def _refuse_raw(self, value: object) -> None:
        if looks_like_camera_frame(value):
            raise RecorderPolicyError(
                f"{self.name}: raw camera frames are never recorded (got "
                f"{_describe(value)}); record features or a thumbnail instead"
            )
        if isinstance(value, (bytes, bytearray)) and len(value) > _MAX_INLINE_BYTES:
            raise RecorderPolicyError(
                f"{self.name}: {len(value)} raw bytes in one value, expected at most "
                f"{_MAX_INLINE_BYTES} (images go through the thumbnail/tile policies)"
            )

    def frame(self, t_ns: int, payload: Mapping[str, Any]) -> bytes:
        """Serialise and frame one record of this topic without queueing it (writer use)."""
        return frame_message(self.channel_id, next(self._seq), t_ns, encode_payload(payload))

    def close(self) -> None:
        """Refuse further records (they are counted as late)."""
        self._closed = True


def _describe(value: object) -> str:
    if isinstance(value, CameraFrame):
        return f"CameraFrame {value.image.shape}"
    if isinstance(value, np.ndarray):
        return f"array {value.shape} {value.dtype}"
    return type(value).__name__
