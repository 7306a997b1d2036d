"""Whole flights: `terrafix sim run` determinism, dataset content, refusal off the imagery."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from terrafix.app.cli import app
from terrafix.sim.dataset import load_dataset
from terrafix.sim.errors import SimError, WorldError
from terrafix.sim.flight import simulate_flight
from terrafix.sim.scenario import parse_scenario, with_duration


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
def test_same_seed_gives_byte_identical_dataset(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    cmd = [sys.executable, "-m", "terrafix.app.cli", "sim", "run", "--scenario", "demo",
           "--out", str(a), "--seed", "3", "--duration", "4"]
    subprocess.run(cmd, check=True, capture_output=True)
    res = CliRunner().invoke(app, ["sim", "run", "--scenario", "demo", "--out", str(b),
                                   "--seed", "3", "--duration", "4"])
    assert res.exit_code == 0, res.output
    fa, fb = _files(a), _files(b)
    assert len([f for f in fa if f.startswith("frames/")]) == 13
    assert fa.keys() == fb.keys()
    diff = [k for k in fa if fa[k] != fb[k]]
    assert not diff, f"files differ: {diff}"
    res = CliRunner().invoke(app, ["sim", "run", "--scenario", "demo", "--out", str(c),
                                   "--seed", "4", "--duration", "4"])
    fc = _files(c)
    assert fc["imu.csv"] != fa["imu.csv"] and fc["frames/000005.png"] != fa["frames/000005.png"]


def _short_attack_scenario() -> dict:
    text = (resources.files("terrafix.sim") / "scenarios" / "demo.toml").read_text()
    data = tomllib.loads(text)
    data["duration_s"] = 10.0
    data["gnss"]["attacks"] = [
        {"kind": "jamming", "start_s": 2.0, "end_s": 4.0, "ramp_s": 1.0},
        {"kind": "jump", "start_s": 4.0, "end_s": 8.0, "offset_ned_m": [200.0, 0.0, 0.0],
         "flag": True, "flag_delay_s": 1.0},
    ]
    data["camera"]["blackouts"] = [{"start_s": 5.0, "end_s": 7.0, "kind": "cloud"}]
    return data


def test_dataset_carries_events_labels_blackouts_and_truth(tmp_path):
    sc = parse_scenario(_short_attack_scenario())
    ds = load_dataset(simulate_flight(sc, 7, tmp_path / "d"))
    assert np.all(np.diff(ds.truth.t_ns) == 5_000_000)  # 200 Hz
    assert np.array_equal(ds.imu.t_ns, ds.truth.t_ns)
    assert len(ds.frames.t_ns) == 31 and ds.frames.t_ns[3] == 1_000_000_000
    t = ds.gnss.t_ns * 1e-9
    assert set(ds.gnss.attack[(t >= 2) & (t < 4)]) == {"jamming"}
    assert set(ds.gnss.attack[(t >= 4) & (t < 8)]) == {"jump"}
    assert set(ds.gnss.attack[(t < 2) | (t >= 8)]) == {"none"}
    assert np.array_equal(ds.gnss.spoofing, (t >= 5) & (t < 8))
    assert np.all(ds.gnss.fix_type[(t >= 3) & (t < 4)] == 1)
    ev = ds.meta["events"]
    assert [(e["type"], e.get("kind")) for e in ev] == [
        ("gnss_attack", "jamming"), ("gnss_attack", "jump"), ("visual_blackout", "cloud")]
    assert ev[2]["start_ns"] == 5_000_000_000
    assert ds.meta["sensors"]["imu"]["datasheet"].startswith("TDK InvenSense ICM-42688-P")
    assert ds.meta["world"]["name"] == "dgsamples-wv3"
    assert len(ds.meta["world"]["bounds_wgs84"]) == 4
    # Blackout frames have no ground texture; the others do.
    for i, tf in enumerate(ds.frames.t_ns * 1e-9):
        img = ds.load_frame(i).image
        hp = img.astype(float) - cv2.GaussianBlur(img, (0, 0), 3.0).astype(float)
        if 5.0 <= tf < 7.0:
            assert hp.std() < 3.0, f"frame {i} at {tf:.2f} s should be blank"
        else:
            assert hp.std() > 3.0, f"frame {i} at {tf:.2f} s should show the ground"
    # The jump offsets the reported position by 200 m north.
    fix = np.isfinite(ds.gnss.lat_deg)
    p = ds.local_frame.lla_to_ned(ds.gnss.lat_deg[fix], ds.gnss.lon_deg[fix],
                                  ds.gnss.alt_m[fix])
    err = p - ds.truth_p_ned_at(ds.gnss.t_ns[fix])
    on = ((t >= 4) & (t < 8))[fix]
    before = (t < 2)[fix]
    assert abs(np.median(err[on, 0]) - 200.0) < 8.0
    assert abs(np.median(err[before, 0])) < 8.0


def test_plan_leaving_the_imagery_is_refused_before_writing(tmp_path):
    data = _short_attack_scenario()
    data["trajectory"]["waypoints"] = [[450.0, 0.0, 300.0], [450.0, 450.0, 300.0]]
    data["trajectory"]["start_ne_m"] = [350.0, 0.0]
    data["duration_s"] = 20.0
    with pytest.raises(WorldError, match="leaves the imagery"):
        simulate_flight(parse_scenario(data), 1, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    res = CliRunner().invoke(app, ["sim", "run", "--scenario", "no-such", "--out",
                                   str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown scenario" in res.output


def test_out_folder_with_foreign_files_is_not_overwritten(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    sc = with_duration(parse_scenario(_short_attack_scenario()), 1.0)
    with pytest.raises(SimError, match="refusing to overwrite"):
        simulate_flight(sc, 1, out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_flight_without_frames_loads_with_an_empty_frame_stream(tmp_path):
    data = _short_attack_scenario()
    data["camera"]["render_frames"] = False
    data["camera"]["blackouts"] = []
    ds = load_dataset(simulate_flight(parse_scenario(data), 2, tmp_path / "nf"))
    assert len(ds.frames.t_ns) == 0 and ds.frames.t_ns.dtype == np.int64
    assert list(ds.iter_frames()) == []
    assert len(ds.imu.t_ns) == 2001
    kinds = {type(s).__name__ for s in ds.iter_all()}
    assert kinds == {"ImuSample", "AttitudeSample", "BaroSample", "GnssSample"}
