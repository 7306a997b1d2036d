"""The in-flight tile feed end to end on the flat test world: only eligible poses write (sigma
<= 3 m PENDING, 3-5 m LOW_TRUST, nothing above 5 m, nothing dead-reckoned, nothing after a
spoof rejection), tiles land in the flight store with their provenance and a recorder record
each; the per-flight cap drops the oldest with a record; the store survives kill -9."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

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


def _solution(t_ns, n, e, height, sigma, label=SourceLabel.SATELLITE_ANCHORED, yaw=0.0,
              heading_sigma_deg=0.3, estimator_yaw=None):
    """A solution with the navigator's heading `yaw` (a calibrated 0.3 deg by default; None:
    none) and the estimator's yaw (default the same)."""
    lat, lon, alt = FRAME.ned_to_lla(np.array([n, e, GROUND_DOWN - height]))
    return NavSolution(t_ns, float(lat), float(lon), float(alt), np.zeros(3),
                       np.diag([sigma ** 2, sigma ** 2, 4.0]), np.eye(3),
                       yaw if estimator_yaw is None else estimator_yaw, label, 1.0, False,
                       heading_rad=yaw if heading_sigma_deg is not None else math.nan,
                       heading_var_rad2=math.radians(heading_sigma_deg) ** 2
                       if heading_sigma_deg is not None else math.nan)


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
    # the heading's sigma on the ground adds in quadrature: 2 m and 2.5 m -> 3.2 m
    assert judge(_solution(s, 0, 0, 150, 2.0), None, cfg, heading_sigma_m=2.5) == ("low", "")
    assert judge(_solution(s, 0, 0, 150, 2.0), None, cfg, heading_sigma_m=4.8) == \
        (None, "sigma_above_max")


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
            # the position's sigma with the heading's at the far corner (0.3 deg x 113 m)
            assert prov.flight_id == "f9" and prov.sigma_m <= 4.05
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


def test_heading_decides_where_the_frame_lands_and_whether_it_may(tmp_path):
    """The navigator's heading (not the estimator's yaw, 3 deg off here) places the frame, its
    sigma on the ground counts, and an uncalibrated heading (3 deg: 5.9 m at the far corner of
    a frame from 170 m) makes a frame with a 2 m position sigma ineligible; without any heading
    variance the configured compass-class 2.5 deg is taken (ineligible too)."""
    tex = ground_texture(7)
    cfg = FlightTilesConfig(enabled=True, folder=tmp_path / "ft", min_frame_interval_s=0.0,
                            drop_when_busy=False, idle_frames=2)
    ctx = FlightContext(FRAME, GROUND_ALT, INTR, EXTR)
    feed = FlightTileFeed(cfg, "f8", ctx, lambda t: T0 + timedelta(microseconds=t / 1e3))
    views = []
    add = feed.mosaic.add
    feed.mosaic.add = lambda v: (views.append(v), add(v))[1]  # what the worker is given
    plan = [dict(heading_sigma_deg=0.3, estimator_yaw=math.radians(3.0))] * 3 \
        + [dict(heading_sigma_deg=3.0)] * 2 + [dict(heading_sigma_deg=None)] * 2
    for k, kw in enumerate(plan):
        t = (k + 1) * 10**9
        n = -200.0 + 30.0 * k
        feed.on_input(AttitudeSample(t - 10**8, 0.0, 0.0, 0.0))
        feed.on_input(AttitudeSample(t + 10**8, 0.0, 0.0, 0.0))
        feed.on_input(CameraFrame(t, k, render(tex, camera_pose(n, 0.0, 170.0))))
        feed.on_solutions([_solution(t - 5 * 10**7, n - 1.0, 0.0, 170.0, 2.0, **kw),
                           _solution(t + 5 * 10**7, n + 1.0, 0.0, 170.0, 2.0, **kw)])
    stats = feed.close()
    assert stats.frames_eligible == 3 and stats.ineligible == {"sigma_above_max": 4}
    assert len(views) == 3
    for v in views:
        assert v.sigma_m == pytest.approx(math.hypot(2.0, math.radians(0.3) * 113.33), abs=0.01)
        assert np.allclose(v.R_cam_to_ned, camera_pose(0.0, 0.0, 170.0).R_cam_to_ned)
