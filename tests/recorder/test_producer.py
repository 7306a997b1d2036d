"""Producer contract (R1, R3): bounded, drop-oldest with counted markers, never raising except
for a raw camera frame or an oversized record, snapshot-at-call semantics."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import orjson
import pytest

from terrafix.measurements import CameraFrame
from terrafix.recorder import FlightLog, FlightRecorder, RecorderPolicyError
from terrafix.recorder.producer import encode_payload, looks_like_camera_frame
from terrafix.recorder.topics import EVENTS_TOPIC, EventKind

from .conftest import SCHEMA, small_config

Factory = Callable[..., FlightRecorder]


def test_overrun_drops_oldest_and_marks_the_count_in_the_stream(open_recorder: Factory) -> None:
    # A writer that sleeps 30 s between polls drains only on flush(): the overrun is exact.
    rec = open_recorder(config=small_config(poll_interval_s=30.0, queue_capacity=10))
    p = rec.producer("/p", SCHEMA)
    for i in range(100):
        p.record(i, {"i": i})
    assert rec.flush(timeout_s=10) is False  # 90 records were dropped before the flush
    footer = rec.close()
    c = footer.producers["/p"]
    assert (c.enqueued, c.written, c.dropped) == (100, 10, 90)
    assert footer.records_dropped == 90 and footer.dropped_overrun == 90
    msgs = list(FlightLog(rec.folder).messages())
    kept = [m for m in msgs if m.topic == "/p"]
    assert [m.payload()["i"] for m in kept] == list(range(90, 100))
    assert [m.sequence for m in kept] == list(range(90, 100))  # the gap shows in sequences
    drops = [m for m in msgs if m.topic == EVENTS_TOPIC and m.payload()["kind"] == "dropped"]
    assert [(d.payload()["producer"], d.payload()["count"]) for d in drops] == [("/p", 90)]
    # the marker precedes the surviving records: it stands where the gap is
    assert msgs.index(drops[0]) < msgs.index(kept[0])


def test_flush_true_means_everything_before_it_is_readable(open_recorder: Factory) -> None:
    rec = open_recorder(config=small_config(poll_interval_s=30.0))
    p = rec.producer("/p", SCHEMA)
    for i in range(500):
        p.record(i, {"i": i, "pad": "x" * (i % 300)})
    assert rec.flush(timeout_s=10) is True
    # read while the recorder is still open (no footer yet): all 500 are there
    with pytest.warns(UserWarning, match="without an MCAP footer"):
        got = [m.payload()["i"] for m in FlightLog(rec.folder).messages(["/p"])]
    assert got == list(range(500))


def test_payload_is_snapshotted_at_the_call(open_recorder: Factory) -> None:
    rec = open_recorder(config=small_config(poll_interval_s=30.0))
    p = rec.producer("/p", SCHEMA)
    payload = {"i": 1, "v": np.array([1.0, 2.0]), "nested": {"k": [1, 2]}}
    p.record(5, payload)
    payload["i"] = 2
    payload["v"][0] = 99.0
    payload["nested"]["k"].append(3)
    rec.close()
    (m,) = list(FlightLog(rec.folder).messages(["/p"]))
    assert m.payload() == {"i": 1, "v": [1.0, 2.0], "nested": {"k": [1, 2]}}
    assert m.t_ns == 5


def test_numpy_values_and_non_finite_numbers_are_encoded(open_recorder: Factory) -> None:
    rec = open_recorder()
    p = rec.producer("/p", SCHEMA)
    p.record(
        1,
        {
            "cov": np.eye(3),
            "strided": np.arange(10.0)[::2],  # not contiguous: goes through tolist()
            "f32": np.float32(0.5),
            "n": np.int64(7),
            "age": float("inf"),
            "nan": float("nan"),
            "blob": b"\x00\x01",
        },
    )
    rec.close()
    (m,) = list(FlightLog(rec.folder).messages(["/p"]))
    assert m.payload() == {
        "cov": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "strided": [0.0, 2.0, 4.0, 6.0, 8.0],
        "f32": 0.5,
        "n": 7,
        "age": None,
        "nan": None,
        "blob": "AAE=",
    }


@pytest.mark.parametrize(
    "value",
    [
        np.zeros((480, 640), np.uint8),
        np.zeros((120, 160, 3), np.float32),
        np.zeros((3648, 5472), np.uint16),
        CameraFrame(t_ns=0, index=0, image=np.zeros((480, 640), np.uint8)),
    ],
    ids=["gray-u8", "rgb-float", "full-res-u16", "CameraFrame"],
)
def test_raw_camera_frames_are_refused_at_the_call_site(
    open_recorder: Factory, value: object
) -> None:
    rec = open_recorder()
    p = rec.producer("/p", SCHEMA)
    with pytest.raises(RecorderPolicyError, match="raw camera frames"):
        p.record(0, {"frame": value})
    if isinstance(value, CameraFrame):
        with pytest.raises(RecorderPolicyError):
            p.record(0, value)  # type: ignore[arg-type]
    footer = rec.close()
    assert footer.producers["/p"].enqueued == 0


@pytest.mark.parametrize(
    "value",
    [
        np.zeros((16, 16)),  # ESKF covariance
        np.zeros((500, 2), np.float32),  # keypoints
        np.zeros((32, 32), np.uint8),  # small patch
        np.zeros((300, 128), np.float32),  # float descriptor table
    ],
)
def test_non_image_arrays_pass(value: np.ndarray) -> None:
    assert not looks_like_camera_frame(value)


def test_oversized_records_and_raw_bytes_are_programming_errors(open_recorder: Factory) -> None:
    rec = open_recorder(config=small_config(max_record_bytes=4096))
    p = rec.producer("/p", SCHEMA)
    with pytest.raises(RecorderPolicyError, match="at most 4096"):
        p.record(0, {"s": "x" * 5000})
    with pytest.raises(RecorderPolicyError, match="raw bytes"):
        p.record(0, {"jpeg": b"\xff" * 100_000})
    p.record(0, {"s": "fits"})
    assert rec.close().producers["/p"].written == 1


def test_unencodable_payloads_are_counted_not_raised(open_recorder: Factory) -> None:
    rec = open_recorder()
    p = rec.producer("/p", SCHEMA)
    p.record(0, {"obj": object()})
    p.record(1, {"i": 1})
    rec.flush()
    p.record(-5, {"i": 2})  # a negative or float time is a bug too, still not raised
    p.record(1.5, {"i": 3})  # type: ignore[arg-type]
    p.record(np.int64(7), {"i": 4})  # numpy integers are fine
    footer = rec.close()
    assert footer.producers["/p"].rejected == 3 and footer.rejected == 3
    assert footer.producers["/p"].written == 2
    events = [m.payload() for m in FlightLog(rec.folder).messages([EVENTS_TOPIC])]
    assert [e["kind"] for e in events] == [EventKind.UNSERIALISABLE] * 2
    assert "object" in events[0]["detail"]
    assert events[1]["count"] == 2 and "t_ns=1.5" in events[1]["detail"]


def test_records_after_close_are_counted_as_late(open_recorder: Factory) -> None:
    rec = open_recorder()
    p = rec.producer("/p", SCHEMA)
    rec.close()
    p.record(0, {"i": 0})
    assert rec.counters()["/p"].late == 1


def test_threads_sharing_a_producer_keep_exact_counters(open_recorder: Factory) -> None:
    rec = open_recorder(config=small_config(queue_capacity=64))
    p = rec.producer("/p", SCHEMA)
    n_threads, n = 4, 5000

    def work(k: int) -> None:
        for i in range(n):
            p.record(i, {"k": k, "i": i})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    footer = rec.close()
    c = footer.producers["/p"]
    assert c.enqueued == n_threads * n
    assert c.written + c.dropped == c.enqueued
    read = sum(1 for _ in FlightLog(rec.folder).messages(["/p"]))
    assert read == c.written
    marked = sum(
        m.payload()["count"]
        for m in FlightLog(rec.folder).messages([EVENTS_TOPIC])
        if m.payload()["kind"] == "dropped"
    )
    assert marked == c.dropped


def test_non_string_keys_take_the_slow_path_and_encode_the_same(open_recorder: Factory) -> None:
    # The hot path omits OPT_NON_STR_KEYS; such a payload must still be recorded, byte-identical
    # to what the option always on would give.
    payload = {1: "one", "two": 2, 3.5: [1, 2]}
    expected = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    assert encode_payload(payload) == expected
    rec = open_recorder()
    p = rec.producer("/p", SCHEMA)
    p.record(1, payload)
    footer = rec.close()
    assert footer.producers["/p"].written == 1 and footer.rejected == 0
    (m,) = list(FlightLog(rec.folder).messages(["/p"]))
    assert m.data == expected


def test_a_raw_frame_is_refused_even_beside_an_unencodable_value(open_recorder: Factory) -> None:
    # The raw-data checks run after encoding; a payload that fails to encode is checked too.
    rec = open_recorder()
    p = rec.producer("/p", SCHEMA)
    with pytest.raises(RecorderPolicyError, match="raw camera frames"):
        p.record(0, {"frame": np.zeros((480, 640), np.uint8), "obj": object()})
    assert rec.close().producers["/p"].rejected == 0


def test_small_records_skip_the_raw_checks_but_keep_every_value(open_recorder: Factory) -> None:
    # Below the size an image can encode to, arrays and bytes are recorded as they are.
    rec = open_recorder()
    p = rec.producer("/p", SCHEMA)
    p.record(0, {"patch": np.zeros((8, 8), np.uint8), "blob": b"\x01" * 100})
    rec.close()
    (m,) = list(FlightLog(rec.folder).messages(["/p"]))
    assert m.payload()["patch"] == [[0] * 8] * 8 and len(m.payload()["blob"]) == 136
