"""`terrafix upload` reads the flight-state gate on a signed MAVLink link, like `terrafix fly`.

The CLI runs as its own process, the FC emulator as another, over real UDP; the ground double
(uvicorn, TLS) in this one. What is asserted: the handshake installs a key on the FC before the
reading and clears it afterwards; an FC that holds another key (a crashed flight's, or not the
aircraft's FC) is refused with exit 2 naming the signing and nothing is sent; and a landed
state injected unsigned on the link (an ON_GROUND from someone without the key, while the FC
itself says IN_AIR) is dropped, so the gate stays closed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from terrafix.autopilot import constants as C
from terrafix.recorder import FlightRecorder
from tests.autopilot.conftest import Peer
from tests.autopilot.peers import OTHER_KEY, fc_peer_main

from .fixtures import make_flight_store

REPO = Path(__file__).resolve().parents[2]
RECORD_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


@pytest.fixture
def flight(tmp_path):
    """(store root, recorder folder) of a landed flight with 4 PENDING tiles."""
    root = tmp_path / "flight-tiles" / "f1"
    make_flight_store(root, "f1", 4)
    folder = tmp_path / "flights" / "f1"
    rec = FlightRecorder(folder, flight_id="f1", config_hash="x")
    rec.producer("nav/solution", RECORD_SCHEMA).record(1, {"a": 1})
    rec.close()
    return root, folder


def _upload(ground, flight, fc_port: int) -> subprocess.CompletedProcess[str]:
    root, folder = flight
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "terrafix.app.cli", "upload", "--flight-store", str(root),
         "--recorder", str(folder), "--fc", f"udpout:127.0.0.1:{fc_port}", "--url", ground.url,
         "--ca-cert", str(ground.pki.ca_cert), "--device-key", str(ground.key_path),
         "--fc-wait-s", "5", "--no-progress"],
        capture_output=True, text=True, timeout=120, env=env)


def _fc(options: dict) -> Peer:
    return Peer(fc_peer_main, "udpin:127.0.0.1:0", {"telemetry_hz": 50, **options})


def test_upload_signs_the_fc_link_then_uploads(ground, flight):
    fc = _fc({"landed_state": C.LANDED_STATE_ON_GROUND})
    try:
        res = _upload(ground, flight, fc.address[1])
        fc_after = fc.call("summary")
    finally:
        fc.close()
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["accepted"] == 4
    # the key was installed by the handshake, and cleared when the CLI closed the link
    assert fc_after["setup_signing_accepted"] >= 1
    assert fc_after["signing_disabled_by_peer"] >= 1 and not fc_after["signing_active"]
    assert len(ground.double.stored_shas()) == 4


def test_fc_with_another_key_is_refused_and_nothing_is_sent(ground, flight):
    fc = _fc({"landed_state": C.LANDED_STATE_ON_GROUND, "key": OTHER_KEY})
    try:
        res = _upload(ground, flight, fc.address[1])
        fc_after = fc.call("summary")
    finally:
        fc.close()
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "signing handshake failed" in res.stderr
    assert fc_after["setup_signing_accepted"] == 0
    assert ground.double.requests == []


def test_unsigned_on_ground_injected_on_the_link_does_not_open_the_gate(ground, flight):
    fc = _fc({"landed_state": C.LANDED_STATE_IN_AIR,
              "unsigned_landed_state": C.LANDED_STATE_ON_GROUND})
    try:
        res = _upload(ground, flight, fc.address[1])
    finally:
        fc.close()
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "IN_AIR" in res.stderr
    assert ground.double.requests == []
