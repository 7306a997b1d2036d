"""The in-flight tile feed end to end on the flat test world: only eligible poses write (sigma
<= 3 m PENDING, 3-5 m LOW_TRUST, nothing above 5 m, nothing dead-reckoned, nothing after a
spoof rejection), tiles land in the flight store with their provenance and a recorder record
each; the per-flight cap drops the oldest with a record; the store survives kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from terrafix.estimation.events import SpoofRejected
from terrafix.geo.tiles import TileId
from terrafix.mapping.eligibility import EligibilityConfig, judge
from terrafix.mapping.flight_store import open_flight_store, put_flight_tile
from terrafix.mapping.provenance import TileProvenance, extract
from terrafix.mapping.tile_feed import FlightTileFeed, FlightTilesConfig
from terrafix.measurements import AttitudeSample, CameraFrame, NavSolution, SourceLabel
from terrafix.navigation.navigator import FlightContext
from terrafix.tiles.records import VotingStatus

from .scene import EXTR, FRAME, GROUND_ALT, GROUND_DOWN, INTR, camera_pose, ground_texture, render

T0 = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def _solution(t_ns, n, e, height, sigma, label=SourceLabel.SATELLITE_ANCHORED, yaw=0.0):
    lat, lon, alt = FRAME.ned_to_lla(np.array([n, e, GROUND_DOWN - height]))
    return NavSolution(t_ns, float(lat), float(lon), float(alt), np.zeros(3),
                       np.diag([sigma ** 2, sigma ** 2, 4.0]), np.eye(3), yaw, label, 1.0, False)


def test_judge_gates_sigma_label_and_spoof():
    cfg = EligibilityConfig()
    s = 10**9
    assert judge(_solution(s, 0, 0, 150, 2.9), None, cfg) == ("normal", "")
    assert judge(_solution(s, 0, 0, 150, 4.9), None, cfg) == ("low", "")
    assert judge(_solution(s, 0, 0, 150, 5.1), None, cfg) == (None, "sigma_above_max")
    assert judge(_solution(s, 0, 0, 150, 1.0, SourceLabel.DEAD_RECKONED), None, cfg) == \
        (None, "dead_reckoned")
    assert judge(_solution(s, 0, 0, 150, 1.0), s - 10**9, cfg) == (None, "spoof_rejected")
    assert judge(_solution(s, 0, 0, 150, 1.0), s - 6 * 10**9, cfg) == ("normal", "")


def test_feed_writes_only_eligible_poses(tmp_path):
    tex = ground_texture(7)
    records = []
    cfg = FlightTilesConfig(enabled=True, folder=tmp_path / "ft", min_frame_interval_s=0.0,
                            drop_when_busy=False, idle_frames=2)
    ctx = FlightContext(FRAME, GROUND_ALT, INTR, EXTR)
    feed = FlightTileFeed(cfg, "f9", ctx, lambda t: T0 + timedelta(microseconds=t / 1e3),
                          on_record=lambda topic, d: records.append((topic, d)))
    # flying north at 170 m, one frame per second; sigma and labels change along the way
    anchored, visual = SourceLabel.SATELLITE_ANCHORED, SourceLabel.VISUAL_PROPAGATED
    plan = [(2.0, anchored)] * 4 + [(4.0, visual)] * 4 + [(6.0, visual)] * 2 \
        + [(1.0, SourceLabel.DEAD_RECKONED)] * 2 + [(1.0, anchored)] * 2
    for k, (sigma, label) in enumerate(plan):
        t = (k + 1) * 10**9
        n = -200.0 + 30.0 * k
        feed.on_input(AttitudeSample(t - 10**8, 0.0, 0.0, 0.0))
        feed.on_input(AttitudeSample(t + 10**8, 0.0, 0.0, 0.0))
        feed.on_input(CameraFrame(t, k, render(tex, camera_pose(n, 0.0, 170.0))))
        if k == 12:
            feed.on_events([SpoofRejected(t - 10**8, "innovation", 40.0, 50.0, 1)])
        feed.on_solutions([_solution(t - 5 * 10**7, n - 1.0, 0.0, 170.0, sigma, label),
                           _solution(t + 5 * 10**7, n + 1.0, 0.0, 170.0, sigma, label)])
    stats = feed.close()
    assert stats.frames_judged == len(plan)
    assert stats.frames_eligible == 8
    assert stats.frames_low_trust == 4
    assert stats.ineligible == {"sigma_above_max": 2, "dead_reckoned": 2, "spoof_rejected": 2}
    with open_flight_store(feed.root) as store:
        rows = list(store.backend.iter_records())
        assert rows and len(rows) == stats.tiles_stored
        for r in rows:
            prov = extract(store.read_tile(r.tile))
            assert prov.flight_id == "f9" and prov.sigma_m <= 4.0 + 1e-6
            assert r.voting_status == (VotingStatus.PENDING if prov.sigma_m <= 3.0
                                       else VotingStatus.LOW_TRUST)
            assert prov.captured_utc <= T0 + timedelta(seconds=8.1)  # nothing after frame 8
    tile_records = [d for topic, d in records if topic == "mapping/tile"]
    assert sorted(d["sha256"] for d in tile_records) == sorted(r.sha256 for r in rows)
    assert all("data" not in d for d in tile_records)


def _prov(i: int) -> TileProvenance:
    return TileProvenance("f1", T0 + timedelta(seconds=i), 2.0, "normal", (), None)


def test_cap_drops_the_oldest_with_a_record(tmp_path):
    rng = np.random.default_rng(0)
    records = []
    with open_flight_store(tmp_path / "f1", cap_bytes=1 << 20) as store:
        tiles = [TileId(19, 1000 + i, 2000) for i in range(40)]
        for i, t in enumerate(tiles):
            img = rng.integers(0, 255, (256, 256), dtype=np.uint8)  # ~60 KB each
            put_flight_tile(store, t, img, _prov(i), lambda topic, d: records.append((topic, d)))
        kept = {r.tile for r in store.backend.iter_records()}
        assert store.backend.totals()[1] <= 1 << 20
    dropped = [d["tile"] for topic, d in records if topic == "mapping/tile_dropped"]
    assert dropped and tiles[-1] in kept
    assert all(f"{t.z}/{t.x}/{t.y}" in dropped for t in tiles if t not in kept)
    order = [tuple(map(int, d.split("/"))) for d in dropped]
    assert order == sorted(order)  # the oldest first


WRITER = """
import sys, numpy as np
from datetime import UTC, datetime, timedelta
from terrafix.geo.tiles import TileId
from terrafix.mapping.flight_store import open_flight_store, put_flight_tile
from terrafix.mapping.provenance import TileProvenance
store = open_flight_store(sys.argv[1])
rng = np.random.default_rng(1)
t0 = datetime(2026, 6, 1, tzinfo=UTC)
print("ready", flush=True)
for i in range(100000):
    put_flight_tile(store, TileId(19, 5000 + i % 300, 7000 + i // 300),
                    rng.integers(0, 255, (256, 256), dtype=np.uint8),
                    TileProvenance("f1", t0 + timedelta(seconds=i), 2.0, "normal", (), None))
"""


def test_flight_store_survives_kill_9(tmp_path):
    root = tmp_path / "f1"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    for k in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5 + 0.4 * k)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with open_flight_store(root) as store:  # reconciliation repairs what the kill left
            rows = list(store.backend.iter_records())
            assert rows
            for r in rows:  # every row's file is there with its bytes
                extract(store.read_tile(r.tile))
        with open_flight_store(root) as store:
            assert store.reconcile_report.clean
