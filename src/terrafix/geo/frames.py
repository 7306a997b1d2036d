"""WGS84 geodetic <-> ECEF <-> local tangent frames (NED and ENU).

Geodetic/ECEF conversion goes through pyproj (EPSG:4979 <-> EPSG:4978) so that the ellipsoid
maths is not re-implemented here; the tangent-plane rotation is three lines of linear algebra
and is done in numpy so it vectorises over many points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyproj

from terrafix.geo.errors import GeoError


@lru_cache(maxsize=1)
def _lla_to_ecef_transformer() -> pyproj.Transformer:
    return pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)


def _check_lat(lat_deg: np.ndarray) -> None:
    if np.any(np.abs(lat_deg) > 90.0) or not np.all(np.isfinite(lat_deg)):
        raise GeoError(f"latitude must be finite and within [-90, 90] degrees, got {lat_deg}")


def lla_to_ecef(lat_deg: np.ndarray | float, lon_deg: np.ndarray | float,
                alt_m: np.ndarray | float) -> np.ndarray:
    """Geodetic WGS84 (degrees, metres above the ellipsoid) -> ECEF metres, shape (..., 3)."""
    lat = np.asarray(lat_deg, dtype=np.float64)
    _check_lat(lat)
    x, y, z = _lla_to_ecef_transformer().transform(
        np.asarray(lon_deg, dtype=np.float64), lat, np.asarray(alt_m, dtype=np.float64)
    )
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def ecef_to_lla(p_ecef_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECEF metres (..., 3) -> (lat_deg, lon_deg, alt_m) each of shape (...)."""
    p = np.asarray(p_ecef_m, dtype=np.float64)
    if p.shape[-1] != 3:
        raise GeoError(f"ECEF points must have a last axis of 3, got shape {p.shape}")
    lon, lat, alt = _lla_to_ecef_transformer().transform(
        p[..., 0], p[..., 1], p[..., 2], direction=pyproj.enums.TransformDirection.INVERSE
    )
    return np.asarray(lat), np.asarray(lon), np.asarray(alt)


def R_ecef_to_ned(lat_deg: float, lon_deg: float) -> np.ndarray:
    """Rotation (3, 3) taking an ECEF vector into the NED frame at (lat, lon)."""
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    sl, cl, so, co = np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)
    return np.array(
        [
            [-sl * co, -sl * so, cl],
            [-so, co, 0.0],
            [-cl * co, -cl * so, -sl],
        ]
    )


_NED_TO_ENU = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """A local tangent frame anchored at a WGS84 origin (usually the take-off point).

    NED is the navigation frame of terrafix; ENU is offered for tools that want it.
    Over the few tens of kilometres of a mission the tangent plane is exact (it is a rigid
    rotation of ECEF, not a flat-earth approximation), so round trips are at the micrometre level.
    """

    lat0_deg: float
    lon0_deg: float
    alt0_m: float = 0.0
    _p0_ecef: np.ndarray = field(init=False, repr=False, compare=False)
    _R: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (-90.0 <= self.lat0_deg <= 90.0) or not (-180.0 <= self.lon0_deg <= 180.0):
            raise GeoError(
                f"origin must be lat in [-90, 90], lon in [-180, 180]; "
                f"got ({self.lat0_deg}, {self.lon0_deg})"
            )
        object.__setattr__(self, "_p0_ecef", lla_to_ecef(self.lat0_deg, self.lon0_deg, self.alt0_m))
        object.__setattr__(self, "_R", R_ecef_to_ned(self.lat0_deg, self.lon0_deg))

    def lla_to_ned(self, lat_deg: np.ndarray | float, lon_deg: np.ndarray | float,
                   alt_m: np.ndarray | float) -> np.ndarray:
        """WGS84 -> NED metres relative to the origin, shape (..., 3)."""
        d = lla_to_ecef(lat_deg, lon_deg, alt_m) - self._p0_ecef
        return d @ self._R.T

    def ned_to_lla(self, p_ned_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """NED metres (..., 3) -> (lat_deg, lon_deg, alt_m)."""
        p = np.asarray(p_ned_m, dtype=np.float64)
        if p.shape[-1] != 3:
            raise GeoError(f"NED points must have a last axis of 3, got shape {p.shape}")
        return ecef_to_lla(p @ self._R + self._p0_ecef)

    def lla_to_enu(self, lat_deg: np.ndarray | float, lon_deg: np.ndarray | float,
                   alt_m: np.ndarray | float) -> np.ndarray:
        """WGS84 -> ENU metres relative to the origin, shape (..., 3)."""
        return self.lla_to_ned(lat_deg, lon_deg, alt_m) @ _NED_TO_ENU.T

    def enu_to_lla(self, p_enu_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ENU metres (..., 3) -> (lat_deg, lon_deg, alt_m)."""
        return self.ned_to_lla(np.asarray(p_enu_m, dtype=np.float64) @ _NED_TO_ENU.T)

    def R_ecef_to_ned(self) -> np.ndarray:
        """Rotation (3, 3) from ECEF vectors to this frame's NED axes."""
        return self._R.copy()
