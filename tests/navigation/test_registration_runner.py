"""Registration off the navigation thread: the runner contract, and the navigator fusing fixes
that come back late, at their frames' capture times.

The navigator tests use truth-derived fixes (truth + 3 m noise, from a worker that takes
`DELAY_S` like a real match) instead of the visual positioner, so that the late-fusion logic
is tested on its own and quickly; the real positioner runs through this path in the live demo
test (test_fly.py) and `bench/live.py`.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from terrafix.app.replay import flight_context
from terrafix.inference.thermal import ThermalState
from terrafix.measurements import AbsoluteFix, CameraFrame, SourceLabel
from terrafix.navigation.navigator import Navigator, NavigatorConfig
from terrafix.navigation.registration_runner import (
    InlineRegistration,
    RegistrationJob,
    ThreadedRegistration,
)
from terrafix.sim.dataset import load_dataset
from terrafix.vision.registration import RegistrationResult
from tests.navigation.navdata import synthetic_flight

S = 1_000_000_000
DELAY_S = 0.25
SPEED_X = 4.0


def _result(t_ns: int, fix: AbsoluteFix | None, reason: str = "") -> RegistrationResult:
    empty = np.zeros(0, dtype=np.int64)
    return RegistrationResult(t_ns, fix, reason, 17, empty, empty, empty, 0, 0, 0.0, 0.0, 0, "",
                              ThermalState(t_ns, "unavailable", None))


def _job(t_ns: int = 1, index: int = 0) -> RegistrationJob:
    frame = CameraFrame(t_ns, index, np.zeros((4, 4), np.uint8))
    return RegistrationJob(frame, np.eye(3), 300.0, None)


def test_threaded_runner_runs_one_job_at_a_time_and_survives_a_failing_match():
    release = threading.Event()
    calls: list[int] = []

    def locate(frame, R, alt, prior):
        calls.append(frame.index)
        release.wait(5.0)
        if frame.index == 1:
            raise RuntimeError("map chunk unreadable")
        return _result(frame.t_ns, None, "too few inliers")

    runner = ThreadedRegistration(locate)
    try:
        assert runner.submit(_job(10, 0))
        assert runner.busy
        assert not runner.submit(_job(20, 1)), "a second job was accepted while one is in flight"
        assert runner.poll() == []
        release.set()
        assert runner.wait_idle(5.0)
        (done,) = runner.poll()
        assert done.job.frame.index == 0 and done.result is not None
        assert done.result.reason == "too few inliers" and done.wall_ms >= 0.0
        assert runner.submit(_job(30, 1))
        assert runner.wait_idle(5.0)
        (failed,) = runner.poll()
        assert failed.result is None and "map chunk unreadable" in failed.error
        assert calls == [0, 1]
    finally:
        runner.close()
    assert not runner.submit(_job(40, 2)), "a closed runner accepted a job"


def test_inline_runner_returns_the_result_at_the_next_poll():
    runner = InlineRegistration(lambda f, R, a, p: _result(f.t_ns, None, "degenerate"))
    assert runner.submit(_job(5, 3)) and not runner.busy
    (done,) = runner.poll()
    assert done.job.frame.index == 3 and done.result.reason == "degenerate"
    assert runner.poll() == []


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    """20 s over synthetic farmland, GNSS jammed from 4 s, no blackout."""
    root = tmp_path_factory.mktemp("late-fixes")
    return load_dataset(synthetic_flight(root, seed=8, duration_s=20.0, jam_at_s=4.0,
                                         blackout=None))


def truth_locate(ds, sigma_m: float, delay_s: float):
    """A stand-in for the visual positioner: the truth at the frame time plus noise of the
    covariance it reports, after `delay_s` of (sleeping) work."""
    rng = np.random.default_rng(0)
    frame_ned = ds.local_frame

    def locate(frame, R, alt_m, prior):
        time.sleep(delay_s)
        p = ds.truth_p_ned_at(np.array([frame.t_ns]))[0]
        n, e = p[:2] + rng.normal(0.0, sigma_m, 2)
        lat, lon, alt = frame_ned.ned_to_lla(np.array([n, e, p[2]]))
        fix = AbsoluteFix(frame.t_ns, float(lat), float(lon), float(alt),
                          np.eye(2) * sigma_m ** 2, float("inf"), float(lat), float(lon),
                          0.5, 200, 0.6)
        return _result(frame.t_ns, fix)

    return locate


def _fly(ds, runner, pace: bool, cfg: NavigatorConfig | None = None):
    """Feed the flight like the live program: paced at SPEED_X real time, polling the
    navigator between samples; returns the navigator and its outputs."""
    nav = Navigator(cfg or NavigatorConfig(), flight_context(ds), None, runner)
    t0_wall = time.monotonic()
    t0_ds = None
    for s in ds.iter_all():
        if pace:
            t0_ds = s.t_ns if t0_ds is None else t0_ds
            wait = (s.t_ns - t0_ds) / S / SPEED_X - (time.monotonic() - t0_wall)
            if wait > 0:
                time.sleep(wait)
        nav.feed(s)
    nav.flush()
    out = nav.drain_solutions(), nav.drain_frame_reports(), nav.drain_events()
    nav.close()
    return nav, *out


def _errors(ds, sols, after_s: float) -> np.ndarray:
    sols = [s for s in sols if s.t_ns > after_s * S]
    t = np.array([s.t_ns for s in sols])
    est = ds.local_frame.lla_to_ned(np.array([s.lat_deg for s in sols]),
                                    np.array([s.lon_deg for s in sols]),
                                    np.array([s.alt_m for s in sols]))
    return np.linalg.norm(est[:, :2] - ds.truth_p_ned_at(t)[:, :2], axis=1)


def test_late_fixes_from_the_worker_are_fused_at_their_capture_times(flight):
    locate = truth_locate(flight, sigma_m=3.0, delay_s=DELAY_S / SPEED_X)
    nav, sols, reports, _ = _fly(flight, ThreadedRegistration(locate), pace=True)
    fused = [r for r in reports if r.fix_fused]
    assert len(fused) >= 5, f"only {len(fused)} late fixes fused: {nav.stats.as_dict()}"
    for r in fused:
        assert r.registered and r.fix_accepted_by_vision and r.fix_reason == ""
    # every report's fix is the one for its own frame (capture time, not arrival time)
    capture_t = {r.index: r.t_ns for r in reports}
    assert all(capture_t[r.index] == r.t_ns for r in fused)
    # anchored: labels say so and the track stays on the truth after the jamming
    after_jam = [s for s in sols if s.t_ns > 6 * S]
    assert sum(s.label == SourceLabel.SATELLITE_ANCHORED for s in after_jam) \
        > 0.5 * len(after_jam)
    err = _errors(flight, sols, after_s=6.0)
    assert np.percentile(err, 95) < 10.0, f"p95 {np.percentile(err, 95):.1f} m with late fixes"


def test_frames_are_skipped_not_queued_while_a_match_is_in_flight(flight):
    # every frame wants a match, and a match is slower than the frame interval (3 Hz):
    # frames meanwhile are skipped and counted
    cfg = NavigatorConfig()
    cfg = cfg.model_copy(update={"registration": cfg.registration.model_copy(
        update={"anchor_interval_s": 0.0, "retry_interval_s": 0.0})})
    locate = truth_locate(flight, sigma_m=3.0, delay_s=0.6 / SPEED_X)
    nav, _, reports, _ = _fly(flight, ThreadedRegistration(locate), pace=True, cfg=cfg)
    st = nav.stats
    assert st.registrations_skipped_busy > 0
    assert st.registrations > 0 and st.fixes_fused > 0
    assert len(reports) == st.frames, "a frame's report was lost"
    assert sorted(r.index for r in reports) == sorted({r.index for r in reports})


def test_the_inline_runner_makes_a_replay_reproducible(flight):
    runs = []
    for _ in range(2):
        locate = truth_locate(flight, sigma_m=3.0, delay_s=0.0)
        _, sols, reports, _ = _fly(flight, InlineRegistration(locate), pace=False)
        runs.append((sols, reports))
    (sols_a, rep_a), (sols_b, rep_b) = runs
    assert [r.fix_fused for r in rep_a] == [r.fix_fused for r in rep_b]
    assert sum(r.fix_fused is True for r in rep_a) >= 10
    assert [(s.t_ns, s.lat_deg, s.lon_deg) for s in sols_a] == \
        [(s.t_ns, s.lat_deg, s.lon_deg) for s in sols_b]
    assert np.percentile(_errors(flight, sols_a, after_s=6.0), 95) < 10.0
