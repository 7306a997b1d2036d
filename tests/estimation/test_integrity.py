"""IntegrityMonitor rules on a closed-form flight (fast, deterministic): labels and their
hysteresis, hint request rule, failsafes, no-estimate notice, LOST, search prior, backend
choice by config."""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrafix.estimation import (
    EstimateResumed,
    EstimationError,
    EstimatorConfig,
    FilterLost,
    HintRequested,
    InitialState,
    IntegrityMonitor,
    LabelChanged,
    NoEstimate,
    VisualBlackoutFailsafe,
    make_backend,
)
from terrafix.estimation.eskf import Eskf
from terrafix.estimation.isam2 import Isam2Smoother
from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import R_to_quat
from terrafix.measurements import AbsoluteFix, OdometryDelta, SourceLabel

from .helpers import TurnTruth, imu_stream

FRAME = LocalFrame(48.0, 35.0, 120.0)
TRUTH = TurnTruth(yaw_rate_radps=0.05)
FRAME_NS = 333_333_333


def navigator(sigma_p: float = 3.0, backend: str = "eskf") -> IntegrityMonitor:
    init = InitialState(0, TRUTH.position(0), TRUTH.velocity(0),
                        R_to_quat(TRUTH.R_body_to_ned(0)), np.eye(3) * sigma_p**2,
                        np.eye(3) * 0.04, np.eye(3) * 1e-4)
    return IntegrityMonitor(make_backend(EstimatorConfig(backend=backend), FRAME, init),
                     gnss_trusted=False)


def fix(t_ns: int) -> AbsoluteFix:
    lat, lon, alt = FRAME.ned_to_lla(TRUTH.position(t_ns * 1e-9))
    return AbsoluteFix(t_ns, float(lat), float(lon), float(alt), np.eye(2) * 9.0, math.inf,
                       float(lat), float(lon), 1.0, 100, 0.5)


def fly(nav: IntegrityMonitor, t0: float, t1: float, *, fixes: bool, blackout: bool = False,
        frames: bool = True, odometry: bool = False, last: list | None = None,
        fix_every: int = 1, failed_registrations: bool = False) -> list:
    """Feed IMU and frames over [t0, t1); returns the events.

    fixes: a registration on every `fix_every`-th frame (by frame number) gives an accepted
    fix (as the navigator does while confident: the other frames are not registered, and the
    integrity layer is not told about them). failed_registrations: every frame's registration
    is attempted and fails (told with on_registration)."""
    events = []
    t_frame = (math.floor(t0 * 1e9 / FRAME_NS) + 1) * FRAME_NS
    prev = last if last is not None else [None]
    for s in imu_stream(TRUTH, t0, t1)[1:]:
        nav.on_imu(s)
        if frames and s.t_ns >= t_frame:
            nav.on_frame_captured(s.t_ns)
            if odometry and not blackout and prev[0] is not None:
                d = TRUTH.position(s.t_ns * 1e-9) - TRUTH.position(prev[0] * 1e-9)
                nav.on_odometry(OdometryDelta(prev[0], s.t_ns, d[:2], np.eye(2) * 0.04, True,
                                              200))
            if fixes and not blackout and round(t_frame / FRAME_NS) % fix_every == 0:
                nav.on_registration(s.t_ns, fixed=nav.on_fix(fix(s.t_ns)).accepted)
            elif failed_registrations:
                nav.on_registration(s.t_ns, fixed=False)
            nav.on_frame(s.t_ns, blackout=blackout)
            prev[0] = None if blackout else s.t_ns
            t_frame += FRAME_NS
        if s.t_ns % 100_000_000 == 0:
            nav.solution(s.t_ns)
        events += nav.drain_events()
    return events


def label_changes(events: list) -> list[LabelChanged]:
    return [e for e in events if isinstance(e, LabelChanged)]


def hints(events: list) -> list[HintRequested]:
    return [e for e in events if isinstance(e, HintRequested)]


BACKENDS = pytest.mark.parametrize("backend", ["eskf", "isam2"])


def test_backend_is_chosen_by_config() -> None:
    assert isinstance(navigator(backend="eskf").backend, Eskf)
    assert isinstance(navigator(backend="isam2").backend, Isam2Smoother)
    with pytest.raises(ValueError):
        EstimatorConfig(backend="kalman")


@BACKENDS
def test_labels_anchored_then_dead_reckoned_on_the_first_blackout_frame(backend: str) -> None:
    nav = navigator(backend=backend)
    ev = fly(nav, 0.0, 3.0, fixes=True)
    assert nav.solution(3_000_000_000).label == SourceLabel.SATELLITE_ANCHORED
    assert nav.solution(3_000_000_000).anchor_age_s < 0.4
    ev = fly(nav, 3.0, 3.5, fixes=False, blackout=True)
    changes = [e for e in ev if isinstance(e, LabelChanged)]
    assert changes[0].new == SourceLabel.DEAD_RECKONED
    assert changes[0].t_ns <= 3_000_000_000 + FRAME_NS + 5_000_000


