"""Typed samples that cross package boundaries on the hot path.

Sensors (real flight controller or simulator), vision and estimation all speak these frozen,
slotted dataclasses. Times are monotonic nanoseconds on the companion clock (`t_ns`); positions
inside are metres in the local NED frame of the flight (origin = take-off point); WGS84 degrees
appear only where a value is reported to the outside world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class ImuSample:
    """One IMU reading from the flight controller.

    accel_body_mps2: (3,) float64, specific force in body FRD, m/s² (reads -g on z when level).
    gyro_body_radps: (3,) float64, angular rate in body FRD, rad/s.
    """

    t_ns: int
    accel_body_mps2: np.ndarray
    gyro_body_radps: np.ndarray


@dataclass(frozen=True, slots=True)
class AttitudeSample:
    """The flight controller's own attitude estimate (ATTITUDE message), radians, ZYX Euler."""

    t_ns: int
    roll_rad: float
    pitch_rad: float
    yaw_rad: float


@dataclass(frozen=True, slots=True)
class BaroSample:
    """Barometric altitude (m above mean sea level, as the FC reports it)."""

    t_ns: int
    alt_m: float


@dataclass(frozen=True, slots=True)
class GnssSample:
    """One GNSS receiver solution as the FC reports it (GPS_RAW_INT / GPS2_RAW).

    v_ned_mps: (3,) float64, velocity in NED, m/s.
    fix_type follows MAVLink GPS_FIX_TYPE (0/1 no fix, 2 2D, 3 3D, ...).
    jamming / spoofing are the receiver's own interference flags.
    """

    t_ns: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    v_ned_mps: np.ndarray
    h_acc_m: float
    v_acc_m: float
    fix_type: int
    num_sats: int
    jamming: bool = False
    spoofing: bool = False


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """A navigation-camera frame at processing resolution.

    image: (H, W) uint8 grayscale. t_ns is the capture time (exposure centre), not arrival.
    """

    t_ns: int
    index: int
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True, slots=True)
class FrameCaptured:
    """A frame's capture time, announced as soon as it is known and before its image is
    decoded: the estimator keeps its position at that instant (a clone) so the frame, when
    it arrives later than IMU samples after it, is still fused at the right time."""

    t_ns: int
    index: int


@dataclass(frozen=True, slots=True)
class AbsoluteFix:
    """An accepted camera-to-map registration: where the aircraft and the frame centre are.

    cov_ne_m2: (2, 2) float64, 1-sigma covariance of the aircraft's horizontal position in
    north/east metres, derived from the fit geometry (never a constant).
    alt_m / alt_var_m2: aircraft altitude (m AMSL) from the fit and its variance (inf when the
    fit did not observe it).
    """

    t_ns: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    cov_ne_m2: np.ndarray
    alt_var_m2: float
    centre_lat_deg: float
    centre_lon_deg: float
    reprojection_rmse_px: float
    n_inliers: int
    inlier_ratio: float


@dataclass(frozen=True, slots=True)
class OdometryDelta:
    """Frame-to-frame visual odometry: horizontal displacement of the aircraft between two
    frame capture times.

    delta_ne_m: (2,) float64, north/east metres from t_prev_ns to t_ns.
    cov_ne_m2: (2, 2) float64, 1-sigma covariance of that displacement.
    tracking: False when tracking is lost; then delta and cov are meaningless and `reason`
    says why (e.g. "overlap 3% < 5%", "blur").
    tilt_error_ne_m: (2, 2) float64 or None, the delta's error for a one-sigma error of the
    absolute roll (column 0) and pitch (column 1) of the attitude both frames were projected
    with. That error is shared by consecutive pairs (it wanders over a minute), so it is not
    white: summed along a track it telescopes to the difference of the two ends' ground
    shifts, small on a straight leg, tens of metres across a steep turn flown high. Its
    marginal share is already in cov_ne_m2; consumers that sum deltas add the correlated
    part themselves (`estimation.gnss_reference`, `navigation.heading_calibration`).
    """

    t_prev_ns: int
    t_ns: int
    delta_ne_m: np.ndarray
    cov_ne_m2: np.ndarray
    tracking: bool
    n_tracks: int
    reason: str = ""
    tilt_error_ne_m: np.ndarray | None = None


class SourceLabel:
    """Source labels of every estimate (REQUIREMENTS N6), plus the explicit no-fix output."""

    SATELLITE_ANCHORED = "satellite_anchored"
    VISUAL_PROPAGATED = "visual_propagated"
    DEAD_RECKONED = "dead_reckoned"
    NO_FIX = "no_fix"


@dataclass(frozen=True, slots=True)
class NavSolution:
    """The real-time navigation output sent to the autopilot, ground station and recorder.

    cov_p_ned_m2: (3, 3) float64, 1-sigma position covariance in NED metres (the 95% bounds
    reported outside are derived from it, never floored or smoothed).
    cov_v_ned_m2s2: (3, 3) float64, velocity covariance.
    anchor_age_s: seconds since the last accepted satellite anchor (inf if none yet).
    label: one of SourceLabel; failsafe True means "explicit no-fix, do not use".
    heading_rad / heading_var_rad2: the navigator's own heading of the body x axis (rad from
    north towards east) and its variance (rad²): the odometry attitude's yaw (gyro + the
    images' rotation, navigation/attitude.py) turned by the heading calibration's offset
    against absolute fixes (navigation/heading_calibration.py). Not the FC's magnetometer
    yaw, and far better once calibrated (tenths of a degree); NaN when the navigator has
    none. For users of the heading (object localisation); yaw_rad stays the estimator's.
    """

    t_ns: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    v_ned_mps: np.ndarray
    cov_p_ned_m2: np.ndarray
    cov_v_ned_m2s2: np.ndarray
    yaw_rad: float
    label: str
    anchor_age_s: float
    gnss_trusted: bool
    failsafe: bool = False
    heading_rad: float = math.nan
    heading_var_rad2: float = math.nan
