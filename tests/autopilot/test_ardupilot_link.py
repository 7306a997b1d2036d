"""The ArduPilot link against an FC peer process over UDP, TCP and a serial pseudo-terminal:
signing handshake, typed inbound samples, GPS_INPUT accepted by ArduPilot's rules, EKF source
set on trust changes, landed state, key hygiene on close (REQUIREMENTS A1, A2)."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.ardupilot import ArduPilotLink, ArduPilotLinkConfig, FcCallbacks
from terrafix.autopilot.position_output import PositionOutput
from terrafix.autopilot.signing import SigningKey
from terrafix.measurements import AttitudeSample, GnssSample, ImuSample, SourceLabel

from .helpers import solution
from .peers import fc_peer_main


class Inbox:
    """Thread-safe collection of whatever the link delivers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[str, list] = {}

    def sink(self, kind: str):
        def put(x) -> None:
            with self.lock:
                self.items.setdefault(kind, []).append(x)
        return put

    def get(self, kind: str) -> list:
        with self.lock:
            return list(self.items.get(kind, []))

    def callbacks(self) -> FcCallbacks:
        names = ("imu", "attitude", "baro", "gnss", "landed_state", "heartbeat",
                 "status_text", "ekf_source_set")
        kw = {f"on_{n}": self.sink(n) for n in names if n != "ekf_source_set"}
        kw["on_ekf_source_set"] = lambda set_id, result: self.sink("ekf_source_set")(
            (set_id, result))
        return FcCallbacks(**kw)