@BACKENDS
def test_anchored_is_held_between_anchors_then_visual_propagated(backend: str) -> None:
    """The anchor is kept for anchored_hold_s (5 s) after the last fix, then odometry
    carries the estimate: one change, when the anchors have really stopped."""
    nav = navigator(backend=backend)
    last = [None]
    fly(nav, 0.0, 3.0, fixes=True, odometry=True, last=last)
    assert nav.label == SourceLabel.SATELLITE_ANCHORED
    ev = fly(nav, 3.0, 7.5, fixes=False, odometry=True, last=last)
    assert label_changes(ev) == []
    assert nav.solution(7_500_000_000).anchor_age_s > 4.0
    ev = fly(nav, 7.5, 9.0, fixes=False, odometry=True, last=last)
    changes = label_changes(ev)
    assert [(c.old, c.new) for c in changes] == [(SourceLabel.SATELLITE_ANCHORED,
                                                  SourceLabel.VISUAL_PROPAGATED)]
    t_last_fix_s = 3.0 - 3.0 % (FRAME_NS * 1e-9)
    assert 5.0 <= changes[0].t_ns * 1e-9 - t_last_fix_s <= 5.2
    sol = nav.solution(9_000_000_000)
    assert sol.label == SourceLabel.VISUAL_PROPAGATED and sol.anchor_age_s > 5.0


@BACKENDS
def test_anchors_at_the_registration_pace_give_one_label_change(backend: str) -> None:
    """A fix on every 5th frame (1.67 s, the confident registration pace; the frames between
    are not registered): the label turns satellite_anchored once and stays (it used to
    flip to visual_propagated and back at every anchor). At the start odometry is there
    before the second fix: visual_propagated first, then anchored, then nothing."""
    nav = navigator(backend=backend)
    ev = fly(nav, 0.0, 20.0, fixes=True, fix_every=5, odometry=True)
    changes = label_changes(ev)
    assert [(c.old, c.new) for c in changes] == [
        (SourceLabel.DEAD_RECKONED, SourceLabel.VISUAL_PROPAGATED),
        (SourceLabel.VISUAL_PROPAGATED, SourceLabel.SATELLITE_ANCHORED)]
    assert changes[1].t_ns < 6_000_000_000
    assert hints(ev) == []


@BACKENDS
def test_better_label_waits_for_its_reason_to_hold(backend: str) -> None:
    """Worse at once, better only after label_upgrade_after_s: one lost frame is two changes
    (dead_reckoned with that frame, N8), and the way back waits for a new anchor stream."""
    nav = navigator(backend=backend)
    last = [None]
    fly(nav, 0.0, 6.0, fixes=True, fix_every=5, odometry=True, last=last)
    assert nav.label == SourceLabel.SATELLITE_ANCHORED
    ev = fly(nav, 6.0, 6.34, fixes=False, blackout=True, last=last)  # one frame
    assert [c.new for c in label_changes(ev)] == [SourceLabel.DEAD_RECKONED]
    t_lost = label_changes(ev)[0].t_ns
    ev = fly(nav, 6.34, 14.0, fixes=True, fix_every=5, odometry=True, last=last)
    changes = label_changes(ev)
    # odometry back with the next frame (2 s later visual_propagated), then the anchors
    assert [c.new for c in changes] == [SourceLabel.VISUAL_PROPAGATED,
                                        SourceLabel.SATELLITE_ANCHORED]
    assert changes[0].t_ns - t_lost >= 2_000_000_000
    # two fixes after the loss (5-frame pace) plus the 2 s the reason must hold
    assert changes[1].t_ns - t_lost >= 2_000_000_000 + 5 * FRAME_NS


def test_lone_fixes_far_apart_do_not_flip_the_label() -> None:
    """A fix every 8 s is not an anchor stream: visual_propagated throughout (with the
    anchor age saying how old the last fix is), not anchored/propagated at every fix."""
    nav = navigator()
    ev = fly(nav, 0.0, 40.0, fixes=True, fix_every=24, odometry=True)
    assert [c.new for c in label_changes(ev)] == [SourceLabel.VISUAL_PROPAGATED]


def test_missing_frames_for_400ms_count_as_blackout() -> None:
    nav = navigator()
    fly(nav, 0.0, 3.0, fixes=True)
    fly(nav, 3.0, 3.3, fixes=False, frames=False)
    assert nav.solution(3_300_000_000).label == SourceLabel.SATELLITE_ANCHORED
    fly(nav, 3.3, 3.9, fixes=False, frames=False)
    assert nav.solution(3_900_000_000).label == SourceLabel.DEAD_RECKONED


