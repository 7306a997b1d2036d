"""Drive a position-output link as the onboard program would, for the output-rate benches
(bench/gps_input.py for ArduPilot, bench/px4_input.py for PX4): open, sign, a 20 Hz estimator
publishing a fixed solution, the fixed-rate output for `duration_s`, close."""

from __future__ import annotations

import threading
import time

import numpy as np

from terrafix.autopilot.ardupilot import ArduPilotLink, SigningReport
from terrafix.autopilot.gps_sender import OutputStats
from terrafix.measurements import NavSolution, SourceLabel


def drive_link(link: ArduPilotLink, duration_s: float, lat_deg: float, lon_deg: float,
               alt_m: float) -> tuple[SigningReport, OutputStats]:
    """(signing handshake report, sender stats at the end of the run); the link is closed."""
    stop = threading.Event()

    def estimator() -> None:
        while not stop.is_set():
            link.publish(NavSolution(
                time.monotonic_ns(), lat_deg, lon_deg, alt_m, np.array([15.0, 2.0, 0.0]),
                np.diag([9.0, 9.0, 25.0]), np.eye(3) * 0.25, 0.1,
                SourceLabel.SATELLITE_ANCHORED, 1.0, False))
            stop.wait(0.05)

    try:
        link.open()
        handshake = link.establish_signing()
        est = threading.Thread(target=estimator, daemon=True)
        est.start()
        link.start_output()
        time.sleep(duration_s)
        out = link.output_stats()
        stop.set()
        est.join()
    finally:
        stop.set()
        link.close()
    return handshake, out
