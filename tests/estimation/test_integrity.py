"""IntegrityMonitor rules on a closed-form flight (fast, deterministic): labels, hint request
timing, failsafes, no-estimate notice, LOST, search prior, backend choice by config."""

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
        frames: bool = True, odometry: bool = False, last: list | None = None) -> list:
    """Feed IMU and frames over [t0, t1); returns the events."""
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
            if fixes and not blackout:
                nav.on_fix(fix(s.t_ns))
            nav.on_frame(s.t_ns, blackout=blackout)
            prev[0] = None if blackout else s.t_ns
            t_frame += FRAME_NS
        if s.t_ns % 100_000_000 == 0:
            nav.solution(s.t_ns)
        events += nav.drain_events()
    return events


def test_backend_is_chosen_by_config() -> None:
    assert isinstance(navigator(backend="eskf").backend, Eskf)
    assert isinstance(navigator(backend="isam2").backend, Isam2Smoother)
    with pytest.raises(ValueError):
        EstimatorConfig(backend="kalman")


def test_labels_anchored_then_dead_reckoned_on_the_first_blackout_frame() -> None:
    nav = navigator()
    ev = fly(nav, 0.0, 3.0, fixes=True)
    assert nav.solution(3_000_000_000).label == SourceLabel.SATELLITE_ANCHORED
    assert nav.solution(3_000_000_000).anchor_age_s < 0.4
    ev = fly(nav, 3.0, 3.5, fixes=False, blackout=True)
    changes = [e for e in ev if isinstance(e, LabelChanged)]
    assert changes[0].new == SourceLabel.DEAD_RECKONED
    assert changes[0].t_ns <= 3_000_000_000 + FRAME_NS + 5_000_000


def test_visual_propagated_while_odometry_flows_without_fixes() -> None:
    nav = navigator()
    last = [None]
    fly(nav, 0.0, 2.0, fixes=True, odometry=True, last=last)
    fly(nav, 2.0, 5.0, fixes=False, odometry=True, last=last)
    sol = nav.solution(5_000_000_000)
    assert sol.label == SourceLabel.VISUAL_PROPAGATED and 2.5 < sol.anchor_age_s < 3.5


def test_missing_frames_for_400ms_count_as_blackout() -> None:
    nav = navigator()
    fly(nav, 0.0, 2.0, fixes=True)
    fly(nav, 2.0, 2.3, fixes=False, frames=False)
    assert nav.solution(2_300_000_000).label == SourceLabel.SATELLITE_ANCHORED
    fly(nav, 2.3, 2.9, fixes=False, frames=False)
    assert nav.solution(2_900_000_000).label == SourceLabel.DEAD_RECKONED


def test_hint_request_needs_three_frames_and_two_seconds() -> None:
    nav = navigator()
    fly(nav, 0.0, 2.0, fixes=True)
    ev = fly(nav, 2.0, 3.9, fixes=False)  # 5 frames but < 2 s
    assert not any(isinstance(e, HintRequested) for e in ev)
    ev = fly(nav, 3.9, 4.5, fixes=False)
    req = [e for e in ev if isinstance(e, HintRequested)]
    assert len(req) == 1 and req[0].seconds_without_fix >= 2.0
    assert req[0].frames_without_fix >= 3
    nav2 = navigator()  # slow camera: 2 s pass with fewer than 3 frames -> not yet
    fly(nav2, 0.0, 2.0, fixes=True)
    for s in imu_stream(TRUTH, 2.0, 5.0)[1:]:
        nav2.on_imu(s)
        if s.t_ns in (3_000_000_000, 4_500_000_000):
            nav2.on_frame_captured(s.t_ns)
            nav2.on_frame(s.t_ns, blackout=False)
    assert not any(isinstance(e, HintRequested) for e in nav2.drain_events())


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
