"""`terrafix fdr info | check | export | plot` on a recorded flight: files round-trip and the CLI
output agrees with the library's reading of the same folder."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from terrafix.app.cli import app
from terrafix.recorder import FlightLog, FlightRecorder

from .conftest import small_config

NAV_SCHEMA = {
    "title": "terrafix.NavSolution",
    "type": "object",
    "properties": {
        "lat_deg": {"type": "number"},
        "lon_deg": {"type": "number"},
        "alt_m": {"type": "number"},
        "label": {"type": "string"},
        "cov": {"type": "array"},
        "gate": {"type": "object"},
    },
}
IMU_SCHEMA = {"title": "terrafix.Imu", "type": "object",
              "properties": {"accel": {"type": "array"}, "gyro": {"type": "array"}}}
runner = CliRunner()


@pytest.fixture(scope="module")
def flight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "flight"
    rec = FlightRecorder(
        folder,
        flight_id="CLI-7",
        config_hash="h123",
        config=small_config(),
        key_fingerprints={"upload": "SHA256:aa"},
    )
    nav = rec.producer("/nav/solution", NAV_SCHEMA)
    imu = rec.producer("/fc/imu", IMU_SCHEMA)
    t0 = rec.header.start_t_ns
    for k in range(400):
        t = t0 + k * 5_000_000
        imu.record(t, {"accel": [0.0, 0.1, -9.81], "k": k})
        if k % 20 == 0:
            nav.record(
                t,
                {
                    "lat_deg": 50.45 + 1e-4 * k,
                    "lon_deg": 30.52 + 2e-4 * k,
                    "alt_m": 300.0 + k,
                    "label": "satellite_anchored",
                    "cov": np.eye(2) * k,
                    "gate": {"open": k % 40 == 0, "nis": 1.5},
                },
            )
    rec.close()
    return folder


def _invoke(*args: str) -> str:
    result = runner.invoke(app, ["fdr", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_has_help() -> None:
    for cmd in ([], ["info"], ["check"], ["export"], ["plot"]):
        result = runner.invoke(app, ["fdr", *cmd, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_info_json_matches_the_library(flight: Path) -> None:
    d = json.loads(_invoke("info", str(flight), "--json"))
    log = FlightLog(flight)
    assert d["header"]["flight_id"] == "CLI-7" and d["header"]["config_hash"] == "h123"
    assert d["header"]["key_fingerprints"] == {"upload": "SHA256:aa"}
    assert d["clean_footer"] is True and d["footer"]["clean_shutdown"] is True
    assert d["footer"]["records_written"] == log.footer.records_written  # type: ignore[union-attr]
    assert d["topics"]["/fc/imu"]["messages"] == 400
    assert d["topics"]["/nav/solution"]["messages"] == 20
    assert [s["name"] for s in d["segments"]] == [p.name for p in log.segment_paths]
    assert d["warnings"] == []


def test_info_text(flight: Path) -> None:
    out = _invoke("info", str(flight))
    assert "flight        CLI-7" in out
    assert "upload gate   clean footer" in out
    imu_line = next(line for line in out.splitlines() if "/fc/imu" in line)
    assert imu_line.split()[1] == "400" and "terrafix.Imu" in imu_line
    assert "0.000 .." in imu_line and "1.995 s" in imu_line


def test_export_jsonl_round_trips_every_record(flight: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    _invoke("export", str(flight), "--format", "jsonl", "--out", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [
        {"topic": m.topic, "t_ns": m.t_ns, "sequence": m.sequence, "payload": m.payload()}
        for m in FlightLog(flight).messages()
    ]
    assert lines == expected and len(lines) == 420
    only_nav = _invoke("export", str(flight), "-t", "/nav/solution")
    assert len(only_nav.splitlines()) == 20


def test_export_csv_flattens_one_topic(flight: Path) -> None:
    out = _invoke("export", str(flight), "--format", "csv", "--topic", "/nav/solution")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 20
    assert list(rows[0])[:4] == ["t_ns", "sequence", "lat_deg", "lon_deg"]
    msgs = list(FlightLog(flight).messages(["/nav/solution"]))
    for row, m in zip(rows, msgs, strict=True):
        p = m.payload()
        assert int(row["t_ns"]) == m.t_ns and float(row["lat_deg"]) == p["lat_deg"]
        assert row["gate.open"] == ("true" if p["gate"]["open"] else "false")
        assert json.loads(row["cov"]) == p["cov"]


def test_export_geojson_track(flight: Path) -> None:
    gj = json.loads(_invoke("export", str(flight), "--format", "geojson"))
    (feature,) = gj["features"]
    assert feature["geometry"]["type"] == "LineString"
    assert feature["properties"]["topic"] == "/nav/solution"  # found by its schema
    coords = feature["geometry"]["coordinates"]
    msgs = [m.payload() for m in FlightLog(flight).messages(["/nav/solution"])]
    assert coords == [[p["lon_deg"], p["lat_deg"], p["alt_m"]] for p in msgs]


def test_export_errors_are_clear(flight: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["fdr", "export", str(flight), "--format", "csv"])
    assert r.exit_code == 2 and "exactly one --topic" in r.output
    r = runner.invoke(app, ["fdr", "export", str(flight), "-f", "geojson", "-t", "/fc/imu"])
    assert r.exit_code == 0  # a topic without positions: an empty track, not a crash
    r = runner.invoke(app, ["fdr", "info", str(tmp_path)])
    assert r.exit_code == 2 and "segment" in r.output


def test_plot_writes_a_png(flight: Path, tmp_path: Path) -> None:
    png = tmp_path / "overview.png"
    _invoke("plot", str(flight), "--out", str(png), "--field", "/nav/solution:alt_m")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_check_is_the_upload_gate(flight: Path, tmp_path: Path) -> None:
    assert _invoke("check", str(flight)).strip() == "clean"
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in sorted(flight.glob("segment-*.mcap")):
        (broken / p.name).write_bytes(p.read_bytes())
    last = sorted(broken.glob("segment-*.mcap"))[-1]
    last.write_bytes(last.read_bytes()[:-100])
    r = runner.invoke(app, ["fdr", "check", str(broken)])
    assert r.exit_code == 1 and "not clean" in r.output
    r = runner.invoke(app, ["fdr", "info", str(broken)])
    assert "footer        MISSING" in r.stdout and "warning:" in r.stdout


def test_installed_console_script(flight: Path) -> None:
    exe = Path(sys.executable).with_name("terrafix")
    out = subprocess.run(
        [str(exe), "fdr", "info", str(flight), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout)["header"]["flight_id"] == "CLI-7"
