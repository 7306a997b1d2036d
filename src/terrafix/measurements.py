"""Typed samples that cross package boundaries on the hot path.

Sensors (real flight controller or simulator), vision and estimation all speak these frozen,
slotted dataclasses. Times are monotonic nanoseconds on the companion clock (`t_ns`); positions
inside are metres in the local NED frame of the flight (origin = take-off point); WGS84 degrees
appear only where a value is reported to the outside world.
"""

from __future__ import annotations

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