@BACKENDS
def test_hint_request_needs_three_failed_registrations_over_two_seconds(backend: str) -> None:
    nav = navigator(backend=backend)
    fly(nav, 0.0, 2.0, fixes=True)
    ev = fly(nav, 2.0, 3.9, fixes=False, failed_registrations=True)  # 5 failures in < 2 s
    assert hints(ev) == []
    ev = fly(nav, 3.9, 4.5, fixes=False, failed_registrations=True)
    req = hints(ev)
    assert len(req) == 1 and req[0].reason == "registration failing"
    assert req[0].frames_without_fix >= 3 and req[0].seconds_without_fix >= 2.0
    assert req[0].statustext().startswith("NAV need RELOC hint")
    ev = fly(nav, 4.5, 20.0, fixes=False, failed_registrations=True)
    assert hints(ev) == []  # repeated only every hint_repeat_s (30 s)
    nav2 = navigator(backend=backend)  # slow camera: 2 failures over 3 s -> not yet
    fly(nav2, 0.0, 2.0, fixes=True)
    for s in imu_stream(TRUTH, 2.0, 5.0)[1:]:
        nav2.on_imu(s)
        if s.t_ns in (3_000_000_000, 4_500_000_000):
            nav2.on_frame_captured(s.t_ns)
            nav2.on_registration(s.t_ns, fixed=False)
            nav2.on_frame(s.t_ns, blackout=False)
    assert hints(nav2.drain_events()) == []


@BACKENDS
def test_no_hint_while_registration_is_skipped_because_confident(backend: str) -> None:
    """Frames with odometry but no registration attempt (the estimate is confident) are no
    failure, however long it lasts while the radius stays within its limit."""
    nav = navigator(backend=backend)
    last = [None]
    fly(nav, 0.0, 2.0, fixes=True, odometry=True, last=last)
    ev = fly(nav, 2.0, 14.0, fixes=False, odometry=True, last=last)
    assert nav.search_prior().radius95_m < nav.config.hint_radius95_m
    assert hints(ev) == []


def test_hint_after_blackout_frames_and_a_fix_resets_the_count() -> None:
    """Frames without texture count like failed registrations (no fix can come from them,
    the estimate dead-reckons: N8); an accepted fix starts the count again."""
    nav = navigator()
    fly(nav, 0.0, 2.0, fixes=True)
    ev = fly(nav, 2.0, 4.5, fixes=False, blackout=True)
    assert len(hints(ev)) == 1
    fly(nav, 4.5, 5.0, fixes=True)
    ev = fly(nav, 5.0, 6.5, fixes=False, failed_registrations=True)
    assert hints(ev) == []


def test_an_isolated_failure_does_not_start_the_hint_clock_early() -> None:
    """One lost frame, seconds later a cloud: the hint comes ≥ 2 s into the cloud (a run of
    failures), not with the cloud's second frame because of the old, isolated failure."""
    nav = navigator()
    last = [None]
    fly(nav, 0.0, 2.0, fixes=True, odometry=True, last=last)
    fly(nav, 2.0, 2.34, fixes=False, blackout=True, last=last)  # one frame
    fly(nav, 2.34, 6.0, fixes=False, odometry=True, last=last)
    ev = fly(nav, 6.0, 9.0, fixes=False, blackout=True, last=last)
    req = hints(ev)
    assert len(req) == 1 and req[0].t_ns >= 6_000_000_000 + 2_000_000_000
    assert req[0].frames_without_fix >= 3


def test_hint_when_the_radius_passes_its_limit() -> None:
    nav = navigator(sigma_p=50.0)  # 95% radius ≈ 122 m: beyond 100 m, not a failsafe
    ev = fly(nav, 0.0, 0.5, fixes=False, odometry=True)
    req = hints(ev)
    assert len(req) == 1 and req[0].reason == "radius" and req[0].radius95_m > 100.0
    assert "r95" in req[0].statustext()
    assert not nav.failsafe


def test_radius_beyond_500m_is_an_explicit_no_fix() -> None:
    nav = navigator(sigma_p=250.0)  # 95% radius ≈ 612 m
    sol = nav.solution(0)
    assert sol.failsafe and sol.label == SourceLabel.NO_FIX
    ev = nav.drain_events()
    fs = [e for e in ev if isinstance(e, VisualBlackoutFailsafe)]
    assert fs and "r95" in fs[0].reason and fs[0].radius95_m > 500.0
    ev = fly(nav, 0.0, 2.0, fixes=True)
    assert not nav.solution(2_000_000_000).failsafe


