"""The flight log describes itself, on a log recorded by `terrafix fly` in a real two-process
flight (simulated FC in its own process, signed MAVLink over UDP): every topic's messages,
read back with the official `mcap` reader, validate against their channel's JSON Schema
(`jsonschema`); the track exports as GeoJSON that GDAL's GeoJSON driver opens (pyogrio), as
CSV, and as a plot, also from a torn copy of the log up to the damage; the header carries the
schema version and an older reader says clearly that the log is newer than itself."""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing as mp
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import jsonschema
import pyogrio
import pytest
from mcap.reader import make_reader
from typer.testing import CliRunner

from terrafix.app.cli import app as cli_app
from terrafix.app.fly import FlyConfig, OnboardProgram
from terrafix.recorder import FlightLog, FlightRecorder, RecorderWarning
from terrafix.recorder import reader as reader_module
from terrafix.recorder.export import track_topic
from terrafix.recorder.policies import FailedMatchThumbnails, TileSnapshots
from terrafix.recorder.schemas import SCHEMA_VERSION
from tests.short_flights import free_udp_port, short_scenario_toml, simulate_with_cli

ONBOARD_TOPICS = ("nav/solution", "nav/frame", "nav/event", "config", "/fdr/log",
                  "autopilot/gps_input", "nav/latency", "flight/takeoff", "flight/status",
                  "flight/summary", "system/thermal")
QUIET_TOPICS = ("/fdr/events",)
"""Declared in every log, written only when something is lost or coalesced (a clean short
flight has none): their records are validated in test_recorder_image_topics_validate."""
FC_TOPICS = ("fc/gps_input", "fc/summary")
runner = CliRunner()


def _run_fc(dataset: str, connection: str, out: str) -> None:
    from terrafix.sim.dataset import load_dataset
    from terrafix.sim.flight_controller import SimulatedFlightController

    fc = SimulatedFlightController(load_dataset(dataset), connection, landed_hold_s=1.0,
                                   wait_for_companion_s=60.0)
    fc.write_log(Path(out), fc.run())


