"""Writer, segments, header/footer, capacity (R1, R2, R4): files are standard MCAP, rotated by
size, capped per flight with rollover records, and end with a footer the upload can check."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from mcap.reader import NonSeekingReader, make_reader

from terrafix.recorder import (
    FlightLog,
    FlightRecorder,
    RecorderConfig,
    RecorderError,
    clean_footer,
    footer_problem,
)
from terrafix.recorder.segments import segment_name
from terrafix.recorder.topics import EVENTS_TOPIC, FOOTER_METADATA, HEADER_METADATA
from terrafix.recorder.writer import MiB

from .conftest import SCHEMA

Factory = Callable[..., FlightRecorder]


def _fill(rec: FlightRecorder, topic: str, n: int, pad: int = 200) -> None:
    p = rec.producer(topic, SCHEMA)
    for i in range(n):
        p.record(1000 * i, {"i": i, "pad": "p" * (pad + i % 97)})
        if i % 500 == 499:
            rec.flush()


def test_header_footer_and_records_round_trip(open_recorder: Factory) -> None:
    rec = open_recorder(
        flight_id="F-42",
        config_hash="sha256:abcd",
        software_version="9.9.9",
        key_fingerprints={"upload": "SHA256:xyz", "manifest": "SHA256:uvw"},
    )
    imu = rec.producer("/fc/imu", SCHEMA)
    nav = rec.producer("/nav/solution", SCHEMA)
    for i in range(300):
        imu.record(10 * i, {"i": i, "a": [0.1 * i, 0.0, -9.81]})
        if i % 10 == 0:
            nav.record(10 * i, {"i": i, "lat_deg": 50.0 + i * 1e-5, "lon_deg": 30.0})
    footer = rec.close()
    assert footer.clean_shutdown and clean_footer(rec.folder)
    assert footer.records_written == 330 and footer.records_dropped == 0
    assert (
        footer.producers["/fc/imu"].written == 300
        and footer.producers["/nav/solution"].written == 30
    )

    log = FlightLog(rec.folder)
    h = log.header
    assert (h.flight_id, h.config_hash, h.software_version) == ("F-42", "sha256:abcd", "9.9.9")
    assert dict(h.key_fingerprints) == {"upload": "SHA256:xyz", "manifest": "SHA256:uvw"}
    assert log.footer == footer
    got = [(m.topic, m.t_ns, m.payload()["i"]) for m in log.messages()]
    assert [g for g in got if g[0] == "/fc/imu"] == [("/fc/imu", 10 * i, i) for i in range(300)]
    assert [g[2] for g in got if g[0] == "/nav/solution"] == list(range(0, 300, 10))
    assert log.warnings == []
    # the footer's bytes count is what the segments hold, up to the footer itself
    on_disk = sum(p.stat().st_size for p in log.segment_paths)
    assert 0 < on_disk - footer.bytes_written < 8192


def test_segments_are_standard_indexed_mcap(open_recorder: Factory) -> None:
    rec = open_recorder()
    _fill(rec, "/a", 2000)
    rec.close()
    paths = sorted(rec.folder.glob("segment-*.mcap"))
    assert len(paths) >= 3  # 64 KiB segments: rotated by size
    ours = {(m.segment, m.sequence): m.data for m in FlightLog(rec.folder).messages(["/a"])}
    total = 0
    for path in paths:
        with open(path, "rb") as fh:  # the mcap library's own readers, both kinds
            reader = make_reader(fh)
            summary = reader.get_summary()
            assert summary is not None and summary.statistics is not None
            msgs = [(c.topic, s, m) for s, c, m in reader.iter_messages(topics=["/a"])]
            assert summary.statistics.message_count == len(msgs)  # (/a is the only topic here)
            for topic, schema, m in msgs:
                assert topic == "/a" and schema is not None and schema.encoding == "jsonschema"
                assert orjson.loads(schema.data)["title"] == "test.Sample"
                assert ours[(path.name, m.sequence)] == m.data
            total += len(msgs)
            metadata = {m.name: m.metadata for m in reader.iter_metadata()}
            assert metadata[HEADER_METADATA]["flight_id"] == "T-001"
            assert metadata[HEADER_METADATA]["segment_index"] == str(int(path.stem[-5:]))
            assert (FOOTER_METADATA in metadata) == (path == paths[-1])
        with open(path, "rb") as fh:
            streamed = sum(1 for _ in NonSeekingReader(fh).iter_messages())
        assert streamed >= len(msgs)
        assert path.stat().st_size <= 64 * 1024 + 16 * 1024 + 8192  # segment + one batch + end
    assert total == 2000


def test_flight_cap_rolls_over_oldest_segments_and_keeps_the_header(tmp_path: Path) -> None:
    cfg = RecorderConfig(
        segment_bytes=64 * 1024,
        batch_bytes=16 * 1024,
        max_flight_bytes=1 * MiB + 200 * 1024,
        reserve_bytes=0,
    )
    rec = FlightRecorder(tmp_path / "f", flight_id="CAP", config_hash="c", config=cfg)
    p = rec.producer("/a", SCHEMA)
    peak = 0
    for i in range(12000):
        p.record(i, {"i": i, "pad": "z" * 300})
        if i % 250 == 249:
            rec.flush()
            peak = max(peak, sum(f.stat().st_size for f in (tmp_path / "f").iterdir()))
    footer = rec.close()
    assert peak <= cfg.max_flight_bytes
    assert footer.rollovers > 0 and footer.clean_shutdown
    log = FlightLog(tmp_path / "f")
    assert log.header.flight_id == "CAP"  # every remaining segment still names the flight
    assert segment_name(1) not in {p.name for p in log.segment_paths}
    rolls = [m.payload() for m in log.messages([EVENTS_TOPIC]) if m.payload()["kind"] == "rollover"]
    # rollover records of segments that were themselves rolled over are gone with them
    assert 0 < len(rolls) <= footer.rollovers and rolls[-1]["total"] == footer.rollovers
    kept = sum(1 for _ in log.messages(["/a"]))
    assert kept + footer.rolled_over_records >= 12000  # nothing else went missing
    assert footer.producers["/a"].written == 12000 and clean_footer(tmp_path / "f")


def test_producer_added_mid_flight_is_declared_in_later_segments(open_recorder: Factory) -> None:
    rec = open_recorder()
    _fill(rec, "/early", 800)
    late = rec.producer("/late", SCHEMA)
    for i in range(800):
        late.record(i, {"i": i, "pad": "q" * 200})
    rec.close()
    log = FlightLog(rec.folder)
    assert sum(1 for _ in log.messages(["/late"])) == 800
    assert log.warnings == []


def test_producer_registration_rules(open_recorder: Factory, tmp_path: Path) -> None:
    rec = open_recorder()
    a = rec.producer("/a", SCHEMA)
    assert rec.producer("/a", dict(SCHEMA)) is a
    with pytest.raises(RecorderError, match="another schema"):
        rec.producer("/a", {**SCHEMA, "title": "other"})
    with pytest.raises(RecorderError, match="reserved"):
        rec.producer("/fdr/mine", SCHEMA)
    with pytest.raises(RecorderError, match="topic"):
        rec.producer("bad topic", SCHEMA)
    with pytest.raises(RecorderError, match="object"):
        rec.producer("/arr", {"type": "array"})
    with pytest.raises(RecorderError, match="properties of its records"):
        rec.producer("/empty", {"type": "object"})
    rec.close()
    with pytest.raises(RecorderError, match="empty flight folder"):
        FlightRecorder(rec.folder, flight_id="again", config_hash="c")
    with pytest.raises(RecorderError, match="flight_id"):
        FlightRecorder(tmp_path / "x", flight_id="has space", config_hash="c")
    with pytest.raises(RecorderError, match="max_flight_bytes"):
        RecorderConfig(segment_bytes=64 * MiB, max_flight_bytes=100 * MiB)


def test_close_is_idempotent_and_context_manager_closes(tmp_path: Path) -> None:
    with FlightRecorder(tmp_path / "f", flight_id="C", config_hash="c") as rec:
        rec.producer("/a", SCHEMA).record(0, {"i": 0})
    assert clean_footer(tmp_path / "f")
    assert rec.close() is rec.close()
    assert rec.flush() is False  # closed: nothing can be flushed any more


def test_clean_footer_refuses_incomplete_or_tampered_logs(open_recorder: Factory) -> None:
    rec = open_recorder()
    _fill(rec, "/a", 1500)
    assert not clean_footer(rec.folder)  # still open: no footer yet
    rec.close()
    assert clean_footer(rec.folder)
    folder = rec.folder
    paths = sorted(folder.glob("segment-*.mcap"))

    extra = folder / segment_name(0)
    shutil.copy(paths[0], extra)
    assert "not listed" in (footer_problem(folder) or "")
    extra.unlink()

    moved = folder.parent / "moved.mcap"
    shutil.move(paths[1], moved)
    assert "missing" in (footer_problem(folder) or "")
    shutil.move(moved, paths[1])
    assert clean_footer(folder)

    last = paths[-1]
    data = last.read_bytes()
    last.write_bytes(data[:-20])  # torn end: the MCAP footer is gone
    assert "no readable footer" in (footer_problem(folder) or "")
    assert not clean_footer(folder.parent / "does-not-exist")