class Publisher:
    """Stands in for the estimator: publishes an IMU-propagated solution at 20 Hz."""

    def __init__(self, link: PositionOutput, **kw) -> None:
        self.link, self.kw = link, kw
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.link.publish(solution(time.monotonic_ns(), **self.kw))
            self.stop.wait(0.05)

    def __enter__(self) -> Publisher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def wait_for(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.fixture
def captured_keys(monkeypatch):
    keys: list[SigningKey] = []
    original = SigningKey.generate.__func__

    def generate(cls):
        k = original(cls)
        keys.append(k)
        return k

    monkeypatch.setattr(SigningKey, "generate", classmethod(generate))
    return keys


def test_udp_link_end_to_end(start_peer, captured_keys, caplog):
    caplog.set_level(logging.DEBUG)
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0", {"telemetry_hz": 50})
    inbox = Inbox()
    cfg = ArduPilotLinkConfig(connection=f"udpout:127.0.0.1:{fc.address[1]}",
                              gps_input_rate_hz=10.0, gnss_switch="ekf_source_set",
                              fc_gps_lag_s=0.0)  # reports of the sending instant: exact fields
    link = ArduPilotLink(cfg, inbox.callbacks())
    assert isinstance(link, PositionOutput)
    try:
        link.open()
        report = link.establish_signing()
        assert report.fc_system_id == 1 and report.fc_component_id == 1
        assert link.signing_established
        key_hex = captured_keys[0].material.hex()
        with Publisher(link, lat=50.45, lon=30.52, sigma_ne=4.0, v_ned=(0.0, 0.0, 0.0)):
            link.start_output()
            time.sleep(3.0)
            summary = fc.call("summary")
        acc = summary["acceptance"]
        # ~30 expected at 10 Hz over 3 s; counts only, with a wide margin (shared CPU)
        assert 15 <= acc["count"] <= 40
        assert acc["decoded"] == acc["count"]
        assert summary["has_fix"] and summary["healthy"]
        assert summary["setup_signing_accepted"] >= 1 and summary["signing_active"]
        rec = fc.call("records")[-1]
        assert rec.fix_type == 3 and rec.time_week > 2000 and rec.decoded
        assert (rec.lat_deg, rec.lon_deg) == pytest.approx((50.45, 30.52), abs=1e-6)
        assert rec.h_acc_m == pytest.approx(4.0, abs=0.05)
        assert rec.yaw_cdeg == 0 and rec.ignore_flags == 0

        # inbound telemetry arrived, typed, on the companion clock, never after its arrival
        now = time.monotonic_ns()
        att, imu, gnss = inbox.get("attitude"), inbox.get("imu"), inbox.get("gnss")
        assert len(att) > 50 and len(imu) > 50 and len(gnss) > 5
        assert isinstance(att[-1], AttitudeSample) and att[-1].pitch_rad == pytest.approx(0.05)
        assert isinstance(imu[-1], ImuSample)
        np.testing.assert_allclose(imu[-1].accel_body_mps2, [0, 0, -9.80665])
        assert isinstance(gnss[-1], GnssSample) and gnss[-1].fix_type == 3
        assert all(s.t_ns <= now for s in att + imu + gnss)
        assert np.all(np.diff([s.t_ns for s in imu[-40:]]) > 0)
        assert inbox.get("baro")
        stats = link.stats()
        assert stats.channel.signed_accepted > 100
        assert stats.decode_errors == 0 and stats.channel.handler_errors == 0
        assert stats.clock_offset_ns is not None

        # landed state: ON_GROUND reads on ground; IN_AIR does not (fail closed)
        assert wait_for(link.on_ground)
        fc.call("landed_state", C.LANDED_STATE_IN_AIR)
        assert wait_for(lambda: not link.on_ground())

        # with gnss_switch = ekf_source_set, trust changes switch the EKF source set,
        # acknowledged by the FC (the default GPS_PRIMARY switch: test_gnss_switch.py)
        link.set_gnss_trusted(False)
        link.set_gnss_trusted(False)  # no change, no command
        link.set_gnss_trusted(True)
        assert wait_for(lambda: len(inbox.get("ekf_source_set")) == 2)
        assert inbox.get("ekf_source_set") == [(2, C.RESULT_ACCEPTED), (1, C.RESULT_ACCEPTED)]
        assert fc.call("summary")["ekf_source_sets"] == [2, 1]

        # failsafe: an explicit no-fix that ArduPilot does not decode
        with Publisher(link, failsafe=True, label=SourceLabel.NO_FIX):
            time.sleep(0.6)
            recs = fc.call("records")
        assert recs[-1].fix_type == C.GPS_FIX_TYPE_NO_FIX and not recs[-1].decoded
        assert recs[-1].h_acc_m >= 1000.0
    finally:
        link.close()
    # on close the FC's key is cleared (so the next flight can install its own) and ours zeroed
    assert wait_for(lambda: fc.call("summary")["signing_disabled_by_peer"] == 1)
    assert len(captured_keys) == 1 and captured_keys[0].is_zeroed
    # the key never reached the logs, neither as bytes nor as a key object
    assert key_hex not in caplog.text and bytes.fromhex(key_hex).hex(" ") not in caplog.text
    assert not any(r.args and any(isinstance(a, SigningKey) for a in r.args)
                   for r in caplog.records)


@pytest.mark.parametrize("kind", ["tcp", "serial"])
def test_tcp_and_serial_links_sign_and_deliver(start_peer, kind):
    listen = "tcpin:127.0.0.1:0" if kind == "tcp" else "pty"
    fc = start_peer(fc_peer_main, listen, {"telemetry_hz": 50})
    connection = (f"tcp:127.0.0.1:{fc.address[1]}" if kind == "tcp" else fc.address)
    inbox = Inbox()
    link = ArduPilotLink(ArduPilotLinkConfig(connection=connection, baud=115200),
                         inbox.callbacks())
    try:
        link.open()
        link.establish_signing()
        with Publisher(link):
            link.start_output()
            assert wait_for(lambda: fc.call("summary")["acceptance"]["decoded"] >= 5, 5.0)
        assert len(inbox.get("attitude")) > 10
        assert link.stats().channel.signed_accepted > 10
    finally:
        link.close()
