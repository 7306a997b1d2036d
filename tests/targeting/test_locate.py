"""Object localisation: refusals with their reasons, the pose at the request's time, and an
ellipse that holds ~95% of Monte Carlo draws of the inputs it claims to cover."""

from __future__ import annotations

import math
from dataclasses import replace

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
from terrafix.targeting.locate import (
    add_anchored_attitude_correlation,
    input_covariance,
    nadir_tilt_lever,
)

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
        add_anchored_attitude_correlation(P, pose.euler_rad, FRAME.alt0_m - GROUND_ALT_M,
                                          float(pose.p_ned_m[2]),
                                          cfg.anchored_attitude_correlation)
        draws = rng.multivariate_normal(x0, P, size=800)
        inv = np.linalg.inv(fix.cov_ne_m2)
        for x in draws:
            hit = G.intersect(x, k)
            e = hit.p_ground_ned[:2] - fix.p_ned_m[:2]
            inside += float(e @ inv @ e) <= C.CHI2_2DOF_95
            total += 1
    share = inside / total
    assert 0.93 <= share <= 0.97, share


def _pose(nav_heading_rad: float = math.nan, nav_heading_sigma_deg: float = math.nan,
          fc_yaw_rad: float = 0.4) -> PoseAt:
    return PoseAt(0, np.array([0.0, 0.0, -200.0]), np.diag([1.0, 1.0, 4.0]),
                  "satellite_anchored", False, np.array([0.0, 0.0, fc_yaw_rad]),
                  nav_heading_rad, math.radians(nav_heading_sigma_deg) ** 2)


OBLIQUE = TargetRequest(960.0, 540.0, pan_deg=0.0, tilt_deg=-30.0, zoom=2.0)


def test_a_calibrated_navigator_heading_replaces_the_fc_yaw() -> None:
    """The navigator's heading (0.3 deg) is used, at its own value and sigma: the ray turns
    with it, and the ellipse's yaw term is that of a 0.3 deg heading."""
    cfg = TargetingConfig()
    fc = locate_target(OBLIQUE, _pose(), cfg, FRAME, GROUND_ALT_M)
    nav = locate_target(OBLIQUE, _pose(0.4 + math.radians(2.0), 0.3), cfg, FRAME,
                        GROUND_ALT_M)
    assert fc.heading_source == "fc" and nav.heading_source == "navigation"
    assert nav.heading_sigma_deg == pytest.approx(0.3)
    # 2 deg more heading turns the ground point ~ ground range x 2 deg about the aircraft
    turned = math.degrees(math.atan2(nav.p_ned_m[1], nav.p_ned_m[0])
                          - math.atan2(fc.p_ned_m[1], fc.p_ned_m[0]))
    assert turned == pytest.approx(2.0, abs=0.05)
    # its sigma is the yaw term: as if the FC's yaw had a 0.3 deg sigma
    as_if = locate_target(OBLIQUE, _pose(0.4 + math.radians(2.0)),
                          TargetingConfig(attitude_yaw_sigma_deg=0.3), FRAME, GROUND_ALT_M)
    assert nav.sigma_by_source_m["attitude"] == pytest.approx(as_if.sigma_by_source_m["attitude"])
    assert nav.semi_major_95_m < 0.7 * fc.semi_major_95_m


def test_an_uncalibrated_navigator_heading_or_the_switch_off_keeps_the_fc_yaw() -> None:
    cfg = TargetingConfig()
    worse = locate_target(OBLIQUE, _pose(1.0, 3.0), cfg, FRAME, GROUND_ALT_M)
    assert worse.heading_source == "fc" and worse.heading_sigma_deg == pytest.approx(2.5)
    off = locate_target(OBLIQUE, _pose(1.0, 0.3), TargetingConfig(use_navigation_heading=False),
                        FRAME, GROUND_ALT_M)
    assert off.heading_source == "fc"
    ref = locate_target(OBLIQUE, _pose(), cfg, FRAME, GROUND_ALT_M)
    assert np.allclose(off.p_ned_m, ref.p_ned_m) and np.allclose(worse.p_ned_m, ref.p_ned_m)


def test_history_interpolates_the_navigator_heading_and_moves_it_with_the_fc_yaw() -> None:
    """Between solutions the heading is interpolated (larger variance of the two); past the
    latest one it turns by what the FC yaw turned since (a turn at 10 deg/s)."""
    from dataclasses import replace

    from terrafix.measurements import AttitudeSample
    from terrafix.targeting import PoseHistory

    from .helpers import solution

    hist = PoseHistory(FRAME, keep_s=60.0, max_extrapolation_s=0.5)
    for k, (h, s) in enumerate([(0.10, 0.01), (0.12, 0.02)]):
        hist.add_solution(replace(solution(int(k * 0.1e9)), heading_rad=h,
                                  heading_var_rad2=s**2))
    for k in range(40):  # FC yaw turning at 10 deg/s
        t = k * 0.02
        hist.add_attitude(AttitudeSample(int(t * 1e9), 0.0, 0.0, 0.5 + math.radians(10.0) * t))
    mid = hist.at(int(0.05e9))
    assert mid is not None and mid.nav_heading_rad == pytest.approx(0.11)
    assert mid.nav_heading_var_rad2 == pytest.approx(0.02**2)
    ahead = hist.at(int(0.4e9))
    assert ahead is not None
    assert ahead.nav_heading_rad == pytest.approx(0.12 + math.radians(10.0) * 0.3, abs=1e-6)


