"""Slippy-map (XYZ, Web-Mercator EPSG:3857) tile math.

Tiles are 256 px squares; zoom z has 2**z tiles per axis, x grows east, y grows south. At
z=19 a pixel is ~0.30 m at the equator times cos(latitude), the native resolution the
specification asks for. Conversions are closed-form and vectorised; "global pixel"
coordinates (pixels from the north-west corner of the world at zoom z) are what mosaics use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from terrafix.geo.errors import GeoError

TILE_SIZE_PX = 256
EARTH_RADIUS_M = 6378137.0  # Web-Mercator sphere radius (WGS84 semi-major axis)
ORIGIN_SHIFT_M = np.pi * EARTH_RADIUS_M  # half the world's width in EPSG:3857 metres
MAX_LAT_DEG = 85.05112877980659
MAX_ZOOM = 24


@dataclass(frozen=True, slots=True, order=True)
class TileId:
    """One XYZ tile: zoom, column (east) and row (south)."""

    z: int
    x: int
    y: int

    def __post_init__(self) -> None:
        check_zoom(self.z)
        n = 1 << self.z
        if not (0 <= self.x < n and 0 <= self.y < n):
            raise GeoError(f"tile {self.z}/{self.x}/{self.y}: x and y must be in [0, {n - 1}]")

    def path(self) -> str:
        """Relative path of the tile file, `{z}/{x}/{y}.jpg`."""
        return f"{self.z}/{self.x}/{self.y}.jpg"


def check_zoom(z: int) -> None:
    if not isinstance(z, (int, np.integer)) or not (0 <= z <= MAX_ZOOM):
        raise GeoError(f"zoom must be an integer in [0, {MAX_ZOOM}], got {z!r}")


def lonlat_to_mercator(lon_deg, lat_deg):
    """WGS84 degrees -> EPSG:3857 metres (x east, y north)."""
    lat = np.clip(np.asarray(lat_deg, dtype=np.float64), -MAX_LAT_DEG, MAX_LAT_DEG)
    x = np.radians(np.asarray(lon_deg, dtype=np.float64)) * EARTH_RADIUS_M
    y = np.log(np.tan(np.pi / 4.0 + np.radians(lat) / 2.0)) * EARTH_RADIUS_M
    return x, y


def mercator_to_lonlat(x_m, y_m):
    """EPSG:3857 metres -> WGS84 degrees (lon, lat)."""
    lon = np.degrees(np.asarray(x_m, dtype=np.float64) / EARTH_RADIUS_M)
    lat = np.degrees(2.0 * np.arctan(np.exp(np.asarray(y_m, dtype=np.float64) / EARTH_RADIUS_M))
                     - np.pi / 2.0)
    return lon, lat


def lonlat_to_global_px(lon_deg, lat_deg, z: int):
    """WGS84 degrees -> fractional global pixel (px_x east, px_y south) at zoom z."""
    check_zoom(z)
    x_m, y_m = lonlat_to_mercator(lon_deg, lat_deg)
    scale = TILE_SIZE_PX * (1 << z) / (2.0 * ORIGIN_SHIFT_M)
    return (x_m + ORIGIN_SHIFT_M) * scale, (ORIGIN_SHIFT_M - y_m) * scale


def global_px_to_lonlat(px_x, px_y, z: int):
    """Fractional global pixel at zoom z -> WGS84 degrees (lon, lat)."""
    check_zoom(z)
    scale = 2.0 * ORIGIN_SHIFT_M / (TILE_SIZE_PX * (1 << z))
    x_m = np.asarray(px_x, dtype=np.float64) * scale - ORIGIN_SHIFT_M
    y_m = ORIGIN_SHIFT_M - np.asarray(px_y, dtype=np.float64) * scale
    return mercator_to_lonlat(x_m, y_m)


def lonlat_to_tile(lon_deg: float, lat_deg: float, z: int) -> TileId:
    """The tile containing a WGS84 point at zoom z."""
    if not (-180.0 <= lon_deg <= 180.0) or not (-MAX_LAT_DEG <= lat_deg <= MAX_LAT_DEG):
        raise GeoError(
            f"point ({lat_deg}, {lon_deg}) outside the Web-Mercator domain "
            f"(|lat| <= {MAX_LAT_DEG:.4f}, |lon| <= 180)"
        )
    px, py = lonlat_to_global_px(lon_deg, lat_deg, z)
    n = 1 << z
    x = min(int(np.floor(px / TILE_SIZE_PX)), n - 1)
    y = min(int(np.floor(py / TILE_SIZE_PX)), n - 1)
    return TileId(z, x, y)


def tile_bounds(tile: TileId) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a tile in WGS84 degrees."""
    west, north = global_px_to_lonlat(tile.x * TILE_SIZE_PX, tile.y * TILE_SIZE_PX, tile.z)
    east, south = global_px_to_lonlat((tile.x + 1) * TILE_SIZE_PX, (tile.y + 1) * TILE_SIZE_PX,
                                      tile.z)
    return float(west), float(south), float(east), float(north)


def tile_mercator_bounds(tile: TileId) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a tile in EPSG:3857 metres."""
    size = 2.0 * ORIGIN_SHIFT_M / (1 << tile.z)
    xmin = -ORIGIN_SHIFT_M + tile.x * size
    ymax = ORIGIN_SHIFT_M - tile.y * size
    return xmin, ymax - size, xmin + size, ymax


def tiles_in_bounds(west: float, south: float, east: float, north: float,
                    z: int) -> list[TileId]:
    """Every tile at zoom z that intersects a WGS84 bounding box (west < east)."""
    if not (west < east and south < north):
        raise GeoError(f"bounds must satisfy west < east and south < north, got "
                       f"({west}, {south}, {east}, {north})")
    nw = lonlat_to_tile(west, min(north, MAX_LAT_DEG), z)
    se = lonlat_to_tile(east, max(south, -MAX_LAT_DEG), z)
    return [TileId(z, x, y) for x in range(nw.x, se.x + 1) for y in range(nw.y, se.y + 1)]


WGS84_E2 = 6.69437999014e-3  # first eccentricity squared


def ground_resolution_m_per_px(z: int, lat_deg: float) -> float:
    """Ground metres per pixel (east-west) at zoom z and latitude, on the WGS84 ellipsoid.

    EPSG:3857 puts ellipsoidal lat/lon on a sphere, so the true scale is the spherical
    cos(lat) factor times N(lat)/a (≈ +0.14 % at 40°): small, but 0.8 m across a 600 m crop.
    Exact georeferencing must use the global-pixel conversions, not this scale.
    """
    check_zoom(z)
    s2 = np.sin(np.radians(lat_deg)) ** 2
    n_over_a = 1.0 / np.sqrt(1.0 - WGS84_E2 * s2)
    return float(2.0 * ORIGIN_SHIFT_M * np.cos(np.radians(lat_deg)) * n_over_a
                 / (TILE_SIZE_PX * (1 << z)))


def zoom_for_resolution(m_per_px: float, lat_deg: float) -> int:
    """The zoom whose ground resolution is nearest (in log scale) to `m_per_px`."""
    if not m_per_px > 0:
        raise GeoError(f"resolution must be > 0 m/px, got {m_per_px}")
    z0 = np.log2(2.0 * ORIGIN_SHIFT_M * np.cos(np.radians(lat_deg)) / (TILE_SIZE_PX * m_per_px))
    return int(np.clip(round(float(z0)), 0, MAX_ZOOM))