@pytest.fixture(scope="module")
def flown(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 10 s flight: the simulated FC in its own process, `OnboardProgram.fly()` here (what
    `terrafix fly` runs). A warning is logged mid-flight so /fdr/log has a record."""
    root = tmp_path_factory.mktemp("fdr-schemas")
    toml = short_scenario_toml("fdr-short", 10.0, 900.0, 5.0, 3.0, (640, 480))
    dataset = simulate_with_cli(root, toml, "fdr-short", seed=4)
    port = free_udp_port()
    fc = mp.get_context("spawn").Process(
        target=_run_fc, args=(str(dataset), f"udpin:127.0.0.1:{port}", str(root / "fc")))
    fc.start()
    cfg = FlyConfig.from_dict({
        "flight_id": f"schemas-{port}", "output": str(root / "out"),
        "camera": {"source": "simulator", "dataset": str(dataset)},
        "map": {"cache": str(root / "no-cache"), "require_manifest": False},
        "autopilot": {"connection": f"udpout:127.0.0.1:{port}"}, "wait_for_fc_s": 60.0,
        "navigation": {"registration": {"enabled": False}},
        "recorder": {"folder": str(root / "flights")}})
    timer = threading.Timer(6.0, lambda: logging.getLogger("tests.fdr").warning(
        "operator note during the test flight"))
    timer.start()
    try:
        summary = OnboardProgram(cfg).fly()
        fc.join(timeout=60)
        assert fc.exitcode == 0
    finally:
        timer.cancel()
        if fc.is_alive():
            fc.kill()
    return {"onboard": root / "flights" / summary.flight_id, "fc": root / "fc" / "flight",
            "root": root}


def _read_with_mcap(folder: Path) -> dict[str, tuple[dict[str, Any], list[Any]]]:
    """topic -> (schema, payloads) over every segment, through the `mcap` library."""
    out: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    for seg in sorted(folder.glob("*.mcap")):
        with open(seg, "rb") as fh:
            reader = make_reader(fh)
            summary = reader.get_summary()
            assert summary is not None, f"{seg.name}: no MCAP summary"
            for ch in summary.channels.values():
                sch = summary.schemas[ch.schema_id]
                assert sch.encoding == "jsonschema" and ch.message_encoding == "json"
                out.setdefault(ch.topic, (json.loads(sch.data), []))
            for _schema, channel, message in reader.iter_messages():
                out[channel.topic][1].append(json.loads(message.data))
    return out


@pytest.mark.parametrize("log, topic", [("onboard", t) for t in ONBOARD_TOPICS + QUIET_TOPICS]
                         + [("fc", t) for t in FC_TOPICS])
def test_every_message_validates_against_its_channel_schema(flown: dict[str, Path], log: str,
                                                            topic: str) -> None:
    topics = _read_with_mcap(flown[log])
    assert topic in topics, f"{topic} not recorded; topics: {sorted(topics)}"
    schema, payloads = topics[topic]
    jsonschema.Draft202012Validator.check_schema(schema)
    # a real schema: typed properties (or a choice of kinds), required fields, descriptions
    kinds = schema.get("oneOf", [schema])
    for kind in kinds:
        assert kind["properties"] and kind["required"], kind.get("title")
    assert payloads or topic in QUIET_TOPICS, f"no {topic} messages"
    validator = jsonschema.Draft202012Validator(schema)
    for p in payloads:
        errors = sorted(validator.iter_errors(p), key=str)
        assert not errors, f"{topic}: {errors[0].message} in {p!r:.300}"


def test_schemas_state_units_shapes_and_reject_drift(flown: dict[str, Path]) -> None:
    topics = _read_with_mcap(flown["onboard"])
    sol_schema, sols = topics["nav/solution"]
    props = sol_schema["properties"]
    assert "Unit: degrees" in props["lat_deg"]["description"]
    assert "Shape: (3, 3)" in props["cov_p_ned_m2"]["description"]
    assert props["cov_p_ned_m2"]["maxItems"] == 3
    assert set(sol_schema["required"]) == set(sols[0])
    # a record that grew a key, lost one, or changed a type no longer validates
    validator = jsonschema.Draft202012Validator(sol_schema)
    assert not validator.is_valid({**sols[0], "new_key": 1})
    assert not validator.is_valid({k: v for k, v in sols[0].items() if k != "label"})
    assert not validator.is_valid({**sols[0], "label": "anchored-ish"})
    ev_schema, events = topics["nav/event"]
    assert {e["kind"] for e in events} <= {k["properties"]["kind"]["const"]
                                          for k in ev_schema["oneOf"]}


def test_header_carries_the_schema_version(flown: dict[str, Path]) -> None:
    log = FlightLog(flown["onboard"])
    assert log.header.schema_version == SCHEMA_VERSION
    result = runner.invoke(cli_app, ["fdr", "info", str(flown["onboard"])])
    assert result.exit_code == 0, result.output
    assert f"record schemas {SCHEMA_VERSION}" in result.output


def test_an_older_reader_says_the_log_is_newer(flown: dict[str, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader_module, "SCHEMA_VERSION", SCHEMA_VERSION - 1)
    with pytest.warns(RecorderWarning, match=f"record schema version {SCHEMA_VERSION}, newer"):
        log = FlightLog(flown["onboard"])
    assert any("newer than this reader" in w for w in log.warnings)
    assert sum(1 for _ in log.messages(["nav/solution"])) > 50  # still read in full


def _geojson(folder: Path, out: Path) -> dict[str, Any]:
    result = runner.invoke(cli_app, ["fdr", "export", str(folder), "-f", "geojson",
                                     "-o", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_geojson_track_opens_with_gdal_with_per_point_properties(flown: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    log = FlightLog(flown["onboard"])
    assert track_topic(log) == "nav/solution"  # not nav/frame, which also has lat/lon
    doc = _geojson(flown["onboard"], tmp_path / "track.geojson")
    feature = doc["features"][0]
    coords = feature["geometry"]["coordinates"]
    n_solutions = sum(1 for _ in log.messages(["nav/solution"]))
    assert feature["geometry"]["type"] == "LineString" and len(coords) == n_solutions
    info = pyogrio.read_info(tmp_path / "track.geojson")
    assert info["driver"] == "GeoJSON" and info["geometry_type"] in ("LineString",
                                                                     "LineString Z")
    assert info["features"] == 1
    for name in ("time_utc", "t_s", "label", "radius95_m"):
        assert name in list(info["fields"]), info["fields"]
    _meta, _fids, geometry, fields = pyogrio.raw.read(tmp_path / "track.geojson")
    by_name = dict(zip(info["fields"], fields, strict=True))
    labels = list(by_name["label"][0])
    radii = [float(r) for r in by_name["radius95_m"][0]]
    assert len(labels) == len(radii) == len(coords)
    assert set(labels) <= {"satellite_anchored", "visual_propagated", "dead_reckoned"}
    assert all(0.0 < r < 500.0 for r in radii)
    assert str(by_name["time_utc"][0][0]).endswith("Z")
    assert geometry[0] is not None


def test_csv_export_and_plot_of_the_real_log(flown: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "solution.csv"
    result = runner.invoke(cli_app, ["fdr", "export", str(flown["onboard"]), "-f", "csv",
                                     "-t", "nav/solution", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) > 50 and {"lat_deg", "lon_deg", "label", "radius95_m"} <= set(rows[0])
    png = tmp_path / "overview.png"
    result = runner.invoke(cli_app, ["fdr", "plot", str(flown["onboard"]), "-o", str(png),
                                     "--field", "nav/solution:radius95_m"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exports_of_a_torn_log_go_up_to_the_damage(flown: dict[str, Path],
                                                   tmp_path: Path) -> None:
    torn = tmp_path / "torn"
    shutil.copytree(flown["onboard"], torn)
    seg = sorted(torn.glob("*.mcap"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[: int(len(data) * 0.6)])  # a kill -9 / power loss mid-flight
    full = sum(1 for _ in FlightLog(flown["onboard"]).messages(["nav/solution"]))
    doc = _geojson(torn, tmp_path / "torn.geojson")
    points = doc["features"][0]["properties"]["points"]
    assert 0 < points < full
    assert pyogrio.read_info(tmp_path / "torn.geojson")["features"] == 1
    out = tmp_path / "torn.csv"
    result = runner.invoke(cli_app, ["fdr", "export", str(torn), "-f", "csv",
                                     "-t", "nav/solution", "-o", str(out)])
    assert result.exit_code == 0 and "read up to the damage" in result.output
    assert len(list(csv.DictReader(out.open()))) == points
    result = runner.invoke(cli_app, ["fdr", "plot", str(torn), "-o", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output


def test_recorder_image_topics_validate(tmp_path: Path) -> None:
    """The recorder's image policies (thumbnails, tile snapshots) and its own events: the
    records they write validate against the schemas they declare."""
    rec = FlightRecorder(tmp_path / "f", flight_id="images", config_hash="c")
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    FailedMatchThumbnails(rec).offer(1_000, jpeg)
    tiles = TileSnapshots(rec, max_per_flight=1)
    tiles.offer(2_000, "17/1/2", jpeg, 3.5)
    tiles.offer(3_000, "17/1/3", jpeg, 3.5)  # refused: a `capped` event
    rec.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecorderWarning)
        topics = _read_with_mcap(tmp_path / "f")
    for topic in ("/vision/failed_match_thumbnail", "/tiles/snapshot", "/fdr/events"):
        schema, payloads = topics[topic]
        assert payloads, topic
        validator = jsonschema.Draft202012Validator(schema)
        for p in payloads:
            validator.validate(p)