def _anchored_draws(rng: np.random.Generator, cfg: TargetingConfig, pose: PoseAt,
                    req: TargetRequest, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Truths of a satellite-anchored flight: the FC's roll/pitch error ε, and a navigation
    position that a fix solved with that tilt (−F ε) plus the fix's own noise; the target
    then seen with the same ε. Returns (true ground points (n, 2), reported ones (n, 2))."""
    K = cfg.camera.camera().intrinsics(req.zoom)
    k = G.CameraConstants(K.fx, K.cx, K.cy, np.array(cfg.camera.p_gimbal_in_body_m),
                          GimbalFrame.BODY)
    h = FRAME.alt0_m - GROUND_ALT_M - float(pose.p_ned_m[2])
    F = nadir_tilt_lever(pose.euler_rad, h)
    sig_rp = math.radians(cfg.attitude_roll_pitch_sigma_deg)
    x_true = np.array([*pose.p_ned_m, *pose.euler_rad, 0.0, math.radians(req.tilt_deg),
                       math.radians(req.pan_deg), 0.0, req.u_px, req.v_px,
                       FRAME.alt0_m - GROUND_ALT_M])
    truth = G.intersect(x_true, k).p_ground_ned[:2]
    reported = []
    for _ in range(n):
        eps = rng.normal(0.0, sig_rp, 2)
        x = x_true.copy()
        x[3:5] += eps  # what the FC reports
        x[0:2] += -F @ eps + rng.normal(0.0, 1.0, 2)  # the fix lands where ε puts it
        reported.append(G.intersect(x, k).p_ground_ned[:2])
    return np.tile(truth, (n, 1)), np.array(reported)


def test_an_anchored_position_takes_back_the_attitude_error_it_shares() -> None:
    """With the navigation error made by the FC's own tilt error (as a fix makes it), the
    correlated ellipse holds about 95 % of the truths; the independent model, which counts
    the shared error twice, holds nearly all of them with a larger ellipse."""
    rng = np.random.default_rng(11)
    shares = {}
    majors = {}
    for rho in (1.0, 0.0):
        # only the tilt error and the fix's noise are drawn: the other terms kept small
        cfg = TargetingConfig(anchored_attitude_correlation=rho, gimbal_sigma_deg=0.01,
                              attitude_yaw_sigma_deg=0.01,
                              focal_relative_sigma=0.001, pixel_sigma_px=0.1,
                              ground_alt_sigma_m=0.1)
        inside = total = 0
        major = []
        for case in range(5):
            pose = PoseAt(0, np.array([0.0, 0.0, -300.0]), np.eye(3),
                          "satellite_anchored", False, np.array([0.03, -0.02, 0.7 * case]))
            h = FRAME.alt0_m - GROUND_ALT_M + 300.0
            F = nadir_tilt_lever(pose.euler_rad, h)
            s2 = math.radians(cfg.attitude_roll_pitch_sigma_deg) ** 2
            pose = replace(pose, cov_p_ned_m2=pose.cov_p_ned_m2
                           + np.pad(F @ F.T * s2, ((0, 1), (0, 1))))
            req = TargetRequest(960.0, 540.0, pan_deg=40.0 * case, tilt_deg=-45.0, zoom=3.0)
            fix = locate_target(req, pose, cfg, FRAME, GROUND_ALT_M)
            major.append(fix.semi_major_95_m)
            truth, reported = _anchored_draws(rng, cfg, pose, req, 400)
            inv = np.linalg.inv(fix.cov_ne_m2)
            e = reported - truth
            inside += int(np.sum(np.einsum("ni,ij,nj->n", e, inv, e) <= C.CHI2_2DOF_95))
            total += len(e)
        shares[rho], majors[rho] = inside / total, float(np.median(major))
    assert 0.92 <= shares[1.0] <= 0.98, shares
    assert shares[0.0] > 0.99, shares
    assert majors[1.0] < 0.8 * majors[0.0], majors


def test_no_correlation_is_assumed_off_the_anchors() -> None:
    """Dead reckoning from GNSS or a lagged anchor does not share the tilt error: the ellipse
    is the independent one whatever the configured correlation."""
    req = TargetRequest(900.0, 500.0, pan_deg=30.0, tilt_deg=-50.0, zoom=2.0)
    pose = PoseAt(0, np.array([0.0, 0.0, -250.0]), np.diag([30.0, 30.0, 9.0]),
                  "visual_propagated", False, np.array([0.02, 0.01, 1.0]))
    a = locate_target(req, pose, TargetingConfig(anchored_attitude_correlation=1.0), FRAME,
                      GROUND_ALT_M)
    b = locate_target(req, pose, TargetingConfig(anchored_attitude_correlation=0.0), FRAME,
                      GROUND_ALT_M)
    np.testing.assert_allclose(a.cov_ne_m2, b.cov_ne_m2)
    anchored = replace(pose, label="satellite_anchored")
    c = locate_target(req, anchored, TargetingConfig(), FRAME, GROUND_ALT_M)
    assert c.semi_major_95_m < a.semi_major_95_m
    assert np.all(np.linalg.eigvalsh(c.cov_ne_m2) > 0)
