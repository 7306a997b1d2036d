"""The onboard program against the simulated flight controller, as two processes over UDP.

Take-off checks refuse to fly without a verified cache or with an FC that will not sign with
our key; a short flight runs end to end: GPS_INPUT accepted by the FC, solutions written, the
recorder closed with a clean footer.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from terrafix.app.fly import FlyConfig, FlyError, OnboardProgram
from terrafix.recorder import clean_footer
from tests.short_flights import free_udp_port, short_scenario_toml, simulate_with_cli


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    toml = short_scenario_toml("fly-short", 10.0, 900.0, 5.0, 3.0, (640, 480))
    return simulate_with_cli(tmp_path_factory.mktemp("fly"), toml, "fly-short", seed=4)


def _config(dataset: Path, tmp: Path, port: int, **over) -> FlyConfig:
    data = {
        "flight_id": f"test-{port}",
        "output": str(tmp / "out"),
        "camera": {"source": "simulator", "dataset": str(dataset)},
        "map": {"cache": str(tmp / "no-cache"), "require_manifest": False},
        "autopilot": {"connection": f"udpout:127.0.0.1:{port}"},
        "wait_for_fc_s": 60.0,
        "navigation": {"registration": {"enabled": False}},
        "recorder": {"folder": str(tmp / "flights")},
    }
    data.update(over)
    return FlyConfig.from_dict(data)


def _run_fc(dataset: str, connection: str, out: str, key: bytes | None) -> None:
    from terrafix.sim.dataset import load_dataset
    from terrafix.sim.flight_controller import SimulatedFlightController

    fc = SimulatedFlightController(load_dataset(dataset), connection, key=key,
                                   landed_hold_s=1.0, wait_for_companion_s=60.0)
    fc.write_log(Path(out), fc.run())


def _start_fc(dataset: Path, port: int, out: Path, key: bytes | None = None):
    proc = mp.get_context("spawn").Process(
        target=_run_fc, args=(str(dataset), f"udpin:127.0.0.1:{port}", str(out), key))
    proc.start()
    return proc


def test_takeoff_refused_without_a_verified_cache(dataset: Path, tmp_path: Path):
    cfg = _config(dataset, tmp_path, free_udp_port(),
                  map={"cache": str(tmp_path / "empty"), "require_manifest": True,
                       "signer_fingerprint": "00" * 16})
    with pytest.raises(FlyError, match="take-off refused: manifest"):
        OnboardProgram(cfg).takeoff()


def test_takeoff_refused_when_the_fc_holds_another_key(dataset: Path, tmp_path: Path):
    port = free_udp_port()
    fc = _start_fc(dataset, port, tmp_path / "fc", key=b"\x11" * 32)
    try:
        with pytest.raises(FlyError, match="take-off refused"):
            OnboardProgram(_config(dataset, tmp_path, port)).takeoff()
    finally:
        fc.kill()
        fc.join()


def _run_unconfigured_fc(connection: str, seconds: float) -> None:
    import time

    from terrafix.autopilot.fc_emulation import ARDUPILOT_DEFAULT_PARAMS, FcEmulator

    fc = FcEmulator(connection, params=dict(ARDUPILOT_DEFAULT_PARAMS))
    fc.start()
    time.sleep(seconds)
    fc.close()


def test_takeoff_refused_when_the_fc_parameters_would_lose_the_position(dataset: Path,
                                                                        tmp_path: Path):
    # an FC with ArduPilot's defaults: GPS2 is not a MAVLink GPS and GPS_PRIMARY is ignored
    port = free_udp_port()
    fc = mp.get_context("spawn").Process(target=_run_unconfigured_fc,
                                         args=(f"udpin:127.0.0.1:{port}", 600.0))
    fc.start()
    try:
        with pytest.raises(FlyError, match="take-off refused") as err:
            OnboardProgram(_config(dataset, tmp_path, port)).takeoff()
        assert "GPS2_TYPE is 0" in str(err.value) and "GPS_AUTO_SWITCH is 1" in str(err.value)
    finally:
        fc.kill()
        fc.join()


def test_short_flight_end_to_end(dataset: Path, tmp_path: Path):
    port = free_udp_port()
    fc = _start_fc(dataset, port, tmp_path / "fc")
    try:
        summary = OnboardProgram(_config(dataset, tmp_path, port)).fly()
        fc.join(timeout=60)
        assert fc.exitcode == 0
    finally:
        if fc.is_alive():
            fc.kill()
    # the onboard side: solutions, frames through odometry, a clean recorder footer
    assert summary.solutions > 50
    assert summary.frames_processed >= 20
    assert summary.recorder_clean
    assert clean_footer(tmp_path / "flights" / summary.flight_id)
    results = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(results) == summary.solutions
    # the FC side: GPS_INPUT decoded (3D fix) while the estimate was anchored by GNSS, and
    # every received position within a sane distance of truth
    fc_summary = json.loads((tmp_path / "fc" / "fc_summary.json").read_text())
    assert fc_summary["setup_signing_accepted"] == 1  # (cleared again when we closed)
    assert fc_summary["gps_input_decoded"] > 10
    rows = [json.loads(x) for x in (tmp_path / "fc" / "fc_gps_input.jsonl").read_text()
            .splitlines()]
    errs = [r["error_m"] for r in rows if r["error_m"] is not None]
    assert errs and max(errs) < 100.0


def test_a_bad_config_is_refused_naming_the_key_and_the_value(tmp_path: Path):
    bad = tmp_path / "fly.toml"
    bad.write_text('[camera]\nhold_s = -1.0\nsource = "webcam"\n[navigation]\nbogus = 1\n')
    with pytest.raises(FlyError) as info:
        FlyConfig.load(bad)
    msg = str(info.value)
    assert str(bad) in msg
    assert "camera.hold_s" in msg and "-1.0" in msg
    assert "camera.source" in msg and "'webcam'" in msg
    assert "navigation.bogus" in msg
    broken = tmp_path / "broken.toml"
    broken.write_text("[camera\n")
    with pytest.raises(FlyError, match=r"cannot read config .*broken\.toml"):
        FlyConfig.load(broken)
    with pytest.raises(FlyError, match="cannot read config"):
        FlyConfig.load(tmp_path / "missing.toml")
