"""The simulated flight controller against the real companion link, over UDP between processes.

The FC runs in its own process (as `terrafix sim fc` does) and the companion side is the real
`ArduPilotLink`: signing handshake, typed samples from the dataset's telemetry, GNSS flags from
GNSS_INTEGRITY, landed state at the end, and GPS_INPUT accepted and logged by the FC.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from terrafix.autopilot import ArduPilotLink, ArduPilotLinkConfig, FcCallbacks
from terrafix.measurements import NavSolution, SourceLabel
from terrafix.sim.dataset import load_dataset
from tests.short_flights import free_udp_port, short_scenario_toml, simulate_with_cli

SPEED = 2.0


@pytest.fixture(scope="module")
def short_dataset(tmp_path_factory) -> Path:
    toml = short_scenario_toml("fc-short", 8.0, 800.0, 4.0, 1.0, (320, 240))
    return simulate_with_cli(tmp_path_factory.mktemp("fc"), toml, "fc-short", seed=3)


def _run_fc(dataset: str, connection: str, out: str) -> None:
    from terrafix.sim.flight_controller import run_simulated_fc

    run_simulated_fc(dataset, connection, speed=SPEED, out_dir=out, landed_hold_s=3.0)


def test_simulated_fc_plays_the_dataset_to_the_real_link(short_dataset: Path, tmp_path: Path):
    ds = load_dataset(short_dataset)
    port = free_udp_port()
    fc_out = tmp_path / "fc"
    proc = mp.get_context("spawn").Process(
        target=_run_fc, args=(str(short_dataset), f"udpin:127.0.0.1:{port}", str(fc_out)))
    proc.start()
    imu, gnss, jam_flags, landed = [], [], [], []
    cb = FcCallbacks(on_imu=imu.append, on_gnss=gnss.append,
                     on_gnss_interference=lambda s: jam_flags.append(s.jamming),
                     on_landed_state=landed.append)
    link = ArduPilotLink(ArduPilotLinkConfig(connection=f"udpout:127.0.0.1:{port}",
                                             gps_input_rate_hz=10.0), cb)
    stop = threading.Event()
    try:
        link.open()
        assert link.wait_for_fc(60.0), "the simulated FC process never sent a HEARTBEAT"
        report = link.establish_signing()
        assert report is not None and link.signing_established
        link.start_output()
        lat0, lon0 = ds.meta["origin"]["lat_deg"], ds.meta["origin"]["lon_deg"]

        def publish() -> None:
            while not stop.is_set():
                link.publish(NavSolution(
                    time.monotonic_ns(), lat0, lon0, 420.0, np.zeros(3), np.eye(3) * 4.0,
                    np.eye(3) * 0.25, 0.0, SourceLabel.SATELLITE_ANCHORED, 1.0, False))
                time.sleep(0.05)

        threading.Thread(target=publish, daemon=True).start()
        proc.join(timeout=60)
        assert proc.exitcode == 0
    finally:
        stop.set()
        link.close()
        if proc.is_alive():
            proc.kill()
    # every IMU sample of the dataset arrived as a typed sample (UDP on loopback loses none in
    # practice; allow a few), in order, on the companion clock
    assert len(imu) >= 0.95 * len(ds.imu.t_ns)
    t = np.array([s.t_ns for s in imu])
    assert np.all(np.diff(t) > 0)
    # played at SPEED x the FC clock runs SPEED x fast; the alignment (never later than arrival)
    # follows it, so 200 Hz samples are 5 ms / SPEED apart on the companion clock
    assert np.median(np.diff(t)) == pytest.approx(5e6 / SPEED, rel=0.05)
    # GNSS: fixes before the jamming, no fix after, and the receiver's jamming flag reported
    fixes = [g.fix_type for g in gnss]
    assert fixes[0] >= 3 and any(f <= 1 for f in fixes)
    assert any(jam_flags) and not jam_flags[0]
    assert landed and landed[-1].on_ground
    summary = json.loads((fc_out / "fc_summary.json").read_text())
    assert summary["signing_active"] and summary["setup_signing_accepted"] == 1
    assert summary["gps_input_decoded"] > 0
    rows = [json.loads(line) for line in (fc_out / "fc_gps_input.jsonl").read_text().splitlines()]
    assert len(rows) == summary["gps_input_count"]
    # we published the origin: the FC logged each GPS_INPUT's error against truth at arrival
    errs = [r["error_m"] for r in rows if r["error_m"] is not None]
    assert errs and min(errs) < 50.0 < max(errs)
