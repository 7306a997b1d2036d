"""The navigation core on simulated flights: output ticks, odometry through the estimator,
labels on a visual blackout, configuration.

Datasets come from the simulator (tests/navigation/navdata.py) with seeds 3 (developed on) and 8.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from terrafix.app.replay import flight_context
from terrafix.estimation.config import IntegrityConfig
from terrafix.measurements import CameraFrame, FrameCaptured, GnssSample, ImuSample, SourceLabel
from terrafix.navigation.navigator import (
    FlightContext,
    Navigator,
    NavigatorConfig,
    NavigatorError,
    OperatorHint,
)
from terrafix.sim.dataset import load_dataset
from tests.navigation.navdata import synthetic_flight

S = 1_000_000_000


def no_registration(cfg: NavigatorConfig | None = None) -> NavigatorConfig:
    cfg = cfg or NavigatorConfig()
    return cfg.model_copy(update={"registration": cfg.registration.model_copy(
        update={"enabled": False})})


def run(ds, cfg, until_s: float | None = None):
    nav = Navigator(cfg, flight_context(ds), None)
    for s in ds.iter_all():
        if until_s is not None and s.t_ns > until_s * S:
            break
        nav.feed(s)
    nav.flush()
    return nav, nav.drain_solutions(), nav.drain_events(), nav.drain_frame_reports()


def horizontal_errors(ds, sols) -> np.ndarray:
    t = np.array([s.t_ns for s in sols])
    est = ds.local_frame.lla_to_ned(np.array([s.lat_deg for s in sols]),
                                    np.array([s.lon_deg for s in sols]),
                                    np.array([s.alt_m for s in sols]))
    return np.linalg.norm(est[:, :2] - ds.truth_p_ned_at(t)[:, :2], axis=1)


@pytest.fixture(scope="module", params=[3, 8])
def flight(request, tmp_path_factory):
    """36 s over synthetic farmland; GNSS jammed from 5 s; cloud blackout 24-30 s."""
    root = tmp_path_factory.mktemp(f"synthetic-{request.param}")
    return load_dataset(synthetic_flight(root, seed=request.param))


@pytest.fixture(scope="module")
def flight_run(flight):
    return flight, *run(flight, no_registration())


def test_solutions_come_at_the_output_rate_in_time_order(flight_run):
    ds, nav, sols, _, _ = flight_run
    t = np.array([s.t_ns for s in sols])
    assert np.all(np.diff(t) == S // 10)
    assert t[-1] > ds.truth.t_ns[-1] - S // 5
    assert nav.stats.solutions == len(sols)


@pytest.mark.slow
def test_odometry_holds_the_position_after_gnss_is_jammed(flight_run):
    """GNSS is gone from 5 s, registration is off: odometry + IMU alone carry the estimate
    over ~25 s (~450 m) of flight with textured ground."""
    ds, _nav, sols, _, reports = flight_run
    tracked = [r for r in reports if r.vo_tracking]
    textured = [r for r in reports if not (24 * S <= r.t_ns < 30 * S)]
    assert len(tracked) >= 0.95 * (len(textured) - 1)
    assert all(r.vo_accepted for r in tracked)
    err = horizontal_errors(ds, sols)
    t = np.array([s.t_ns for s in sols])
    # distance flown since the jamming started at 5 s
    p = ds.truth_p_ned_at(t)[:, :2]
    step = np.r_[0.0, np.linalg.norm(np.diff(p, axis=0), axis=1)]
    flown = np.cumsum(np.where(t > 5 * S, step, 0.0))
    before_blackout = t < 24 * S
    # The FC's heading error (sigma 2.5 deg, slowly varying) turns odometry by up to ~4-5%
    # of the distance; everything else (odometry, scale, tilt) must stay well inside.
    assert np.all(err[before_blackout] < 5.0 + 0.06 * flown[before_blackout])
    # odometry carries the label: visual_propagated, except dead_reckoned from a frame that
    # lost track until the label's recovery wait (label_upgrade_after_s) and a frame later
    lost = [r.t_ns for r in reports if r.vo_tracking is False and r.t_ns < 24 * S]
    wait = round((IntegrityConfig().label_upgrade_after_s + 0.4) * S)
    carried = [s for s in sols if 8 * S <= s.t_ns < 24 * S]
    assert sum(s.label == SourceLabel.VISUAL_PROPAGATED for s in carried) >= 0.7 * len(carried)
    for s in carried:
        if s.label != SourceLabel.VISUAL_PROPAGATED:
            assert s.label == SourceLabel.DEAD_RECKONED
            assert any(0 <= s.t_ns - t_lost <= wait for t_lost in lost), s.t_ns / S


@pytest.mark.slow
def test_blackout_turns_the_label_dead_reckoned_within_400_ms(flight_run):
    _ds, _, sols, _events, reports = flight_run
    t = np.array([s.t_ns for s in sols])
    after = [s for s in sols if 24 * S <= s.t_ns < 30 * S]
    first = next(s for s in after if s.label == SourceLabel.DEAD_RECKONED)
    assert first.t_ns - 24 * S <= 0.4 * S
    assert all(s.label == SourceLabel.DEAD_RECKONED for s in after if s.t_ns >= first.t_ns)
    blackout_frames = [r for r in reports if 24 * S <= r.t_ns < 30 * S]
    assert blackout_frames and all(r.blackout for r in blackout_frames)
    assert all("no texture" in r.vo_reason for r in blackout_frames)
    # the covariance grows while nothing but the IMU carries the estimate
    i0, i1 = np.searchsorted(t, [first.t_ns, 29.9 * S])
    assert np.trace(sols[i1].cov_p_ned_m2[:2, :2]) > np.trace(sols[i0].cov_p_ned_m2[:2, :2])
    # and odometry resumes after the blackout
    assert any(r.vo_tracking for r in reports if r.t_ns > 30.5 * S)


def test_inputs_out_of_time_order_are_refused(flight):
    nav = Navigator(no_registration(), flight_context(flight), None)
    nav.feed(ImuSample(2 * S, np.zeros(3), np.zeros(3)))
    with pytest.raises(NavigatorError, match="time order"):
        nav.feed(ImuSample(S, np.zeros(3), np.zeros(3)))
    with pytest.raises(NavigatorError, match="unsupported input"):
        nav.feed(object())


def test_nothing_is_output_before_the_state_can_be_initialised(flight):
    nav = Navigator(no_registration(), flight_context(flight), None)
    for i in range(50):  # IMU only: no attitude, no barometer yet
        nav.feed(ImuSample(i * 5_000_000, np.array([0.0, 0.0, -9.8]), np.zeros(3)))
    assert not nav.initialised and nav.drain_solutions() == []


def test_operator_hint_reaches_the_estimator(flight):
    nav, sols, _events, _ = run(flight, no_registration(), until_s=10.0)
    before = sols[-1]
    far = flight.local_frame.ned_to_lla(np.array([2000.0, 0.0, 0.0]))
    nav.feed(OperatorHint(int(10.01 * S), float(far[0]), float(far[1]), 50.0))
    kinds = [type(e).__name__ for e in nav.drain_events()]
    assert "HintApplied" in kinds and "FilterReset" in kinds  # 2 km off: re-initialised
    nav.feed(ImuSample(int(10.3 * S), np.array([0.0, 0.0, -9.8]), np.zeros(3)))
    after = nav.drain_solutions()[-1]
    moved = flight.local_frame.lla_to_ned(after.lat_deg, after.lon_deg, after.alt_m)[0] - \
        flight.local_frame.lla_to_ned(before.lat_deg, before.lon_deg, before.alt_m)[0]
    assert moved > 1500.0


def test_config_from_toml_with_backend_switch_and_named_errors(tmp_path):
    p = tmp_path / "nav.toml"
    p.write_text('output_rate_hz = 5.0\n[registration]\nanchor_interval_s = 0.0\n'
                 '[vps]\nextractor = "sift"\n[estimation.estimator]\nbackend = "isam2"\n')
    cfg = NavigatorConfig.from_toml(p)
    assert cfg.output_rate_hz == 5.0 and cfg.backend == "isam2"
    assert cfg.vps.extractor == "sift" and cfg.registration.anchor_interval_s == 0.0
    assert cfg.with_backend("eskf").backend == "eskf"
    with pytest.raises(NavigatorError, match="backend"):
        cfg.with_backend("ukf")
    p.write_text("output_rate_hz = 500.0\n[odometry]\nmax_corners = 'many'\n")
    with pytest.raises(NavigatorError, match=r"output_rate_hz.*\n.*odometry\.max_corners"):
        NavigatorConfig.from_toml(p)


def test_attitude_is_interpolated_at_the_frame_time(flight):
    ctx: FlightContext = flight_context(flight)
    nav = Navigator(no_registration(), ctx, None)
    for s in flight.iter_all(("attitude",)):
        if s.t_ns > 2 * S:
            break
        nav.feed(s)
    t = int(1.01 * S)  # between two 50 Hz samples
    R = nav._attitude_at(t)
    truth = flight.truth_at(t).R_body_to_ned
    angle = math.degrees(math.acos(np.clip((np.trace(R.T @ truth) - 1) / 2, -1, 1)))
    assert angle < 3.0 * math.sqrt(2 * 0.5**2 + 2.5**2)  # within the FC's own error budget
    (ta, a, _), (tb, b, _) = nav._attitude[50], nav._attitude[51]
    mid = nav._attitude_at((ta + tb) // 2)

    def ang(x, y):
        return math.acos(np.clip((np.trace(x.T @ y) - 1) / 2, -1, 1))

    assert ang(a, b) > 0
    assert ang(a, mid) == pytest.approx(ang(a, b) / 2, rel=1e-3)
    assert ang(mid, b) == pytest.approx(ang(a, b) / 2, rel=1e-3)


def test_a_frame_announced_at_capture_is_fused_when_its_image_comes_late(flight_run):
    """The live camera announces each capture (FrameCaptured) before decoding; the image then
    arrives after 0.3 s of newer IMU samples and is still fused, as in the in-order run."""
    ds, nav_in_order, sols_in_order, _, reports_in_order = flight_run
    nav = Navigator(no_registration(), flight_context(ds), None)
    late: list[tuple[int, CameraFrame]] = []
    for s in ds.iter_all():
        while late and late[0][0] <= s.t_ns:
            nav.feed(late.pop(0)[1])
        if isinstance(s, CameraFrame):
            nav.feed(FrameCaptured(s.t_ns, s.index))
            late.append((s.t_ns + int(0.3 * S), s))
            continue
        nav.feed(s)
    for _, f in late:
        nav.feed(f)
    nav.flush()
    sols, reports = nav.drain_solutions(), nav.drain_frame_reports()
    assert nav.stats.frames == nav_in_order.stats.frames
    assert nav.stats.vo_accepted >= 0.9 * nav_in_order.stats.vo_accepted
    assert [r.index for r in reports] == [r.index for r in reports_in_order]
    err_late = horizontal_errors(ds, sols)
    err_in_order = horizontal_errors(ds, sols_in_order)
    assert np.percentile(err_late, 95) <= np.percentile(err_in_order, 95) + 2.0


def test_a_late_frame_without_announcement_is_refused(flight):
    nav = Navigator(no_registration(), flight_context(flight), None)
    nav.feed(ImuSample(2 * S, np.zeros(3), np.zeros(3)))
    with pytest.raises(NavigatorError, match="time order"):
        nav.feed(CameraFrame(S, 0, np.zeros((480, 640), np.uint8)))


def test_a_gnss_report_that_comes_after_newer_imu_samples_is_still_used(flight_run):
    """A receiver's report is stamped at its fix and reaches the companion after the IMU
    samples of that instant (ArduPilot's GPS_RAW_INT: 100-250 ms later). Delivered 0.2 s late,
    the GNSS of the first seconds (before the jamming) still holds the estimate as in the
    in-order run; a report older than the estimator can move along its velocity is refused."""
    ds, _nav_in_order, sols_in_order, _, _ = flight_run
    until_s = 5.0
    nav = Navigator(no_registration(), flight_context(ds), None)
    late: list[tuple[int, GnssSample]] = []
    for s in ds.iter_all():
        if s.t_ns > until_s * S:
            break
        while late and late[0][0] <= s.t_ns:
            nav.feed(late.pop(0)[1])
        if isinstance(s, GnssSample):
            late.append((s.t_ns + int(0.2 * S), s))
            continue
        nav.feed(s)
    sols = nav.drain_solutions()
    assert sols
    t_end = sols[-1].t_ns
    early = [s for s in sols_in_order if s.t_ns <= t_end]
    err_late, err_in_order = horizontal_errors(ds, sols), horizontal_errors(ds, early)
    assert np.percentile(err_late, 95) <= np.percentile(err_in_order, 95) + 1.0
    # a GNSS-less start would drift: the late reports did hold the estimate
    assert float(np.sqrt(sols[-1].cov_p_ned_m2[0][0])) < 5.0
    too_old = nav.late_gnss_limit_ns + S
    g = next(s for s in ds.iter_all() if isinstance(s, GnssSample))
    with pytest.raises(NavigatorError, match="time order"):
        nav.feed(dataclasses.replace(g, t_ns=nav._t_ns - too_old))


def test_solutions_carry_the_navigators_heading_with_an_honest_sigma(flight_run):
    """Every solution after the first FC attitude carries the navigator's own heading (the
    odometry's, turned by its calibration) and a variance that covers its error against the
    truth; the estimator's yaw stays in yaw_rad."""
    ds, _nav, sols, _, _ = flight_run
    t = np.array([s.t_ns for s in sols])
    heading = np.array([s.heading_rad for s in sols])
    sigma = np.sqrt(np.array([s.heading_var_rad2 for s in sols]))
    assert np.all(np.isfinite(heading)) and np.all(np.isfinite(sigma)) and np.all(sigma > 0)
    true_yaw = ds.truth.euler_rad[np.clip(np.searchsorted(ds.truth.t_ns, t), 0,
                                          len(ds.truth.t_ns) - 1), 2]
    err = np.remainder(heading - true_yaw + np.pi, 2 * np.pi) - np.pi
    assert np.mean(np.abs(err) <= 3.0 * sigma) >= 0.95
    assert any(abs(s.heading_rad - s.yaw_rad) > 1e-6 for s in sols)  # not the estimator's


def test_odometry_can_take_its_relative_rotation_from_the_fc_attitude(flight, flight_run):
    """relative_rotation = "fc" (for FCs whose IMU stream is too sparse to integrate): the
    odometry still tracks and holds the position, and the images' heading change is not fed
    back into a gyro heading it does not use."""
    _, gyro_nav, _, _, _ = flight_run
    base = no_registration()
    cfg = base.model_copy(update={"odometry_attitude": base.odometry_attitude.model_copy(
        update={"relative_rotation": "fc"})})
    nav, sols, _, reports = run(flight, cfg, until_s=20.0)
    frames = [r for r in reports if r.vo_tracking is not None]
    assert sum(bool(r.vo_tracking) for r in frames) >= 0.8 * len(frames)
    assert nav.stats.odometry_heading_updates == 0
    assert gyro_nav.stats.odometry_heading_updates > 0
    err = horizontal_errors(flight, sols)
    assert float(np.percentile(err, 95)) < 15.0
