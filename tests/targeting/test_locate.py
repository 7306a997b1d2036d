"""Object localisation: refusals with their reasons, the pose at the request's time, and an
ellipse that holds ~95% of Monte Carlo draws of the inputs it claims to cover."""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrafix.autopilot import constants as C
from terrafix.targeting import (
    GimbalFrame,
    PoseAt,
    RefusalReason,
    TargetingConfig,
    TargetInputError,
    TargetRefusedError,
    TargetRequest,
    locate_target,
)
from terrafix.targeting import geometry as G
from terrafix.targeting.locate import input_covariance

from .helpers import FRAME, GROUND_ALT_M, locator


def test_a_ray_that_misses_the_ground_is_refused() -> None:
    loc = locator()
    with pytest.raises(TargetRefusedError) as exc:
        loc.locate(TargetRequest(960, 540, pan_deg=0.0, tilt_deg=5.0, zoom=2.0, t_ns=int(5e9)))
    assert exc.value.reason == RefusalReason.RAY_MISSES_GROUND
    # the top of a 1x image tilted 80 degrees from nadir looks above the horizon too
    with pytest.raises(TargetRefusedError) as exc:
        loc.locate(TargetRequest(960, 0, pan_deg=0.0, tilt_deg=-10.0, zoom=1.0, t_ns=int(5e9)))
    assert exc.value.reason == RefusalReason.RAY_MISSES_GROUND


def test_ground_beyond_the_range_limit_is_refused() -> None:
    loc = locator(TargetingConfig(max_slant_range_m=400.0, max_off_vertical_deg=89.0))
    with pytest.raises(TargetRefusedError) as exc:  # 60 deg from nadir at 200 m: 400 m slant...
        loc.locate(TargetRequest(960, 540, pan_deg=0.0, tilt_deg=-25.0, zoom=5.0,
                                 t_ns=int(5e9)))
    assert exc.value.reason == RefusalReason.BEYOND_RANGE_LIMIT
    fix = loc.locate(TargetRequest(960, 540, pan_deg=0.0, tilt_deg=-60.0, zoom=5.0,
                                   t_ns=int(5e9)))
    assert fix.slant_range_m < 400.0


def test_a_grazing_ray_is_refused() -> None:
    loc = locator(TargetingConfig(max_off_vertical_deg=75.0))
    with pytest.raises(TargetRefusedError) as exc:
        loc.locate(TargetRequest(960, 540, pan_deg=0.0, tilt_deg=-12.0, zoom=5.0,
                                 t_ns=int(5e9)))
    assert exc.value.reason == RefusalReason.GRAZING_RAY


def test_a_failsafe_navigation_is_refused() -> None:
    loc = locator(failsafe_after_s=6.0)
    req = dict(u_px=960, v_px=540, pan_deg=0.0, tilt_deg=-60.0, zoom=2.0)
    assert loc.locate(TargetRequest(**req, t_ns=int(5e9))).nav_label != "no_fix"
    with pytest.raises(TargetRefusedError) as exc:
        loc.locate(TargetRequest(**req, t_ns=int(7e9)))
    assert exc.value.reason == RefusalReason.NAVIGATION_FAILSAFE
    # straddling the change: one failsafe neighbour is enough to refuse
    with pytest.raises(TargetRefusedError) as exc:
        loc.locate(TargetRequest(**req, t_ns=int(5.95e9)))
    assert exc.value.reason == RefusalReason.NAVIGATION_FAILSAFE


def test_no_navigation_at_the_time_is_refused() -> None:
    loc = locator(t_end_s=10.0)
    req = dict(u_px=960, v_px=540, pan_deg=0.0, tilt_deg=-60.0, zoom=2.0)
    for t_ns in (-int(1e9), int(11e9)):  # before the history; beyond the extrapolation
        with pytest.raises(TargetRefusedError) as exc:
            loc.locate(TargetRequest(**req, t_ns=t_ns))
        assert exc.value.reason == RefusalReason.NO_NAVIGATION_AT_TIME
    loc.locate(TargetRequest(**req, t_ns=int(10.3e9)))  # short extrapolation is allowed


