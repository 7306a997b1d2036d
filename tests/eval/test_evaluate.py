"""End to end: a dataset written by the simulator's writer, a results.jsonl made from its
truth with known errors, evaluated into summary.json, PNGs and report.html."""

from __future__ import annotations

import json

import numpy as np
import pytest

from terrafix.eval.evaluate import EvalConf, EvalPaths, main
from terrafix.eval.records import JsonlWriter, load_results, solution_record
from terrafix.geo.frames import LocalFrame
from terrafix.measurements import NavSolution, SourceLabel
from terrafix.sim.attitude import AttitudeErrorParams, simulate_attitude
from terrafix.sim.baro import BaroParams, simulate_baro
from terrafix.sim.dataset import load_dataset, write_streams
from terrafix.sim.gnss import GnssAttack, GnssParams, simulate_gnss
from terrafix.sim.imu import ImuParams, simulate_imu
from terrafix.sim.streams import FrameIndex
from terrafix.sim.trajectory import FlightPlan, fly_kinematic

FRAME = LocalFrame(40.1672, -105.1019, 1520.0)
S = 1_000_000_000


def write_dataset(root, duration_s=40.0, seed=0, attacks=()):
    rng = np.random.default_rng(seed)
    plan = FlightPlan(np.array([[400.0, 0.0], [400.0, 400.0], [0.0, 400.0]]),
                      np.array([250.0, 250.0, 250.0]), start_alt_agl_m=250.0)
    truth = fly_kinematic(plan, duration_s, FRAME, rng)
    imu, _ = simulate_imu(truth, ImuParams(), rng)
    att = simulate_attitude(truth, AttitudeErrorParams(), rng)
    baro = simulate_baro(truth, BaroParams(), rng)
    gnss = simulate_gnss(truth, FRAME, GnssParams(), list(attacks), rng)
    frames = FrameIndex(np.array([], np.int64), np.array([], np.int64), np.array([], str))
    meta = {"seed": seed, "origin": {"lat_deg": FRAME.lat0_deg, "lon_deg": FRAME.lon0_deg,
                                      "alt_m": FRAME.alt0_m},
            "ground_alt_m": FRAME.alt0_m,
            "events": [{"type": "visual_blackout", "kind": "cloud", "start_s": 30.0,
                        "end_s": 36.0}],
            "camera": {"width": 64, "height": 48, "fx": 60.0, "fy": 60.0, "cx": 31.5,
                       "cy": 23.5, "dist": [0, 0, 0, 0, 0],
                       "R_cam_to_body": [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
                       "p_cam_in_body": [0, 0, 0]}}
    write_streams(root, meta, truth, imu, att, baro, gnss, frames)
    return load_dataset(root)


def write_results(run_dir, ds, offset_ne=(3.0, 3.9), sigma=2.5, close_gate_s=15.0):
    """10 Hz ticks at the truth plus a fixed offset; dead_reckoned from 30.2 s."""
    run_dir.mkdir(parents=True, exist_ok=True)
    t = np.arange(0, int(ds.truth.t_ns[-1]), S // 10)
    p = ds.truth_p_ned_at(t) + np.array([*offset_ne, 0.0])
    lat, lon, alt = ds.local_frame.ned_to_lla(p)
    with JsonlWriter(run_dir / "results.jsonl") as w:
        for i, ti in enumerate(t.tolist()):
            label = SourceLabel.DEAD_RECKONED if ti >= 30.2 * S else \
                SourceLabel.SATELLITE_ANCHORED
            w.write(solution_record(NavSolution(
                t_ns=ti, lat_deg=float(lat[i]), lon_deg=float(lon[i]), alt_m=float(alt[i]),
                v_ned_mps=np.zeros(3), cov_p_ned_m2=np.eye(3) * sigma**2,
                cov_v_ned_m2s2=np.eye(3), yaw_rad=0.0, label=label,
                anchor_age_s=float("inf") if i == 0 else 0.3,
                gnss_trusted=ti < close_gate_s * S)))
    (run_dir / "run.json").write_text(json.dumps({"dataset": str(ds.root),
                                                  "stats": {"frames": 0}}))
    return len(t)


@pytest.fixture(scope="module")
def pulloff_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pulloff")
    return write_dataset(root, attacks=[GnssAttack("pulloff", 10.0, 40.0, flag=False,
                                                   rate_mps=2.0, bearing_deg=90.0)])


def test_results_round_trip_keeps_inf_anchor_age_and_covariance(tmp_path, pulloff_dataset):
    n = write_results(tmp_path / "run", pulloff_dataset)
    tr = load_results(tmp_path / "run" / "results.jsonl")
    assert len(tr) == n
    assert np.isinf(tr.anchor_age_s[0]) and tr.anchor_age_s[1] == pytest.approx(0.3)
    assert np.allclose(tr.cov_p_ned_m2[5], np.eye(3) * 6.25)


def test_killed_writer_leaves_every_complete_record_readable(tmp_path, pulloff_dataset):
    run = tmp_path / "run"
    n = write_results(run, pulloff_dataset)
    data = (run / "results.jsonl").read_bytes()
    (run / "results.jsonl").write_bytes(data[: len(data) - 40])  # cut the last record
    assert len(load_results(run / "results.jsonl")) == n - 1


def test_evaluation_scores_known_errors_attack_and_blackout(tmp_path, pulloff_dataset):
    run = tmp_path / "run"
    write_results(run, pulloff_dataset)
    s = main(EvalConf(plots=True, background=False), EvalPaths(run))
    a = s["accuracy"]
    e = float(np.hypot(3.0, 3.9))  # 4.92 m everywhere
    assert a["p95_m"] == pytest.approx(e, abs=0.01)
    assert a["max_m"] == pytest.approx(e, abs=0.01)
    assert a["within_5m"] == pytest.approx(1.0) and a["within_20m"] == 1.0
    # 4.92 m error under sigma 2.5 m per axis: d2 = 3.87 < 5.99, always inside the ellipse
    assert s["consistency"]["inside_95"] == pytest.approx(1.0)
    assert s["consistency"]["nees_mean"] == pytest.approx(e**2 / 6.25, abs=1e-3)
    (att,) = s["attacks"]
    assert att["kind"] == "pulloff" and att["detected"]
    assert att["latency_s"] == pytest.approx(5.0, abs=1e-6)
    # 2 m/s for ~5 s: ~10 m east of truth, plus the receiver's own few-metre error
    assert 3.0 < att["offset_at_detection_m"] < 17.0
    assert s["false_closures"]["count"] == 0
    (b,) = s["blackouts"]
    assert b["label_latency_s"] == pytest.approx(0.2, abs=1e-6)
    assert s["output"]["rate_hz"] == pytest.approx(10.0, rel=1e-3)
    for name in ("summary.json", "report.html", "track.png", "error.png", "timeline.png"):
        assert (run / name).stat().st_size > 0
    html = (run / "report.html").read_text()
    assert "track.png" in html and "pulloff" in html
