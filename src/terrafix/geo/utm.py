"""UTM <-> WGS84 for georeferenced rasters (orthophotos arrive in UTM, e.g. EPSG:32613)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyproj

from terrafix.geo.errors import GeoError


def utm_epsg_for(lat_deg: float, lon_deg: float) -> int:
    """EPSG code of the UTM zone containing a point (326xx north, 327xx south)."""
    if not (-80.0 <= lat_deg <= 84.0):
        raise GeoError(f"UTM covers latitudes -80..84 degrees, got {lat_deg}")
    zone = int((lon_deg + 180.0) // 6.0) % 60 + 1
    return (32600 if lat_deg >= 0 else 32700) + zone


@lru_cache(maxsize=32)
def _transformer(src: str, dst: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def to_wgs84(x, y, crs: str | int):
    """Projected coordinates in `crs` -> (lat_deg, lon_deg)."""
    src = f"EPSG:{crs}" if isinstance(crs, int) else str(crs)
    lon, lat = _transformer(src, "EPSG:4326").transform(np.asarray(x, float), np.asarray(y, float))
    return lat, lon


def from_wgs84(lat_deg, lon_deg, crs: str | int):
    """(lat_deg, lon_deg) -> projected (x, y) in `crs`."""
    dst = f"EPSG:{crs}" if isinstance(crs, int) else str(crs)
    return _transformer("EPSG:4326", dst).transform(np.asarray(lon_deg, float),
                                                    np.asarray(lat_deg, float))
