"""The onboard program with in-flight tiles and the upload after landing, against the simulated
FC (its own process, UDP) and the TLS ground double: tiles go to the flight store while flying
(one recorder record each, no pixels), the map cache is untouched, and once the FC reports
ON_GROUND (disarmed) and the recorder footer is clean they are uploaded (REQUIREMENTS U1, U2)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import jsonschema
import pytest

from terrafix.app.fly import OnboardProgram
from terrafix.mapping.flight_store import open_flight_store
from terrafix.recorder import FlightLog
from terrafix.tiles.records import VotingStatus
from tests.app.test_fly import _config
from tests.recorder.test_flight_log_schemas import _read_with_mcap
from tests.short_flights import free_udp_port, short_scenario_toml, simulate_with_cli


def _run_fc(dataset: str, connection: str) -> None:
    from terrafix.sim.dataset import load_dataset
    from terrafix.sim.flight_controller import SimulatedFlightController

    # on the ground after the flight for long enough that the companion's gate reads it
    SimulatedFlightController(load_dataset(dataset), connection, landed_hold_s=60.0,
                              wait_for_companion_s=60.0).run()


def _start_fc(dataset: Path, port: int):
    proc = mp.get_context("spawn").Process(target=_run_fc,
                                           args=(str(dataset), f"udpin:127.0.0.1:{port}"))
    proc.start()
    return proc


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    toml = short_scenario_toml("fly-tiles", 12.0, 900.0, 6.0, 3.0, (640, 480))
    return simulate_with_cli(tmp_path_factory.mktemp("fly"), toml, "fly-tiles", seed=5)


def test_flight_tiles_then_upload_after_landing(dataset: Path, tmp_path: Path, ground):
    port = free_udp_port()
    fc = _start_fc(dataset, port)
    cfg = _config(dataset, tmp_path, port,
                  # a 12 s flight never calibrates the navigator's heading (3 deg: ~10 m at a
                  # frame's corner from 300 m, not eligible): the gate is test_feed's subject,
                  # this test's is the flow from the flight to the ground
                  flight_tiles={"enabled": True, "folder": str(tmp_path / "flight-tiles"),
                                "eligibility": {"normal_sigma_m": 30.0, "max_sigma_m": 30.0}},
                  upload=ground.config().model_dump(mode="json"),
                  upload_after_landing=True, wait_for_fc_s=300.0)  # a spawned FC, busy machine
    try:
        prog = OnboardProgram(cfg)
        summary = prog.fly()
    finally:
        fc.kill()
        fc.join()
    assert summary.recorder_clean
    root = tmp_path / "flight-tiles" / summary.flight_id
    with open_flight_store(root) as store:
        records = list(store.backend.iter_records())
    assert records, "tiles were made in flight"
    assert all(r.source == f"flight:{summary.flight_id}" for r in records)
    # one recorder record per stored tile, without its pixels
    logged = [m.payload() for m in FlightLog(tmp_path / "flights" / summary.flight_id)
              .messages(["mapping/tile"])]
    assert sorted(d["sha256"] for d in logged) == sorted(r.sha256 for r in records)
    assert all("data" not in d and "jpeg" not in d for d in logged)
    # uploaded after landing
    up = prog.upload_summary
    assert up is not None and up.get("error") is None, up
    assert up["accepted"] == len(records)
    assert sorted(ground.double.stored_shas()) == sorted(r.sha256 for r in records)
    assert all(r.voting_status == VotingStatus.UPLOADED for r in
               open_flight_store(root).backend.iter_records())
    # the tile and upload records validate against their channels' generated schemas (the
    # upload has a recording of its own next to the flight's)
    checked = set()
    flights = tmp_path / "flights"
    for folder in [flights / summary.flight_id, *flights.glob(f"{summary.flight_id}-upload-*")]:
        for topic, (schema, payloads) in _read_with_mcap(folder).items():
            if not topic.startswith(("mapping/", "upload/")):
                continue
            assert schema["properties"] and schema["additionalProperties"] is False, topic
            validator = jsonschema.Draft202012Validator(schema)
            for p in payloads:
                errors = sorted(validator.iter_errors(p), key=str)
                assert not errors, f"{topic}: {errors[0].message} in {p!r:.300}"
            checked.add(topic)
    assert {"mapping/tile", "mapping/summary", "upload/session", "upload/summary"} <= checked