def test_the_pose_at_the_requested_time_is_used() -> None:
    """The aircraft flies 15 m/s north: a nadir pixel at t=2 s and t=6 s are 60 m apart."""
    loc = locator()
    req = dict(u_px=959.5, v_px=539.5, pan_deg=0.0, tilt_deg=-90.0, zoom=1.0)
    a = loc.locate(TargetRequest(**req, t_ns=int(2e9)))
    b = loc.locate(TargetRequest(**req, t_ns=int(6.05e9)))
    d = b.p_ned_m - a.p_ned_m
    assert d[0] == pytest.approx(60.75, abs=0.3) and d[1] == pytest.approx(20.25, abs=0.3)


def test_extrapolated_pose_grows_its_covariance() -> None:
    loc = locator(t_end_s=10.0)
    at_end = loc.history.at(int(10e9))
    later = loc.history.at(int(10.4e9))
    assert at_end is not None and later is not None
    assert later.cov_p_ned_m2[0, 0] > at_end.cov_p_ned_m2[0, 0]


@pytest.mark.parametrize("bad", [dict(u_px=-5.0), dict(v_px=2000.0), dict(zoom=0.5),
                                 dict(zoom=math.nan), dict(tilt_deg=math.inf)])
def test_bad_requests_name_the_value(bad: dict) -> None:
    req = dict(u_px=960.0, v_px=540.0, pan_deg=0.0, tilt_deg=-60.0, zoom=2.0, t_ns=int(5e9))
    req.update(bad)
    with pytest.raises(TargetInputError) as exc:
        locator().locate(TargetRequest(**req))
    assert any(k in str(exc.value) for k in (*bad, "pixel"))


@pytest.mark.parametrize("frame", [GimbalFrame.BODY, GimbalFrame.HEADING])
def test_ellipse_covers_95_percent_of_its_own_inputs(frame: GimbalFrame) -> None:
    """Draw every input from the covariance the locator assumes, intersect exactly, and count
    draws inside the reported 95% ellipse: the linearisation holds at moderate obliquity."""
    cfg = TargetingConfig(gimbal_frame=frame)
    rng = np.random.default_rng(5)
    inside, total = 0, 0
    for case in range(6):
        pose = PoseAt(0, np.array([10.0, -20.0, -200.0]), np.diag([16.0, 9.0, 25.0]),
                      "satellite_anchored", False, np.array([0.05, -0.02, 0.4 + case]))
        req = TargetRequest(rng.uniform(100, 1800), rng.uniform(100, 1000),
                            pan_deg=rng.uniform(-180, 180), tilt_deg=-rng.uniform(30, 70),
                            zoom=rng.uniform(1, 8))
        fix = locate_target(req, pose, cfg, FRAME, GROUND_ALT_M)
        K = cfg.camera.camera().intrinsics(req.zoom)
        k = G.CameraConstants(K.fx, K.cx, K.cy, np.array(cfg.camera.p_gimbal_in_body_m), frame)
        x0 = np.array([*pose.p_ned_m, *pose.euler_rad, 0.0, math.radians(req.tilt_deg),
                       math.radians(req.pan_deg), 0.0, req.u_px, req.v_px,
                       FRAME.alt0_m - GROUND_ALT_M])
        P = input_covariance(cfg, pose.cov_p_ned_m2)
        draws = rng.multivariate_normal(x0, P, size=800)
        inv = np.linalg.inv(fix.cov_ne_m2)
        for x in draws:
            hit = G.intersect(x, k)
            e = hit.p_ground_ned[:2] - fix.p_ned_m[:2]
            inside += float(e @ inv @ e) <= C.CHI2_2DOF_95
            total += 1
    share = inside / total
    assert 0.93 <= share <= 0.97, share
