"""Dataset writer and loader: round trip, iterators, merged order, truth interpolation."""

from __future__ import annotations

import numpy as np
import pytest

from terrafix.measurements import AttitudeSample, BaroSample, CameraFrame, GnssSample, ImuSample
from terrafix.sim.attitude import AttitudeErrorParams, simulate_attitude
from terrafix.sim.baro import BaroParams, simulate_baro
from terrafix.sim.dataset import (
    gps_week_ms,
    load_dataset,
    write_frame,
    write_streams,
)
from terrafix.sim.errors import DatasetError
from terrafix.sim.gnss import GnssAttack, GnssParams, simulate_gnss
from terrafix.sim.imu import ImuParams, simulate_imu
from terrafix.sim.streams import FrameIndex
from terrafix.sim.trajectory import fly_kinematic

from .conftest import LONGMONT, loop_plan


def _write(root, seed=0):
    rng = np.random.default_rng(seed)
    truth = fly_kinematic(loop_plan(), 12.0, LONGMONT, rng)
    imu, _ = simulate_imu(truth, ImuParams(), rng)
    att = simulate_attitude(truth, AttitudeErrorParams(), rng)
    baro = simulate_baro(truth, BaroParams(), rng)
    gnss = simulate_gnss(truth, LONGMONT, GnssParams(),
                         [GnssAttack("jamming", 5.0, 12.0, ramp_s=2.0)], rng)
    t_frames = np.array([0, 333_333_333, 666_666_667], dtype=np.int64)
    files = []
    for i in range(3):
        img = rng.integers(0, 256, (48, 64), dtype=np.uint8)
        files.append(write_frame(root, i, img))
    frames = FrameIndex(t_frames, np.arange(3, dtype=np.int64), np.array(files))
    meta = {"seed": seed, "origin": {"lat_deg": LONGMONT.lat0_deg, "lon_deg": LONGMONT.lon0_deg,
                                      "alt_m": LONGMONT.alt0_m},
            "ground_alt_m": LONGMONT.alt0_m,
            "camera": {"width": 64, "height": 48, "fx": 60.0, "fy": 60.0, "cx": 31.5,
                       "cy": 23.5, "dist": [0, 0, 0, 0, 0],
                       "R_cam_to_body": [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
                       "p_cam_in_body": [0, 0, 0]}}
    write_streams(root, meta, truth, imu, att, baro, gnss, frames)
    return truth, imu, att, baro, gnss


def test_round_trip_preserves_every_stream(tmp_path):
    truth, imu, att, baro, gnss = _write(tmp_path)
    ds = load_dataset(tmp_path)
    assert np.array_equal(ds.truth.t_ns, truth.t_ns)
    assert np.abs(ds.truth.p_ned_m - truth.p_ned_m).max() < 1e-4
    assert np.abs(ds.truth.q_body_to_ned - truth.q_body_to_ned).max() < 1e-9
    assert np.abs(ds.imu.accel_body_mps2 - imu.accel_body_mps2).max() < 1e-7
    assert np.abs(ds.imu.gyro_body_radps - imu.gyro_body_radps).max() < 1e-9
    assert np.abs(ds.attitude.euler_rad - att.euler_rad).max() < 1e-9
    assert np.abs(ds.baro.alt_m - baro.alt_m).max() < 1e-4
    assert np.array_equal(np.isnan(ds.gnss.lat_deg), np.isnan(gnss.lat_deg))
    assert np.array_equal(ds.gnss.attack, gnss.attack)
    assert np.array_equal(ds.gnss.jamming, gnss.jamming)
    assert np.array_equal(ds.gnss.fix_type, gnss.fix_type)
    assert ds.meta["format"] == "terrafix-flight" and ds.meta["streams"]["imu"]["rows"] == len(
        imu.t_ns)
    assert not ds.imu.accel_body_mps2.flags.writeable


def test_iterators_yield_shared_types_and_merge_in_time_order(tmp_path):
    _write(tmp_path)
    ds = load_dataset(tmp_path)
    first_imu = next(ds.iter_imu())
    assert isinstance(first_imu, ImuSample) and first_imu.accel_body_mps2.shape == (3,)
    assert isinstance(next(ds.iter_gnss()), GnssSample)
    frames = list(ds.iter_frames())
    assert len(frames) == 3 and isinstance(frames[0], CameraFrame)
    assert frames[1].image.shape == (48, 64) and frames[1].image.dtype == np.uint8
    merged = list(ds.iter_all())
    times = [s.t_ns for s in merged]
    assert times == sorted(times)
    n_expected = sum(len(x.t_ns) for x in (ds.imu, ds.attitude, ds.baro, ds.gnss, ds.frames))
    assert len(merged) == n_expected
    # Ties: imu before attitude before baro before gnss before frame at t = 0.
    kinds = [type(s) for s in merged if s.t_ns == 0]
    assert kinds == [ImuSample, AttitudeSample, BaroSample, GnssSample, CameraFrame]
    only = list(ds.iter_all(streams=("baro",)))
    assert all(isinstance(s, BaroSample) for s in only)


def test_truth_at_interpolates_between_samples(tmp_path):
    truth, *_ = _write(tmp_path)
    ds = load_dataset(tmp_path)
    s = ds.truth_at(int(truth.t_ns[100]) + 2_500_000)
    mid = 0.5 * (truth.p_ned_m[100] + truth.p_ned_m[101])
    assert np.abs(s.p_ned_m - mid).max() < 1e-3
    assert np.isclose(np.linalg.norm(s.q_body_to_ned), 1.0)
    exact = ds.truth_at(int(truth.t_ns[200]))
    assert np.allclose(exact.euler_rad[:2], truth.euler_rad[200, :2], atol=1e-8)
    with pytest.raises(DatasetError):
        ds.truth_at(int(truth.t_ns[-1]) + 1)
    pose = ds.camera_pose_at(int(truth.t_ns[50]))
    assert np.allclose(pose.p_cam_ned, truth.p_ned_m[50], atol=1e-3)


def test_corrupt_or_missing_files_are_clear_errors(tmp_path):
    _write(tmp_path)
    (tmp_path / "baro.csv").write_text("t_ns,alt\n0,1\n")
    with pytest.raises(DatasetError, match="header"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match=r"meta\.json"):
        load_dataset(tmp_path / "nowhere")


def test_gps_week_and_ms():
    # 2024-06-01T16:00:00Z is GPS week 2316, Saturday 16:00:18 GPS time.
    week, ms = gps_week_ms("2024-06-01T16:00:00Z", 1_500_000_000)
    assert week == 2316
    assert ms == (6 * 86400 + 16 * 3600 + 18) * 1000 + 1500