def test_no_estimate_is_said_once_after_3s_then_resumed() -> None:
    nav = navigator(sigma_p=250.0)  # starts in failsafe: no usable estimate
    ev = fly(nav, 0.0, 3.5, fixes=False, frames=False)
    no_est = [e for e in ev if isinstance(e, NoEstimate)]
    assert len(no_est) == 1 and 3.0 <= no_est[0].t_ns * 1e-9 < 3.2
    ev = fly(nav, 3.5, 6.0, fixes=True)
    assert not any(isinstance(e, NoEstimate) for e in ev)
    assert len([e for e in ev if isinstance(e, EstimateResumed)]) == 1


def test_watchdog_notices_a_stalled_pipeline() -> None:
    nav = navigator()
    fly(nav, 0.0, 1.0, fixes=True)  # last solution at 0.9 s
    nav.watchdog(3_500_000_000)
    assert not any(isinstance(e, NoEstimate) for e in nav.drain_events())
    nav.watchdog(4_000_000_000)
    nav.watchdog(5_000_000_000)
    assert len([e for e in nav.drain_events() if isinstance(e, NoEstimate)]) == 1


def test_lost_backend_is_reported_once_and_fails_safe() -> None:
    nav = navigator()
    fly(nav, 0.0, 1.0, fixes=True)
    nav.backend.state.cov[3, 3] = -1.0  # the covariance stops being positive definite
    sol = nav.solution(1_000_000_000)
    assert sol.failsafe and sol.label == SourceLabel.NO_FIX
    nav.solution(1_100_000_000)
    lost = [e for e in nav.drain_events() if isinstance(e, FilterLost)]
    assert len(lost) == 1


def test_search_prior_is_centred_on_the_estimate_with_its_95_radius() -> None:
    nav = navigator()
    fly(nav, 0.0, 2.0, fixes=True)
    sp = nav.search_prior()
    lat, lon, _ = FRAME.ned_to_lla(nav.backend.estimate().p_ned_m)
    assert sp.confident and sp.lat_deg == pytest.approx(float(lat))
    assert sp.lon_deg == pytest.approx(float(lon)) and 0.5 < sp.radius95_m < 10.0


def test_hint_radius_must_be_positive() -> None:
    nav = navigator()
    with pytest.raises(EstimationError):
        nav.on_hint(0, 48.0, 35.0, -5.0)


@pytest.mark.parametrize("backend", ["eskf", "isam2"])
def test_spoof_closure_keeps_the_estimate_when_the_reference_knows_less(backend):
    """At a spoof closure the estimate falls back onto the GNSS-free reference only when that
    is the tighter answer. A reference that coasted (298 m radius, 233 m away, as in
    ArduPlane SITL after a climb-out off the imagery) is fused into the estimate, whose
    covariance grows to cover what the spoof may have dragged; a tight reference that
    disagrees is fallen back onto, as before."""
    nav = navigator(backend=backend)
    fly(nav, 0.0, 3.0, fixes=True)
    t = 3_000_000_000
    est = nav.backend.estimate()
    p0 = np.asarray(est.p_ned_m[:2], dtype=np.float64).copy()
    P0 = np.asarray(est.cov_p_ned_m2[:2, :2], dtype=np.float64).copy()
    drag = nav.reference.drag_cover_cov()
    assert drag[0, 0] == pytest.approx(nav.reference.cusum.threshold_m ** 2 / 5.991, rel=1e-3)
    Pv0 = np.asarray(est.cov_v_ned_m2s2[:2, :2], dtype=np.float64).copy()
    drag_v = nav.reference.drag_velocity_cov(t)
    # a rate below the sequential test's allowance never accumulates: at least that much
    assert drag_v[0, 0] >= nav.reference.cusum.last_allowance_mps ** 2 / 5.9915 - 1e-12

    coasted = np.eye(2) * (298.0 ** 2 / 5.991)
    nav._fall_back(t, est, p0 + np.array([233.0 * 0.6, 233.0 * 0.8]), coasted)
    after = nav.backend.estimate()
    assert np.hypot(*(after.p_ned_m[:2] - p0)) < 3.0  # barely moved towards the far reference
    P1 = after.cov_p_ned_m2[:2, :2]
    assert np.trace(P1) > np.trace(P0) + 0.8 * np.trace(drag)  # grown by the drag cover
    assert np.trace(P1) < np.trace(P0 + drag) + 1.0
    # the fused velocity may carry the pull-off's rate: its covariance grows by that too
    Pv1 = after.cov_v_ned_m2s2[:2, :2]
    assert np.trace(Pv1) > np.trace(Pv0) + 0.8 * np.trace(drag_v)

    est = nav.backend.estimate()
    tight = np.eye(2) * 4.0
    target = np.asarray(est.p_ned_m[:2]) + np.array([0.0, 40.0])
    nav._fall_back(t, est, target, tight)
    after = nav.backend.estimate()
    np.testing.assert_allclose(after.p_ned_m[:2], target, atol=1e-6)
    np.testing.assert_allclose(after.cov_p_ned_m2[:2, :2], tight, atol=1e-6)
