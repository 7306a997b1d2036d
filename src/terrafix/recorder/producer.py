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

A queue entry is one `bytes`: the complete MCAP Message record (31-byte head + JSON). Not a
tuple, on purpose: a tuple per record is a garbage-collector-tracked allocation, and at 100k
records/s those alone triggered a generation-0 collection every 7 ms and periodic full
collections over everything queued (5 % of the process CPU under py-spy). One bytes object is
also one object for the writer to pop, measure, join and free. The writer reads the log time
back from the head for the segment statistics.

Serialisation is orjson: stdlib `json.dumps` measured 16-230 µs per record on this machine
(bench/fdr.py reports it), which alone would cap the recorder below 10k records/s; orjson is
10-30x faster and also serialises numpy arrays and scalars natively. Non-finite floats
(e.g. an anchor age of inf before the first anchor) are written as JSON null. The first attempt
omits `OPT_NON_STR_KEYS` (it takes orjson off its fast dict path: ~10 % slower on every record);
a payload with non-string keys fails that attempt and is encoded again with it, so the bytes
are the same as with the option always on.
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
_FAST_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_MIN_IMAGE_SIDE_PX = 64
_MAX_INLINE_BYTES = 64 * 1024
#: smallest JSON an image-shaped array can encode to: 64 x 64 values, each ">= 1 digit" + ",".
_RAW_MIN_JSON_BYTES = 2 * _MIN_IMAGE_SIDE_PX * _MIN_IMAGE_SIDE_PX
_PACK = MESSAGE_HEAD.pack
_OP_MESSAGE = int(Opcode.MESSAGE)
_FIXED = MESSAGE_FIXED_LEN
_U32 = 0xFFFFFFFF
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
    """The JSON bytes the recorder stores for a payload (same rules as `Producer.record`).

    Raises TypeError (orjson.JSONEncodeError) for a payload that cannot be encoded.
    """
    try:
        return _DUMPS(payload, default=_default, option=_FAST_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError; non-str keys need the option
        return _DUMPS(payload, default=_default, option=_OPTIONS)


class Producer:
    """One component's bounded queue into the flight recorder.

    Obtain it from `FlightRecorder.producer(name, schema)`; do not construct it directly.
    `name` is the MCAP topic; `capacity` the queue bound in records.
    """

    __slots__ = (
        "_check_bytes",
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
        # The raw-data checks run only on records whose JSON is at least this long, after
        # encoding: an image-shaped array (>= 64 x 64 values, each at least one digit and a
        # comma) encodes to >= 8192 bytes, a raw bytes value over 64 KiB to more in base64.
        # So the common small record pays nothing for them (a Python loop over its values
        # was ~8 % of the producer's time), and a frame is still refused before it is queued.
        self._check_bytes = min(_RAW_MIN_JSON_BYTES, max_record_bytes + 1)
        self._seq = itertools.count()
        self._closed = False
        #: complete MCAP Message records (head + JSON); drained by the writer thread only.
        self.queue: deque[bytes] = deque()
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
        if type(payload) is not dict and isinstance(payload, CameraFrame):
            self._refuse_raw(payload)
        try:
            data = _DUMPS(payload, default=_default, option=_FAST_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError; maybe only non-str keys: the slow path
            try:
                data = _DUMPS(payload, default=_default, option=_OPTIONS)
            except TypeError as exc:
                self._check_values(payload)  # a raw frame is still a programming error
                self.rejects.append(f"{type(payload).__name__}: {exc}")
                return
        n = len(data)
        if n >= self._check_bytes:  # only records this big can hold a frame (see __init__)
            self._check_values(payload)
            if n > self._max_record_bytes:
                raise RecorderPolicyError(
                    f"{self.name}: record of {n} bytes, expected at most "
                    f"{self._max_record_bytes} (RecorderConfig.max_record_bytes)"
                )
        try:
            framed = (
                _PACK(_OP_MESSAGE, _FIXED + n, self.channel_id, next(self._seq) & _U32, t_ns, t_ns)
                + data
            )
        except struct.error:  # the sequence gap this leaves is explained by the reject event
            self.rejects.append(f"t_ns={t_ns!r}: expected an int in [0, 2**64) (monotonic ns)")
            return
        q = self.queue
        if len(q) >= self.capacity:
            try:
                q.popleft()
                self.drop_ticks.append(1)
            except IndexError:  # the writer emptied it meanwhile
                pass
        q.append(framed)

    def _check_values(self, payload: object) -> None:
        """Refuse a payload holding a raw camera frame or a large raw bytes value (R3)."""
        if isinstance(payload, Mapping):
            for value in payload.values():
                self._refuse_raw(value)

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
