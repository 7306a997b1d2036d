"""Resumable upload: a real uploader process is killed with SIGKILL at random points of its
run, then rerun until it finishes; afterwards every tile is on the ground exactly once and
marked UPLOADED in the flight store (nothing lost, nothing stored twice: REQUIREMENTS U2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from terrafix.mapping.flight_store import open_flight_store
from terrafix.tiles.records import VotingStatus

from .fixtures import make_flight_store

REPO = Path(__file__).resolve().parents[2]


def _worker(root: Path, ground) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.upload.upload_worker", str(root), ground.url,
         str(ground.pki.ca_cert), str(ground.key_path), "4"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_at_random_points_then_rerun_loses_and_duplicates_nothing(ground, tmp_path):
    root = tmp_path / "f1"
    n = 60
    make_flight_store(root, "f1", n)
    with open_flight_store(root) as store:
        expected = {r.sha256 for r in store.backend.iter_records()}
    # a window inside each batch, and a whole upload (15 batches of 4) of 1.5 s: longer than
    # four kills at up to 0.4 s each take from it (at 0.03 s a fast machine finished the
    # upload after three kills, and the test could not kill it a fourth time)
    ground.double.script_batches(*[{"delay_s": 0.1}] * 400)
    rng = np.random.default_rng(7)
    kills = 0
    for _ in range(8):
        proc = _worker(root, ground)
        assert proc.stdout.readline().strip() == "started"
        time.sleep(float(rng.uniform(0.0, 0.4)))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(30)
    assert kills >= 4
    for _ in range(5):  # reruns until done
        proc = _worker(root, ground)
        proc.stdout.readline()
        if proc.wait(120) == 0:
            break
    assert proc.returncode == 0, proc.stderr.read()
    stored = ground.double.stored_shas()
    assert len(stored) == len(set(stored)), "a tile was stored twice"
    assert set(stored) == expected, "a tile was lost"
    with open_flight_store(root) as store:
        statuses = {r.voting_status for r in store.backend.iter_records()}
        assert statuses == {VotingStatus.UPLOADED}
        assert store.reconcile_report.clean
