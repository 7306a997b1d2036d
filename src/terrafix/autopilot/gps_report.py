"""From a navigation solution to what a GPS receiver would report.

Why a receiver-shaped report: ArduPilot (GPS_INPUT) and iNav (MSP2_SENSOR_GPS) both accept our
position only as if it came from a GPS, so the honest content of a NavSolution (label, covariance,
age) has to be expressed in a receiver's vocabulary: fix type, accuracies, DOPs and satellites.
Both links encode the same GpsReport, so the mapping below is the single place that decides what
the autopilot is told.

The mapping:
- fix type: 3 (3D) for any labelled solution (satellite_anchored, visual_propagated,
  dead_reckoned) whose horizontal 1-sigma is at most MAX_3D_FIX_ACCURACY_M; 1 (no fix) for
  failsafe, the `no_fix` label, a non-finite covariance, a solution older than `stale_after_s`,
  or no solution yet. We never claim DGPS/RTK (4/5).
- horiz_accuracy: 1-sigma along the worst horizontal axis, sqrt(lambda_max(cov_ne)) (ArduPilot's
  EKF uses it as a per-axis standard deviation, so the worst axis is the honest choice);
  vert_accuracy: sqrt(cov_dd); speed_accuracy: sqrt(lambda_max(cov_v)).
- a solution that has aged by `age` seconds since it was computed is extrapolated with its
  velocity, and its accuracies grow linearly: sigma_v * age + UNKNOWN_ACCEL_BOUND * age^2 / 2.
- the report describes the aircraft `valid_lag_s` before it is sent: the lag the autopilot
  subtracts from a report's arrival to place it in time (ArduPilot: GPSn_DELAY_MS, or 0.2 s
  for its MAVLink GPS driver when that is 0). Sending the position of the sending instant
  instead would put it that lag late, i.e. v * lag ahead of where the autopilot thinks it
  applies (4.4 m at 22 m/s and 0.2 s). The extrapolation interval valid - t_solution may then
  be negative (a solution newer than the valid time is moved back along its velocity); the
  accuracy grows with its magnitude. Staleness is judged on the solution's real age.
- DOPs are accuracy / NOMINAL_UERE_M; satellites follow the DOP (see constants).
- explicit no fix: accuracies NO_FIX_* and DOP NO_FIX_DOP, zero satellites.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from terrafix.autopilot import constants as C
from terrafix.autopilot.gps_time import gps_week_and_ms
from terrafix.geo import destination
from terrafix.measurements import NavSolution, SourceLabel


@dataclass(frozen=True, slots=True)
class GpsReport:
    """A receiver-style report of the navigation solution, valid at `utc_unix_ns`.

    v_ned_mps: (vn, ve, vd) m/s. Accuracies are 1-sigma, metres (m/s for speed).
    yaw_deg: heading to report, or None for "not provided".
    ignore_flags: GPS_INPUT_IGNORE_FLAGS of fields that carry no information.
    age_s: how old the underlying solution was when the report was made.
    """

    utc_unix_ns: int
    gps_week: int
    gps_week_ms: int
    fix_type: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    v_ned_mps: tuple[float, float, float]
    h_acc_m: float
    v_acc_m: float
    speed_acc_mps: float
    hdop: float
    vdop: float
    satellites: int
    yaw_deg: float | None
    ignore_flags: int
    label: str
    age_s: float

    @property
    def has_3d_fix(self) -> bool:
        return self.fix_type >= C.GPS_FIX_TYPE_3D


def horizontal_sigma_m(cov_p_ned_m2: np.ndarray) -> float:
    """1-sigma along the worst horizontal axis; inf when the covariance is not usable."""
    cov = np.asarray(cov_p_ned_m2, dtype=np.float64)
    if cov.shape != (3, 3) or not np.all(np.isfinite(cov[:2, :2])):
        return math.inf
    lam = np.linalg.eigvalsh(0.5 * (cov[:2, :2] + cov[:2, :2].T))
    if lam[0] < 0.0:
        return math.inf  # not positive semi-definite: the filter is lost, do not pretend
    return float(math.sqrt(lam[-1]))


def horizontal_radius95_m(cov_p_ned_m2: np.ndarray) -> float:
    """95% horizontal radius: the major semi-axis of the 95% error ellipse (conservative)."""
    return horizontal_sigma_m(cov_p_ned_m2) * math.sqrt(C.CHI2_2DOF_95)


def _max_sigma(cov: np.ndarray) -> float:
    c = np.asarray(cov, dtype=np.float64)
    if c.shape != (3, 3) or not np.all(np.isfinite(c)):
        return math.inf
    lam = np.linalg.eigvalsh(0.5 * (c + c.T))
    return math.inf if lam[0] < 0.0 else float(math.sqrt(lam[-1]))


def dop_from_accuracy(acc_m: float) -> float:
    """Synthetic DOP for a 1-sigma accuracy, clamped to what receivers report."""
    if not math.isfinite(acc_m):
        return C.NO_FIX_DOP
    return float(min(max(acc_m / C.NOMINAL_UERE_M, 0.5), C.NO_FIX_DOP))


def satellites_for_hdop(hdop: float) -> int:
    """Synthetic satellite count consistent with an HDOP (more satellites, lower HDOP)."""
    n = 4.0 + (C.SATS_DOP_SCALE / hdop) ** 2
    return int(min(max(round(n), C.SATS_MIN), C.SATS_MAX))


def no_fix_report(now_utc_ns: int, last: NavSolution | None, age_s: float, label: str) -> GpsReport:
    """The explicit no-fix: last known position (or 0, 0) with accuracies nobody can use."""
    week, week_ms = gps_week_and_ms(now_utc_ns)
    lat, lon, alt = (0.0, 0.0, 0.0)
    if last is not None and all(math.isfinite(x) for x in (last.lat_deg, last.lon_deg)):
        lat, lon = last.lat_deg, last.lon_deg
        alt = last.alt_m if math.isfinite(last.alt_m) else 0.0
    return GpsReport(
        utc_unix_ns=now_utc_ns,
        gps_week=week,
        gps_week_ms=week_ms,
        fix_type=C.GPS_FIX_TYPE_NO_FIX,
        lat_deg=lat,
        lon_deg=lon,
        alt_m=alt,
        v_ned_mps=(0.0, 0.0, 0.0),
        h_acc_m=C.NO_FIX_POSITION_ACCURACY_M,
        v_acc_m=C.NO_FIX_POSITION_ACCURACY_M,
        speed_acc_mps=C.NO_FIX_SPEED_ACCURACY_MPS,
        hdop=C.NO_FIX_DOP,
        vdop=C.NO_FIX_DOP,
        satellites=0,
        yaw_deg=None,
        ignore_flags=0,
        label=label,
        age_s=age_s,
    )


def gps_report_from_solution(
    solution: NavSolution | None,
    now_mono_ns: int,
    now_utc_ns: int,
    *,
    stale_after_s: float = C.DEFAULT_STALE_AFTER_S,
    send_yaw: bool = False,
    valid_lag_s: float = 0.0,
) -> GpsReport:
    """Map the latest solution (or None) to the report valid `valid_lag_s` before now (see the
    module docstring)."""
    if not (math.isfinite(valid_lag_s) and 0.0 <= valid_lag_s <= 1.0):
        raise ValueError(f"valid_lag_s={valid_lag_s!r}: expected 0..1 s")
    if solution is None:
        return no_fix_report(now_utc_ns, None, math.inf, SourceLabel.NO_FIX)
    age_s = max(0.0, (now_mono_ns - solution.t_ns) / 1e9)
    if solution.failsafe or solution.label == SourceLabel.NO_FIX or age_s > stale_after_s:
        return no_fix_report(now_utc_ns, solution, age_s, SourceLabel.NO_FIX)
    # signed: from the solution's time to the instant the report describes
    extrap_s = (now_mono_ns - solution.t_ns) / 1e9 - valid_lag_s
    span_s = abs(extrap_s)
    valid_utc_ns = now_utc_ns - round(valid_lag_s * 1e9)

    h_sigma = horizontal_sigma_m(solution.cov_p_ned_m2)
    v = np.asarray(solution.v_ned_mps, dtype=np.float64).reshape(-1)
    vel_ok = v.shape == (3,) and bool(np.all(np.isfinite(v)))
    cov_v = np.asarray(solution.cov_v_ned_m2s2, dtype=np.float64)
    speed_sigma = _max_sigma(cov_v) if vel_ok else math.inf
    growth_speed = speed_sigma if math.isfinite(speed_sigma) else 0.0
    accel_term = 0.5 * C.UNKNOWN_ACCEL_BOUND_MPS2 * span_s**2
    h_acc = h_sigma + growth_speed * span_s + accel_term
    if not vel_ok and span_s > 0.0:
        h_acc = math.inf  # cannot extrapolate without a velocity
    positions_ok = all(math.isfinite(x) for x in (solution.lat_deg, solution.lon_deg))
    if not positions_ok or not math.isfinite(h_acc) or h_acc > C.MAX_3D_FIX_ACCURACY_M:
        return no_fix_report(valid_utc_ns, solution, age_s, SourceLabel.NO_FIX)

    lat, lon = solution.lat_deg, solution.lon_deg
    if vel_ok and span_s > 0.0:
        dn, de = v[0] * extrap_s, v[1] * extrap_s
        dist = math.hypot(dn, de)
        if dist > 0.0:
            lat, lon = destination(lat, lon, math.degrees(math.atan2(de, dn)), dist)
            lat, lon = float(lat), float(lon)

    flags = 0
    cov_p = np.asarray(solution.cov_p_ned_m2, dtype=np.float64)
    alt = solution.alt_m
    v_var = float(cov_p[2, 2]) if cov_p.shape == (3, 3) else math.inf
    if math.isfinite(alt) and math.isfinite(v_var) and v_var >= 0.0:
        vd_sigma = math.sqrt(cov_v[2, 2]) if vel_ok and math.isfinite(cov_v[2, 2]) else 0.0
        v_acc = math.sqrt(v_var) + vd_sigma * span_s + accel_term
        if vel_ok:
            alt = alt - v[2] * extrap_s
    else:
        alt, v_acc = 0.0, C.NO_FIX_POSITION_ACCURACY_M
        flags |= C.GPS_INPUT_IGNORE_ALT | C.GPS_INPUT_IGNORE_VERTICAL_ACCURACY
        flags |= C.GPS_INPUT_IGNORE_VDOP
    if vel_ok and math.isfinite(speed_sigma):
        vel = (float(v[0]), float(v[1]), float(v[2]))
    else:
        vel, speed_sigma = (0.0, 0.0, 0.0), C.NO_FIX_SPEED_ACCURACY_MPS
        flags |= C.GPS_INPUT_IGNORE_VEL_HORIZ | C.GPS_INPUT_IGNORE_VEL_VERT
        flags |= C.GPS_INPUT_IGNORE_SPEED_ACCURACY

    hdop = dop_from_accuracy(h_acc)
    yaw_deg: float | None = None
    if send_yaw and math.isfinite(solution.yaw_rad):
        yaw_deg = math.degrees(solution.yaw_rad) % 360.0
        yaw_deg = 360.0 if yaw_deg == 0.0 else yaw_deg  # 0 means "not provided"
    week, week_ms = gps_week_and_ms(valid_utc_ns)
    return GpsReport(
        utc_unix_ns=valid_utc_ns,
        gps_week=week,
        gps_week_ms=week_ms,
        fix_type=C.GPS_FIX_TYPE_3D,
        lat_deg=lat,
        lon_deg=lon,
        alt_m=float(alt),
        v_ned_mps=vel,
        h_acc_m=float(h_acc),
        v_acc_m=float(v_acc),
        speed_acc_mps=float(speed_sigma),
        hdop=hdop,
        vdop=dop_from_accuracy(v_acc),
        satellites=satellites_for_hdop(hdop),
        yaw_deg=yaw_deg,
        ignore_flags=flags,
        label=solution.label,
        age_s=age_s,
    )
