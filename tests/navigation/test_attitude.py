"""The attitude used by the odometry: smoother than the FC from frame to frame, not tilted away
by the gyro bias over time, and with a heading that follows the images' measured turns rather
than the FC's wandering yaw."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from terrafix.geo.rotation import euler_tilt_axes_ned, euler_to_R_body_to_ned
from terrafix.navigation.attitude import OdometryAttitude, OdometryAttitudeConfig, _rotvec

S = 1_000_000_000


def truth_euler(t: float) -> np.ndarray:
    return np.array([math.radians(20) * math.sin(0.2 * t), math.radians(3) + 0.02 *
                     math.sin(0.5 * t), 0.3 * t])


def body_rate(t: float, h: float = 1e-5) -> np.ndarray:
    R0 = euler_to_R_body_to_ned(*truth_euler(t - h))
    R1 = euler_to_R_body_to_ned(*truth_euler(t + h))
    return _rotvec(R0.T @ R1) / (2 * h)


@pytest.mark.parametrize("seed", [1, 2])
def test_frame_to_frame_rotation_is_smoother_than_the_fc_and_does_not_drift(seed):
    rng = np.random.default_rng(seed)
    bias = rng.standard_normal(3) * math.radians(0.1)  # 2x the simulator's turn-on bias
    slow = rng.standard_normal(3) * math.radians(0.5)
    cf = OdometryAttitude(OdometryAttitudeConfig(tilt_tau_s=3.0, history_s=5.0,
                                                 visual_heading=False))
    frames, fc_at_frames = [], []
    for k in range(0, 60 * 200):
        t = k / 200.0
        cf.on_gyro(k * 5_000_000, body_rate(t) + bias + rng.standard_normal(3) * 1e-4 * 14)
        if k % 4 == 0:  # 50 Hz FC attitude with slow + white error
            e = truth_euler(t) + slow + rng.standard_normal(3) * math.radians(0.05)
            R_fc = euler_to_R_body_to_ned(*e)
            cf.on_fc(k * 5_000_000, R_fc)
        if k % 66 == 0 and t > 10:
            tt = k * 5_000_000
            frames.append((t, cf.at(tt), euler_to_R_body_to_ned(*truth_euler(t))))
            fc_at_frames.append(R_fc)

    def rel_err(Ra, Rb, Ta, Tb):  # error of the relative rotation a->b, radians
        return np.linalg.norm(_rotvec((Ra.T @ Rb).T @ (Ta.T @ Tb)))

    cf_err = [rel_err(a[1], b[1], a[2], b[2]) for a, b in itertools.pairwise(frames)]
    fc_err = [rel_err(fa, fb, a[2], b[2]) for fa, fb, a, b in
              zip(fc_at_frames, fc_at_frames[1:], frames, frames[1:], strict=False)]
    assert np.sqrt(np.mean(np.square(cf_err))) < 0.5 * np.sqrt(np.mean(np.square(fc_err)))
    # over 50 s the gyro bias alone would tilt the attitude by ~5 deg; the CF stays within
    # the FC's own slow error plus the bias x tau lag
    tilt = [np.linalg.norm(_rotvec(T.T @ R)) for _, R, T in frames]
    bound = np.linalg.norm(slow) + np.linalg.norm(bias) * 3.0 + math.radians(0.3)
    assert max(tilt) < bound


def test_history_interpolates_and_refuses_times_it_does_not_hold():
    cf = OdometryAttitude(OdometryAttitudeConfig(tilt_tau_s=1.0, history_s=1.0))
    assert cf.at(0) is None
    cf.on_fc(0, np.eye(3))
    for k in range(1, 401):
        cf.on_gyro(k * 5_000_000, np.array([0.0, 0.0, 0.5]))  # 0.5 rad/s yaw for 2 s
    R = cf.at(1_000_000_000 + 2_500_000)
    yaw = math.atan2(R[1, 0], R[0, 0])
    assert yaw == pytest.approx(0.5 * 1.0025, abs=1e-6)
    assert cf.at(100_000_000) is None  # older than the 1 s history


def _yaw(R: np.ndarray) -> float:
    return math.atan2(R[1, 0], R[0, 0])


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def _fly(cf: OdometryAttitude, seconds: float, bias: np.ndarray, slow_fc: np.ndarray,
         rng: np.random.Generator, visual: bool, gap: tuple[float, float] = (0.0, 0.0),
         image_sigma_rad: float = math.radians(0.005)) -> list[tuple[float, float, float]]:
    """Feed gyro (200 Hz), FC attitude (50 Hz, slow error) and, every 1/3 s outside `gap`, the
    images' measured heading error of the filter's own relative rotation. Returns per frame
    (t, heading error vs truth, filter's heading variance)."""
    out = []
    t_prev_frame = None
    for k in range(int(seconds * 200)):
        t = k / 200.0
        t_ns = k * 5_000_000
        cf.on_gyro(t_ns, body_rate(t) + bias + rng.standard_normal(3) * 1e-4 * 14)
        if k % 4 == 0:
            cf.on_fc(t_ns, euler_to_R_body_to_ned(*(truth_euler(t) + slow_fc)))
        if k % 66 == 0 and t > 1.0:
            if visual and t_prev_frame is not None and not gap[0] <= t <= gap[1]:
                R0, R1 = cf.at(t_prev_frame), cf.at(t_ns)
                T0 = euler_to_R_body_to_ned(*truth_euler(t_prev_frame * 1e-9))
                T1 = euler_to_R_body_to_ned(*truth_euler(t))
                # what the images measure: the filter's extra turn about the vertical, + noise
                err = _rotvec((R1 @ R0.T) @ (T1 @ T0.T).T)[2]
                err += rng.standard_normal() * image_sigma_rad
                assert cf.on_visual_yaw(t_prev_frame, t_ns, err, image_sigma_rad ** 2)
            t_prev_frame = t_ns
            out.append((t, _wrap(_yaw(cf.at(t_ns)) - truth_euler(t)[2]),
                        cf.heading_var_rad2(t_ns)))
    return out


@pytest.mark.parametrize("seed", [3, 4])
def test_visual_heading_keeps_the_heading_of_start_up_and_learns_the_gyro_bias(seed):
    """A gyro bias of 0.1 deg/s turns an integrated heading by 12 deg in two minutes, and the
    FC's yaw wanders by its own slow error; with the images' heading changes taken back, the
    heading stays where it started (the FC's error at initialisation), the vertical-rate bias
    is learned, and the reported variance covers what is left."""
    rng = np.random.default_rng(seed)
    bias = np.array([0.0, 0.0, math.radians(0.1) * (1 if seed % 2 else -1)])
    slow = np.array([0.0, 0.0, math.radians(2.0)])
    cf = OdometryAttitude()
    rows = _fly(cf, 120.0, bias, slow, rng, visual=True)
    err0 = rows[0][1]
    assert abs(math.degrees(err0) - 2.0) < 0.3  # the FC's yaw at start-up
    change = np.array([e - err0 for _, e, _ in rows])
    assert np.max(np.abs(np.degrees(change))) < 0.3  # gyro alone: 12 deg
    # the FC's 2 deg error stays (not observable), it does not leak in over time either
    assert cf.bias_radps == pytest.approx(bias[2], abs=3 * math.sqrt(cf.bias_var))
    assert math.sqrt(cf.bias_var) < math.radians(0.01)
    var = np.array([v for _, _, v in rows])
    assert np.all(np.diff(var) >= 0)
    assert abs(change[-1]) < 3 * math.sqrt(var[-1])


def test_without_images_the_heading_variance_grows_with_the_bias_uncertainty():
    rng = np.random.default_rng(5)
    cf = OdometryAttitude()
    bias = np.array([0.0, 0.0, math.radians(0.02)])
    rows = _fly(cf, 60.0, bias, np.zeros(3), rng, visual=True, gap=(20.0, 50.0))
    by_t = {round(t): (e, v) for t, e, v in rows}
    before, after = by_t[20], by_t[50]
    # 30 s of gyro with the bias known to ~0.003 deg/s after 20 s of images: the variance
    # gained is at least the bias uncertainty x 30 s, squared, and the error stays inside it
    gained = after[1] - before[1]
    assert gained > (30.0 * math.sqrt(cf.bias_var)) ** 2
    assert abs(after[0] - before[0]) < 3 * math.sqrt(gained)


def test_reset_puts_the_heading_on_the_fc_and_keeps_relative_rotations():
    rng = np.random.default_rng(6)
    cf = OdometryAttitude()
    _fly(cf, 20.0, np.array([0.0, 0.0, math.radians(0.1)]), np.array([0.0, 0.0, 0.05]), rng,
         visual=False)  # no images: the heading has drifted 2 deg away from the FC's
    t0, t1 = 19_000_000_000, 19_900_000_000
    rel_before = cf.at(t0).T @ cf.at(t1)
    assert cf.heading_var_rad2(t1) > 0
    axes_before = cf.tilt_axes_at(t0)
    turned = cf.reset_yaw_to_fc()
    assert abs(math.degrees(turned)) > 1.0
    # the tilt axes turn with the attitude they describe, history included
    assert np.allclose(cf.tilt_axes_at(t0), euler_to_R_body_to_ned(0.0, 0.0, turned)
                       @ axes_before, atol=1e-12)
    t_fc = 19.98  # the last FC sample: the heading now agrees with it there
    R_fc = euler_to_R_body_to_ned(*(truth_euler(t_fc) + np.array([0.0, 0.0, 0.05])))
    assert abs(math.degrees(_wrap(_yaw(cf.at(round(t_fc * S))) - _yaw(R_fc)))) < 0.01
    assert np.allclose(cf.at(t0).T @ cf.at(t1), rel_before, atol=1e-9)
    assert cf.heading_var_rad2(t1 + 95_000_000) == pytest.approx(0.0, abs=1e-12)
    assert cf.n_yaw_resets == 1


def test_implausible_visual_measurements_are_refused():
    cf = OdometryAttitude()
    cf.on_fc(0, np.eye(3))
    for k in range(1, 201):
        cf.on_gyro(k * 5_000_000, np.zeros(3))
    assert not cf.on_visual_yaw(0, 500_000_000, math.radians(5.0), 1e-8)  # 5 deg in 0.5 s
    assert not cf.on_visual_yaw(0, 500_000_000, math.nan, 1e-8)
    assert not cf.on_visual_yaw(500_000_000, 0, 0.0, 1e-8)  # times backwards
    assert cf.on_visual_yaw(0, 500_000_000, 1e-4, 1e-8)


def _steady_turn(t: float) -> np.ndarray:
    """40 deg of bank at 22 m/s: 0.37 rad/s of turn."""
    return np.array([math.radians(40.0), math.radians(2.0),
                     9.80665 * math.tan(math.radians(40.0)) / 22.0 * t])


def _turn_rate(t: float, h: float = 1e-5) -> np.ndarray:
    R0 = euler_to_R_body_to_ned(*_steady_turn(t - h))
    R1 = euler_to_R_body_to_ned(*_steady_turn(t + h))
    return _rotvec(R0.T @ R1) / (2 * h)


def test_tilt_axes_predict_how_the_filter_carries_the_fc_tilt_error_through_a_turn():
    """The FC's roll/pitch error turns with the aircraft; the filter's own error is held
    fixed in NED by the gyro and only pulled towards the FC's, so in a steady turn it lags.
    `tilt_axes_at` must say what the filter's attitude error is for a given FC error (the
    odometry's tilt model perturbs the attitude it was given), and in a 40 deg turn that is
    far from the FC's own Euler axes."""
    err = np.radians([0.8, -0.5])
    clean, tilted = OdometryAttitude(), OdometryAttitude()
    fc_axes_far = []
    for k in range(0, 30 * 200 + 1):
        t = k / 200.0
        t_ns = k * 5_000_000
        w = _turn_rate(t)
        clean.on_gyro(t_ns, w)
        tilted.on_gyro(t_ns, w)
        if k % 4 == 0:
            e = _steady_turn(t)
            clean.on_fc(t_ns, euler_to_R_body_to_ned(*e))
            tilted.on_fc(t_ns, euler_to_R_body_to_ned(*(e + np.array([*err, 0.0]))))
        if k % 1200 == 0 and t >= 12.0:
            actual = _rotvec(tilted.at(t_ns) @ clean.at(t_ns).T)
            J = tilted.tilt_axes_at(t_ns)
            assert J is not None and J.shape == (3, 2)
            predicted = J @ err
            assert np.linalg.norm((actual - predicted)[:2]) < 0.05 * np.linalg.norm(actual[:2])
            fc = euler_tilt_axes_ned(tilted.at(t_ns)) @ err
            fc_axes_far.append(np.linalg.norm((actual - fc)[:2]) / np.linalg.norm(actual[:2]))
    assert len(fc_axes_far) == 4  # 12, 18, 24, 30 s
    # the FC's axes would be off by most of the error itself (a 47 deg lag, 0.7 of it)
    assert min(fc_axes_far) > 0.5
    # on the ground before any turn the filter is the FC: its axes are the FC's
    still = OdometryAttitude()
    R0 = euler_to_R_body_to_ned(0.1, 0.05, 1.0)
    still.on_fc(0, R0)
    assert np.allclose(still.tilt_axes_at(0), euler_tilt_axes_ned(R0))
    assert still.tilt_axes_at(-1) is None
