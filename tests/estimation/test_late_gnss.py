"""Both backends take a receiver's late report (ArduPilot's GPS_RAW_INT reaches the companion
0.2-0.3 s after the fix) at its own time, position and velocity, in a banked turn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2

from terrafix.estimation.isam2 import Isam2Smoother
from terrafix.estimation.warm_start import InitialState
from terrafix.geo.rotation import R_to_quat
from terrafix.measurements import GnssSample

from .helpers import TurnTruth, imu_stream
from .test_eskf import CFG, FRAME, make_filter


def _gnss_at(truth: TurnTruth, t_s: float, *, vertical_velocity: bool) -> GnssSample:
    p = truth.position(t_s)
    lat, lon, alt = FRAME.ned_to_lla(p)
    v = truth.velocity(t_s).copy()
    if not vertical_velocity:
        v[2] = math.nan  # GPS_RAW_INT: ground speed and course only
    return GnssSample(t_ns=round(t_s * 1e9), lat_deg=float(lat), lon_deg=float(lon),
                      alt_m=float(alt), v_ned_mps=v, h_acc_m=0.5, v_acc_m=0.8, fix_type=3,
                      num_sats=14)


@pytest.mark.parametrize("backend", ["eskf", "isam2"])
@pytest.mark.parametrize("lag_s", [0.1, 0.25, 0.4])
def test_late_gnss_in_a_banked_turn_is_fused_at_its_own_time(lag_s: float, backend: str,
                                                             ) -> None:
    """A receiver's report reaches the companion 0.2-0.3 s after its fix (ArduPilot's
    GPS_RAW_INT); in a 30 deg turn the velocity turns by over 1 m/s in that time. The
    report must be compared with the state at the fix (position and velocity), so exact
    late reports are accepted with a small NIS, and the estimate stays on the truth."""
    V = 25.0
    w = math.tan(math.radians(30.0)) * CFG.gravity_mps2 / V  # 30 deg coordinated turn
    truth = TurnTruth(speed_mps=V, yaw_rate_radps=w)
    f = make_filter(truth, sigma_p=0.5, sigma_v=0.1)
    if backend == "isam2":
        p, v, R = truth.position(0.0), truth.velocity(0.0), truth.R_body_to_ned(0.0)
        f = Isam2Smoother(CFG, FRAME, InitialState(0, p, v, R_to_quat(R), np.eye(3) * 0.25,
                                                   np.eye(3) * 0.01, np.eye(3) * 1e-6))
    imu = imu_stream(truth, 0.0, 30.0)
    fix_times = [round(t * 1e9) for t in np.arange(1.0, 29.0, 0.2)]
    reports = []
    j = 0
    for s in imu:
        f.propagate(s)
        while j < len(fix_times) and fix_times[j] + lag_s * 1e9 <= s.t_ns:
            reports.append(f.update_gnss(_gnss_at(truth, fix_times[j] * 1e-9,
                                                  vertical_velocity=False), fuse=True))
            j += 1
    assert len(reports) == len(fix_times)
    rejected = [r for r in reports if not r.accepted]
    assert not rejected, f"{len(rejected)} of {len(reports)} rejected: {rejected[0].reason}"
    assert max(r.nis for r in reports) < float(chi2.ppf(0.999, 2))
    est = f.estimate()
    err = np.linalg.norm(est.p_ned_m[:2] - truth.position(imu[-1].t_ns * 1e-9)[:2])
    assert err < 0.5
