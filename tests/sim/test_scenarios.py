"""Scenario files: the shipped ones validate, bad values are errors naming the field."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from terrafix.sim.errors import ScenarioError
from terrafix.sim.scenario import load_scenario, parse_scenario, shipped_scenarios


def _data(name: str) -> dict:
    text = (resources.files("terrafix.sim") / "scenarios" / f"{name}.toml").read_text()
    return tomllib.loads(text)


def test_the_four_required_scenarios_are_shipped_and_valid():
    names = shipped_scenarios()
    assert {"demo", "long-synthetic", "spoof-pulloff", "jam-then-spoof"} <= set(names)
    for n in names:
        assert load_scenario(n).name == n


def test_demo_is_real_imagery_jammed_soon_after_takeoff_and_two_to_three_minutes():
    sc = load_scenario("demo")
    assert sc.world.kind == "dgsamples" and sc.world.source == "wv3"
    assert 120.0 <= sc.duration_s <= 180.0
    jam = [a for a in sc.gnss.attacks if a.kind == "jamming"]
    assert jam and jam[0].start_s <= 30.0
    agl = [w[2] for w in sc.trajectory.waypoints] + [sc.trajectory.start_alt_agl_m]
    assert min(agl) >= 100.0 and max(agl) <= 400.0


def test_long_synthetic_is_at_least_five_minutes_with_frames():
    sc = load_scenario("long-synthetic")
    assert sc.world.kind == "synthetic" and sc.duration_s >= 300 and sc.camera.render_frames


def test_spoof_pulloff_and_jam_then_spoof_have_their_events():
    p = load_scenario("spoof-pulloff")
    assert [a.kind for a in p.gnss.attacks] == ["pulloff"]
    assert 0.5 <= p.gnss.attacks[0].rate_mps <= 2.0
    j = load_scenario("jam-then-spoof")
    kinds = [a.kind for a in sorted(j.gnss.attacks, key=lambda a: a.start_s)]
    assert kinds[0] == "jamming" and kinds[1] in ("jump", "pulloff", "meaconing")
    assert j.camera.blackouts, "jam-then-spoof needs a total visual blackout"


@pytest.mark.parametrize(("path", "value", "field"), [
    (("gnss", "rate_hz"), 50.0, "gnss.rate_hz"),
    (("trajectory", "airspeed_mps"), 40.0, "trajectory.airspeed_mps"),
    (("duration_s",), -5.0, "duration_s"),
    (("world", "kind"), "moon", "world.kind"),
])
def test_a_wrong_value_is_an_error_naming_the_field(path, value, field):
    data = _data("demo")
    d = data
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data, "test.toml")
    assert field in str(exc.value) and "test.toml" in str(exc.value)


def test_unknown_keys_and_bad_attacks_are_refused():
    data = _data("demo")
    data["trajectory"]["airspeed"] = 18.0  # typo of airspeed_mps
    with pytest.raises(ScenarioError, match=r"trajectory\.airspeed"):
        parse_scenario(data)
    data = _data("spoof-pulloff")
    data["gnss"]["attacks"][0]["rate_mps"] = 3.0
    with pytest.raises(ScenarioError, match=r"gnss\.attacks\.0\.rate_mps"):
        parse_scenario(data)
    data = _data("jam-then-spoof")
    data["gnss"]["attacks"][1]["start_s"] = 50.0  # overlaps the jamming (30-70 s)
    with pytest.raises(ScenarioError, match="overlap"):
        parse_scenario(data)
    data = _data("long-synthetic")
    del data["world"]["origin_lat_deg"]
    with pytest.raises(ScenarioError, match="origin_lat_deg"):
        parse_scenario(data)


def test_unknown_scenario_and_broken_toml(tmp_path):
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenario("no-such-scenario")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)


def test_with_duration_drops_and_cuts_events():
    from terrafix.sim.scenario import with_duration

    sc = with_duration(load_scenario("jam-then-spoof"), 75.0)
    assert sc.duration_s == 75.0
    assert [(a.kind, a.start_s, sc.attack_end_s(i)) for i, a in enumerate(sc.gnss.attacks)] \
        == [("jamming", 30.0, 70.0), ("jump", 70.0, 75.0)]
    assert sc.camera.blackouts == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo", "spoof-pulloff", "jam-then-spoof"])
def test_shipped_real_imagery_scenarios_keep_every_footprint_on_the_imagery(name):
    """The generator refuses plans that leave the 1 km² image; the shipped ones must fly with
    the default seed of `sim run` and of `terrafix demo` (1) and another one (turbulence
    differs per seed)."""
    from terrafix.sim.flight import (
        camera_poses,
        check_footprints,
        fly,
        frame_times_ns,
        setup_flight,
    )

    sc = load_scenario(name)
    for seed in (1, 5):
        setup = setup_flight(sc, seed)
        truth = fly(setup)
        t_ns = frame_times_ns(sc.duration_s, sc.camera.frame_rate_hz)
        check_footprints(setup, camera_poses(setup, truth, t_ns), t_ns)  # raises if not
