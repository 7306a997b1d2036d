"""The GNSS-free reference through the whole navigator (replay, registration off), both
backends, on a short procedural flight with sharp turns: no closure while the GNSS is
genuine, an unflagged 2 m/s pull-off caught by the reference before it drags 30 m, and the
estimate put back onto the reference with a covariance that contains the truth."""

from __future__ import annotations

import numpy as np
import pytest

from terrafix.app.replay import ReplayConf, ReplayPaths
from terrafix.app.replay import main as replay
from terrafix.eval.evaluate import score_track
from terrafix.eval.metrics import CHI2_95_2DOF, mahalanobis_sq
from terrafix.eval.records import load_events, load_results
from terrafix.navigation.navigator import NavigatorConfig
from terrafix.sim.dataset import load_dataset
from terrafix.sim.flight import simulate_flight
from terrafix.sim.scenario import parse_scenario

ATTACK_S = 45.0


@pytest.fixture(scope="module")
def pulloff_flight(tmp_path_factory):
    sc = {
        "name": "test-nomap-pulloff", "duration_s": 70.0,
        "world": {"kind": "synthetic", "origin_lat_deg": 48.2, "origin_lon_deg": 35.6,
                  "ground_alt_m": 120.0},
        "trajectory": {"airspeed_mps": 20.0, "max_bank_deg": 40.0,
                       "wind_ned_mps": [4.0, -2.5, 0.0], "start_alt_agl_m": 350.0,
                       "start_heading_deg": 30.0,
                       "random": {"count": 8, "radius_m": 900.0, "min_leg_m": 300.0,
                                  "alt_agl_m": [300.0, 400.0]}},
        "gnss": {"attacks": [{"kind": "pulloff", "start_s": ATTACK_S, "rate_mps": 2.0,
                              "bearing_deg": 250.0, "flag": False}]},
        "camera": {"width_px": 640, "height_px": 480},
    }
    root = tmp_path_factory.mktemp("nomap-pulloff")
    return simulate_flight(parse_scenario(sc, "test"), 5, root)


@pytest.mark.parametrize("backend", ["eskf", "isam2"])
def test_pulloff_without_map_is_caught_by_the_reference(pulloff_flight, tmp_path,
                                                        backend: str) -> None:
    cfg = NavigatorConfig().with_backend(backend)
    cfg = cfg.model_copy(update={"registration": cfg.registration.model_copy(
        update={"enabled": False})})
    out = replay(ReplayConf(cfg), ReplayPaths(pulloff_flight, tmp_path / backend))
    events = load_events(out / "events.jsonl")
    closures = [e for e in events if e["kind"] == "GnssTrustChanged" and not e["trusted"]]
    assert closures, "the pull-off was never detected"
    first = closures[0]
    t_close = first["t_ns"] * 1e-9
    assert t_close > ATTACK_S, f"closed at {t_close:.1f} s on genuine GNSS: {first['reason']}"
    assert first["reason"].startswith("reference"), first["reason"]
    assert (t_close - ATTACK_S) * 2.0 < 30.0  # offset at detection < 30 m
    resets = [e for e in events if e["kind"] == "FilterReset"
              and "reference" in e["reason"]]
    assert resets and resets[0]["t_ns"] == first["t_ns"]
    # after the closure the reported covariance contains the error (the estimate is off
    # the spoof and its covariance covers the odometry since the reference's anchor)
    ds = load_dataset(pulloff_flight)
    scored = score_track(load_results(out / "results.jsonl"), ds)
    after = scored.t_ns >= first["t_ns"] + 1_000_000_000
    d2 = mahalanobis_sq(scored.err_ned_m[after, :2], scored.cov_p_ned_m2[after, :2, :2])
    assert np.mean(d2 <= CHI2_95_2DOF) >= 0.9
