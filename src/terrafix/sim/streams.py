"""Column-oriented sensor and truth streams of a simulated flight.

A flight is long (8 h at 200 Hz is 5.8 M IMU rows), so streams are stored as numpy columns, not
lists of samples; the per-sample types of `terrafix.measurements` are produced on iteration
(`FlightDataset.iter_*`). The same classes are filled by the generator and by the loader, so the
writer and the reader cannot disagree about a column.

All times `t_ns` are int64 nanoseconds from flight start; arrays are read-only once built.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from terrafix.sim.errors import SimError


def _freeze(obj: object) -> None:
    """Check that all array fields share the length of `t_ns` and make them read-only."""
    n = len(obj.t_ns)  # type: ignore[attr-defined]
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            if len(value) != n:
                raise SimError(f"{type(obj).__name__}.{f.name} has {len(value)} rows, "
                               f"expected {n} like t_ns")
            value.flags.writeable = False
    t = obj.t_ns  # type: ignore[attr-defined]
    if t.dtype != np.int64:
        raise SimError(f"{type(obj).__name__}.t_ns must be int64 ns, got {t.dtype}")
    if n > 1 and np.any(np.diff(t) <= 0):
        raise SimError(f"{type(obj).__name__}.t_ns must be strictly increasing")


@dataclass(frozen=True, slots=True)
class TruthStream:
    """Ground truth of the aircraft (body) at the IMU rate.

    t_ns: (N,) int64. lat_deg, lon_deg, alt_m: (N,) WGS84, alt above the ellipsoid (= AMSL in
    this simulator, which has no geoid). p_ned_m: (N, 3) position in the flight's NED frame.
    v_ned_mps: (N, 3). q_body_to_ned: (N, 4) Hamilton [w, x, y, z]. euler_rad: (N, 3) roll,
    pitch, yaw (ZYX). omega_body_radps: (N, 3) angular rate in body FRD. f_body_mps2: (N, 3)
    specific force in body FRD (what a perfect accelerometer reads; -g on z when level).
    """

    t_ns: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    alt_m: np.ndarray
    p_ned_m: np.ndarray
    v_ned_mps: np.ndarray
    q_body_to_ned: np.ndarray
    euler_rad: np.ndarray
    omega_body_radps: np.ndarray
    f_body_mps2: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self)


@dataclass(frozen=True, slots=True)
class ImuStream:
    """Measured IMU. accel_body_mps2, gyro_body_radps: (N, 3) body FRD."""

    t_ns: np.ndarray
    accel_body_mps2: np.ndarray
    gyro_body_radps: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self)


@dataclass(frozen=True, slots=True)
class AttitudeStream:
    """The flight controller's attitude estimate. euler_rad: (N, 3) roll, pitch, yaw."""

    t_ns: np.ndarray
    euler_rad: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self)


@dataclass(frozen=True, slots=True)
class BaroStream:
    """Barometric altitude. alt_m: (N,) metres AMSL."""

    t_ns: np.ndarray
    alt_m: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self)


ATTACK_LABELS = ("none", "jamming", "jump", "pulloff", "meaconing")


@dataclass(frozen=True, slots=True)
class GnssStream:
    """GNSS receiver solutions as the FC reports them, plus the ground-truth attack label.

    lat_deg, lon_deg, alt_m: (N,) (NaN when there is no fix). v_ned_mps: (N, 3).
    h_acc_m, v_acc_m: (N,) the receiver's own 1-sigma-ish accuracy estimates.
    fix_type: (N,) int64 MAVLink GPS_FIX_TYPE. num_sats: (N,) int64.
    jamming, spoofing: (N,) bool receiver flags. attack: (N,) str, one of ATTACK_LABELS
    (truth, never visible to the onboard program).
    """

    t_ns: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    alt_m: np.ndarray
    v_ned_mps: np.ndarray
    h_acc_m: np.ndarray
    v_acc_m: np.ndarray
    fix_type: np.ndarray
    num_sats: np.ndarray
    jamming: np.ndarray
    spoofing: np.ndarray
    attack: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self)
        bad = set(np.unique(self.attack).tolist()) - set(ATTACK_LABELS)
        if bad:
            raise SimError(f"unknown GNSS attack labels {sorted(bad)}, expected {ATTACK_LABELS}")


@dataclass(frozen=True, slots=True)
class FrameIndex:
    """Camera frames on disk. index: (N,) int64, t_ns capture time, file: (N,) str relative to
    the dataset folder."""

    t_ns: np.ndarray
    index: np.ndarray
    file: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self)
