"""The onboard program with the PX4 output and object localisation switched on, against the
simulated flight controller in another process: the FC gets no GPS_INPUT (PX4 does not decode
it), the link's fixed-rate sender runs, and the targeting API answers on its Unix socket
during the flight from the navigation history."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from terrafix.app.fly import OnboardProgram
from tests.app.test_fly import _config, _start_fc
from tests.short_flights import free_udp_port, short_scenario_toml, simulate_with_cli


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    toml = short_scenario_toml("fly-target", 10.0, 900.0, 5.0, 3.0, (640, 480))
    return simulate_with_cli(tmp_path_factory.mktemp("flytarget"), toml, "fly-target", seed=4)


def test_px4_output_and_targeting_api_in_flight(dataset: Path, tmp_path: Path) -> None:
    port = free_udp_port()
    sock = tmp_path / "target.sock"
    cfg = _config(dataset, tmp_path, port, autopilot_firmware="px4",
                  targeting={"local_api": True, "mavlink_tracking": True,
                             "api": {"unix_socket": str(sock)}})
    answers: list[dict] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set() and not sock.exists():
            time.sleep(0.05)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                          base_url="http://terrafix", timeout=5.0) as c:
            while not stop.is_set() and len(answers) < 5:
                try:
                    r = c.post("/v1/target", json={"u_px": 960, "v_px": 540, "pan_deg": 0.0,
                                                   "tilt_deg": -60.0, "zoom": 2.0})
                except httpx.TransportError:
                    time.sleep(0.1)
                    continue
                if r.status_code == 200:
                    answers.append(r.json())
                time.sleep(0.2)

    th = threading.Thread(target=client, daemon=True)
    th.start()
    fc = _start_fc(dataset, port, tmp_path / "fc")
    try:
        summary = OnboardProgram(cfg).fly()
        fc.join(timeout=60)
        assert fc.exitcode == 0
    finally:
        stop.set()
        if fc.is_alive():
            fc.kill()
    th.join(5)
    assert summary.gps_input_sent > 20  # the PX4 link's GLOBAL_POSITION_SENSOR ticks
    fc_summary = json.loads((tmp_path / "fc" / "fc_summary.json").read_text())
    assert fc_summary["gps_input_count"] == 0
    assert fc_summary["setup_signing_accepted"] == 1
    assert answers, "the targeting API never answered during the flight"
    t = answers[0]["target"]
    assert t["slant_range_m"] > 300 and t["ellipse95"]["semi_major_m"] > 0
    assert not sock.exists()  # removed when the flight closed
