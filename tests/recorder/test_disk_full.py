"""Full disk (R2) on real small filesystems: degraded mode, exactly one ground-station alert,
no exception into producers, counters that add up, recovery when space comes back."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from terrafix.recorder import FlightLog, FlightRecorder, clean_footer
from terrafix.recorder.topics import EVENTS_TOPIC
from terrafix.recorder.torture import crash_payload, disk_full_on_small_fs, disk_full_trial
from terrafix.recorder.torture import tmpfs as mount_tmpfs
from terrafix.recorder.writer import MiB

from .conftest import SCHEMA, small_config


@pytest.fixture
def tmpfs_2m() -> Iterator[Path]:
    try:
        with mount_tmpfs(2 * MiB) as mnt:
            yield mnt
    except OSError as exc:  # reported as skipped, never as passed
        pytest.skip(f"cannot mount a tmpfs here: {exc}")


def _assert_trial(result: object) -> None:
    r = result
    assert r.producer_exceptions == 0  # type: ignore[attr-defined]
    assert r.alerts == 1  # type: ignore[attr-defined]
    assert r.lost_disk > 0 and r.degraded_episodes >= 1  # type: ignore[attr-defined]
    assert r.counters_consistent and r.read_back_matches  # type: ignore[attr-defined]
    assert r.clean_footer  # the reserve left room for the footer  # type: ignore[attr-defined]
    assert r.enqueued == r.written + r.dropped + r.lost_disk  # type: ignore[attr-defined]


def test_disk_full_on_a_small_filesystem(tmp_path: Path) -> None:
    method, result = disk_full_on_small_fs(tmp_path, duration_s=1.5)
    assert method.startswith(("tmpfs", "RLIMIT_FSIZE"))
    _assert_trial(result)
    # rate-limited: ~1.5 s degraded at one error per 0.5 s, not one per failed batch
    assert 1 <= result.error_logs <= 6


def test_file_size_limit_gives_real_efbig_and_the_same_degraded_mode(tmp_path: Path) -> None:
    """The fallback for machines where mounting is not allowed, exercised here too."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "terrafix.recorder.torture",
            "diskfull",
            str(tmp_path / "f"),
            str(200 * 1024),
            "1.0",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(out.stdout)
    assert result["producer_exceptions"] == 0 and result["alerts"] == 1
    assert result["counters_consistent"] and result["read_back_matches"]
    assert result["lost_disk"] > 0
    # RLIMIT_FSIZE limits each file: a new segment gets written again, a new degraded episode
    # follows, and still only one alert.
    assert result["degraded_episodes"] >= 1


def test_recovers_when_space_comes_back(tmpfs_2m: Path) -> None:
    filler = tmpfs_2m / "filler"
    filler.write_bytes(b"\0" * (1 * MiB + 512 * 1024))
    alerts: list[str] = []
    cfg = small_config(reserve_bytes=64 * 1024, disk_retry_interval_s=0.05)
    rec = FlightRecorder(
        tmpfs_2m / "f", flight_id="R", config_hash="c", config=cfg, on_disk_full=alerts.append
    )
    p = rec.producer("/a", SCHEMA)
    i = 0
    while not rec.degraded:
        p.record(i, crash_payload(i))
        i += 1
        if i % 200 == 0:
            rec.flush()
    filler.unlink()
    ok = False
    deadline = time.monotonic() + 30
    while not ok and time.monotonic() < deadline:
        p.record(i, crash_payload(i))
        i += 1
        ok = rec.flush() and not rec.degraded
    assert ok
    for _ in range(100):
        p.record(i, crash_payload(i))
        i += 1
    footer = rec.close()
    assert alerts == ["FDR DISK FULL: recording degraded"]
    c = footer.producers["/a"]
    assert c.enqueued == i and c.enqueued == c.written + c.dropped + c.lost_disk
    kinds = [m.payload() for m in FlightLog(tmpfs_2m / "f").messages([EVENTS_TOPIC])]
    full = [k for k in kinds if k["kind"] == "disk_full"]
    recovered = [k for k in kinds if k["kind"] == "disk_recovered"]
    assert len(full) == 1 and recovered and recovered[0]["count"] > 0
    assert sum(1 for _ in FlightLog(tmpfs_2m / "f").messages(["/a"])) == c.written
    assert clean_footer(tmpfs_2m / "f")


def _fill(fs: Path) -> Path:
    """Fill the filesystem to the last byte (real ENOSPC), returning the filler to delete."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_a_disk_full_with_no_segment_open_is_logged_once_writing_works_again(
    tmpfs_2m: Path,
) -> None:
    """The disk fills while a segment is being started (here: the first one, at take-off):
    there is no file to put the disk_full event in then. The log must still say when the loss
    began, before it says it recovered, exactly once."""
    filler = _fill(tmpfs_2m)
    alerts: list[str] = []
    cfg = small_config(disk_retry_interval_s=0.05)
    rec = FlightRecorder(
        tmpfs_2m / "f", flight_id="S", config_hash="c", config=cfg, on_disk_full=alerts.append
    )
    assert rec.degraded
    p = rec.producer("/a", SCHEMA)
    for i in range(50):
        p.record(i, crash_payload(i))
    assert not rec.flush()
    filler.unlink()
    i, ok = 50, False
    deadline = time.monotonic() + 30
    while not ok and time.monotonic() < deadline:
        p.record(i, crash_payload(i))
        i += 1
        ok = rec.flush() and not rec.degraded
    assert ok
    footer = rec.close()
    assert alerts == ["FDR DISK FULL: recording degraded"]
    events = [m.payload() for m in FlightLog(tmpfs_2m / "f").messages([EVENTS_TOPIC])]
    kinds = [e["kind"] for e in events if e["kind"] in ("disk_full", "disk_recovered")]
    assert kinds == ["disk_full", "disk_recovered"]
    assert "opening the first segment" in events[[e["kind"] for e in events].index("disk_full")][
        "detail"
    ]
    c = footer.producers["/a"]
    assert c.lost_disk >= 50 and c.enqueued == c.written + c.dropped + c.lost_disk
    e = footer.producers[EVENTS_TOPIC]
    assert e.enqueued == e.written + e.dropped + e.lost_disk
    assert clean_footer(tmpfs_2m / "f")


def test_producers_never_wait_for_a_stuck_writer(tmpfs_2m: Path) -> None:
    """The alert callback blocks the writer thread; recording goes on, drops are counted."""
    release = threading.Event()
    entered = threading.Event()

    def stuck_alert(_: str) -> None:
        entered.set()
        release.wait(120)

    rec = FlightRecorder(
        tmpfs_2m / "f",
        flight_id="S",
        config_hash="c",
        on_disk_full=stuck_alert,
        config=small_config(reserve_bytes=64 * 1024, queue_capacity=1000),
    )
    p = rec.producer("/a", SCHEMA)
    payloads = [crash_payload(k) for k in range(64)]
    i = 0
    while not entered.is_set():
        p.record(i, payloads[i % 64])
        i += 1
        if i % 500 == 0:
            time.sleep(0.001)
    for _ in range(20_000):  # would hang here (pytest-timeout) if record() waited on the writer
        p.record(i, payloads[i % 64])
        i += 1
    release.set()
    footer = rec.close()
    c = footer.producers["/a"]
    assert c.enqueued == i and c.dropped >= 20_000 - 1000
    assert c.enqueued == c.written + c.dropped + c.lost_disk


def test_disk_full_trial_in_process_on_tmpfs(tmpfs_2m: Path) -> None:
    _assert_trial(disk_full_trial(tmpfs_2m / "f", duration_s=1.0, threads=3))
