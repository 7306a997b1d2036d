"""Crash safety (R4): real child processes killed with SIGKILL at random instants; every record
the child reported flushed reads back byte-identical."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from terrafix.recorder.torture import crash_trial, crash_trials


def test_one_kill_during_recording(tmp_path: Path) -> None:
    trial = crash_trial(tmp_path / "k", delay_s=0.7, flush_every=100)
    assert trial.flushed > 0  # the child got far enough for the check to mean something
    assert trial.lost == 0
    assert trial.read_back >= trial.flushed + 1
    assert trial.warnings >= 1  # the interrupted last segment is reported, not hidden


@pytest.mark.slow
def test_twenty_random_kill_points_lose_nothing_flushed(tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(1 << 30)  # new kill instants every run
    trials = crash_trials(20, seed=seed, workdir=tmp_path, max_delay_s=1.5)
    assert len(trials) == 20
    assert [t.lost for t in trials] == [0] * 20, (seed, trials)
    assert sum(t.flushed > 0 for t in trials) >= 12, (seed, trials)  # most land after real work
