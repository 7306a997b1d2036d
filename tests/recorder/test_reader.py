"""Damaged logs (R4): a segment cut anywhere reads up to the damage, with a warning."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from terrafix.recorder import FlightLog, FlightRecorder, RecorderFormatError, RecorderWarning
from terrafix.recorder.container import MESSAGE_HEAD

from .conftest import SCHEMA, small_config

Factory = Callable[..., FlightRecorder]


def _one_segment_flight(open_recorder: Factory, n: int = 200) -> tuple[Path, list[bytes]]:
    rec = open_recorder(config=small_config(segment_bytes=1 << 20))
    p = rec.producer("/a", SCHEMA)
    for i in range(n):
        p.record(i, {"i": i, "pad": "y" * (i % 50)})
    rec.close()
    (path,) = sorted(rec.folder.glob("segment-*.mcap"))
    data = [m.data for m in FlightLog(rec.folder).messages(["/a"])]
    return path, data


def _read(folder: Path) -> tuple[list[bytes], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecorderWarning)
        log = FlightLog(folder)
        data = [m.data for m in log.messages(["/a"])]
    assert [str(w.message) for w in caught] == log.warnings
    return data, log.warnings


def test_a_cut_at_any_byte_keeps_every_complete_record(open_recorder: Factory) -> None:
    path, original = _one_segment_flight(open_recorder)
    full = path.read_bytes()
    # Where each message record ends: a cut at or after that offset keeps the message.
    ends, pos = [], 0
    while (pos := full.find(b"\x05", pos)) != -1 and len(ends) < len(original):
        length = int.from_bytes(full[pos + 1 : pos + 9], "little")
        body = full[pos + MESSAGE_HEAD.size : pos + 9 + length]
        if length >= 22 and body == original[len(ends)]:
            ends.append(pos + 9 + length)
            pos = pos + 9 + length
        else:
            pos += 1
    assert len(ends) == len(original)
    rng = random.Random(3)
    cuts = sorted({*rng.sample(range(ends[0] - 40, len(full)), 120), ends[7], ends[7] + 1})
    for cut in cuts:
        path.write_bytes(full[:cut])
        got, warns = _read(path.parent)
        expected = sum(1 for e in ends if e <= cut)
        assert got == original[:expected], cut
        assert warns, cut  # never silent about a cut file
    path.write_bytes(full)
    assert _read(path.parent) == (original, [])


def test_zero_filled_tail_after_power_loss_is_reported_as_damage(open_recorder: Factory) -> None:
    path, original = _one_segment_flight(open_recorder)
    full = path.read_bytes()
    cut = len(full) // 2
    path.write_bytes(full[:cut] + b"\x00" * 4096)
    got, warns = _read(path.parent)
    assert 0 < len(got) < len(original) and got == original[: len(got)]
    assert any("zero-filled" in w for w in warns)


def test_damage_in_a_middle_segment_does_not_hide_later_ones(open_recorder: Factory) -> None:
    rec = open_recorder()
    p = rec.producer("/a", SCHEMA)
    for i in range(3000):
        p.record(i, {"i": i, "pad": "w" * 100})
    rec.close()
    paths = sorted(rec.folder.glob("segment-*.mcap"))
    assert len(paths) >= 3
    mid = paths[1]
    mid.write_bytes(mid.read_bytes()[:-5000])
    with pytest.warns(RecorderWarning, match=mid.name):
        got = [m.payload()["i"] for m in FlightLog(rec.folder).messages(["/a"])]
    assert got[-1] == 2999 and len(got) < 3000


def test_not_a_flight_folder(tmp_path: Path) -> None:
    with pytest.raises(RecorderFormatError, match="expected segment"):
        FlightLog(tmp_path)
    (tmp_path / "segment-00001.mcap").write_bytes(b"not mcap at all")
    with pytest.raises(RecorderFormatError, match="header"):
        FlightLog(tmp_path)
