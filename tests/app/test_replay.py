"""`terrafix replay` and `terrafix eval` through the command line, on simulator datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from terrafix.app.cli import app
from terrafix.eval.records import load_events, load_results
from terrafix.sim.dataset import load_dataset
from tests.navigation.navdata import demo_flight, synthetic_flight

runner = CliRunner()


@pytest.fixture(scope="module")
def short_flight(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay-synthetic")
    return synthetic_flight(root, seed=11, duration_s=20.0, jam_at_s=5.0, blackout=(14.0, 16.0))


def test_replay_then_eval_write_every_file_with_one_record_per_tick(short_flight, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["replay", str(short_flight), "--out", str(out),
                            "--no-registration", "--duration", "18"])
    assert r.exit_code == 0, r.output
    assert "x real time" in r.output
    results = load_results(out / "results.jsonl")
    assert len(results) == pytest.approx(180, abs=2)  # 10 Hz over 18 s
    assert np.all(np.diff(results.t_ns) == 100_000_000)
    events = load_events(out / "events.jsonl")
    frames = [e for e in events if e["kind"] == "frame"]
    assert len(frames) == pytest.approx(18 * 3, abs=2)
    assert any(e["kind"] == "GnssTrustChanged" for e in events)  # jammed at 5 s
    info = json.loads((out / "run.json").read_text())
    assert info["backend"] == "eskf" and info["stats"]["replay_speed_x"] > 0
    assert info["map"] == "registration disabled by config"
    assert info["config"]["registration"]["enabled"] is False

    r = runner.invoke(app, ["eval", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"]["n"] == len(results)
    assert summary["attacks"][0]["kind"] == "jamming" and summary["attacks"][0]["detected"]
    (b,) = summary["blackouts"]
    assert b["label_latency_s"] is not None and b["label_latency_s"] <= 0.4
    for name in ("report.html", "track.png", "error.png", "timeline.png"):
        assert (out / name).stat().st_size > 0


def test_replay_refuses_a_bad_config_with_the_field_named(short_flight, tmp_path):
    cfg = tmp_path / "nav.toml"
    cfg.write_text("[odometry]\nprocess_scale = 3.0\n")
    r = runner.invoke(app, ["replay", str(short_flight), "--out", str(tmp_path / "o"),
                            "--config", str(cfg)])
    assert r.exit_code == 2
    assert "odometry.process_scale" in r.output


def test_eval_without_results_says_what_it_expected(tmp_path):
    r = runner.invoke(app, ["eval", str(tmp_path)])
    assert r.exit_code == 2 and "results.jsonl" in r.output


@pytest.mark.slow
def test_replay_with_registration_on_real_imagery_anchors_the_estimate(tmp_path):
    """A short demo loop over the WorldView-3 world, GNSS jammed from 4 s, registered
    against the WorldView-2 map (built once under build/maps)."""
    ds_path = demo_flight(tmp_path / "demo", seed=7, duration_s=24.0, jam_at_s=4.0)
    out = tmp_path / "run"
    r = runner.invoke(app, ["replay", str(ds_path), "--out", str(out)])
    assert r.exit_code == 0, r.output
    info = json.loads((out / "run.json").read_text())
    assert info["stats"]["fixes_fused"] >= 4
    events = load_events(out / "events.jsonl")
    fused = [e for e in events if e["kind"] == "frame" and e["fix_fused"]]
    ds = load_dataset(ds_path)
    for e in fused:  # every fused fix is within 15 m of the truth at its frame
        p = ds.local_frame.lla_to_ned(e["lat_deg"], e["lon_deg"], ds.ground_alt_m)[:2]
        assert np.linalg.norm(p - ds.truth_p_ned_at(np.array([e["t_ns"]]))[0, :2]) < 15.0
    r = runner.invoke(app, ["eval", str(out), "--no-plots"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"]["p95_m"] < 15.0
    assert summary["anchored_share"] > 0.3
