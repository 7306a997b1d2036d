"""Small builders shared by the autopilot tests."""

from __future__ import annotations

import numpy as np

from terrafix.measurements import NavSolution, SourceLabel


def solution(
    t_ns: int,
    *,
    lat: float = 50.45,
    lon: float = 30.52,
    alt: float = 180.0,
    sigma_ne: float = 3.0,
    sigma_d: float = 5.0,
    v_ned: tuple[float, float, float] = (15.0, 5.0, -1.0),
    sigma_v: float = 0.5,
    label: str = SourceLabel.SATELLITE_ANCHORED,
    failsafe: bool = False,
    anchor_age_s: float = 1.0,
    gnss_trusted: bool = False,
    yaw_rad: float = 0.3,
) -> NavSolution:
    cov_p = np.diag([sigma_ne**2, sigma_ne**2, sigma_d**2])
    return NavSolution(
        t_ns=t_ns, lat_deg=lat, lon_deg=lon, alt_m=alt, v_ned_mps=np.array(v_ned, dtype=float),
        cov_p_ned_m2=cov_p, cov_v_ned_m2s2=np.eye(3) * sigma_v**2, yaw_rad=yaw_rad, label=label,
        anchor_age_s=anchor_age_s, gnss_trusted=gnss_trusted, failsafe=failsafe,
    )
