"""Builders shared by the targeting tests: a flight frame, solutions and a filled history."""

from __future__ import annotations

import numpy as np

from terrafix.geo import LocalFrame
from terrafix.measurements import AttitudeSample, NavSolution, SourceLabel
from terrafix.targeting import PoseHistory, TargetingConfig, TargetLocator

FRAME = LocalFrame(40.16, -105.10, 1520.0)
GROUND_ALT_M = 1520.0
AGL_M = 200.0


def solution(t_ns: int, north_m: float = 0.0, east_m: float = 0.0, *, sigma_ne: float = 4.0,
             failsafe: bool = False, label: str = SourceLabel.SATELLITE_ANCHORED,
             v_ned: tuple[float, float, float] = (15.0, 5.0, 0.0)) -> NavSolution:
    lat, lon, alt = FRAME.ned_to_lla(np.array([north_m, east_m, -AGL_M]))
    return NavSolution(
        t_ns=t_ns, lat_deg=float(lat), lon_deg=float(lon), alt_m=float(alt),
        v_ned_mps=np.array(v_ned, dtype=float),
        cov_p_ned_m2=np.diag([sigma_ne**2, sigma_ne**2, 25.0]),
        cov_v_ned_m2s2=np.eye(3) * 0.25, yaw_rad=0.3,
        label=SourceLabel.NO_FIX if failsafe else label, anchor_age_s=1.0,
        gnss_trusted=False, failsafe=failsafe)


def locator(cfg: TargetingConfig | None = None, *, failsafe_after_s: float | None = None,
            t_end_s: float = 10.0, yaw_rad: float = 0.3) -> TargetLocator:
    """A locator whose history holds 10 Hz solutions (flying north-east at 15/5 m/s) and
    50 Hz attitudes from t = 0 to t_end_s (+1 s); failsafe from `failsafe_after_s` on."""
    cfg = cfg or TargetingConfig()
    hist = PoseHistory(FRAME, keep_s=60.0, max_extrapolation_s=cfg.max_extrapolation_s)
    for k in range(int(t_end_s * 10) + 1):
        t = k * 0.1
        fs = failsafe_after_s is not None and t >= failsafe_after_s
        hist.add_solution(solution(int(t * 1e9), 15.0 * t, 5.0 * t, failsafe=fs))
    for k in range(int((t_end_s + 1.0) * 50) + 1):
        hist.add_attitude(AttitudeSample(int(k * 0.02 * 1e9), 0.02, 0.03, yaw_rad))
    return TargetLocator(cfg, FRAME, GROUND_ALT_M, hist)
