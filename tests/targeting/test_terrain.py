"""Ground models: a real GeoTIFF DEM written with rasterio, the ray meeting it where a brute-force
march along the same ray says, and a refusal outside its coverage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from terrafix.geo.utm import from_wgs84
from terrafix.targeting import (
    PoseAt,
    RefusalReason,
    TargetingConfig,
    TargetRefusedError,
    TargetRequest,
    locate_target,
)
from terrafix.targeting.terrain import GeoTiffDem

from .helpers import FRAME

EPSG = 32613


def _terrain(e: np.ndarray, n: np.ndarray, e0: float, n0: float) -> np.ndarray:
    """A 6% slope rising to the east plus a 15 m hill, around the flight origin."""
    return 1500.0 + 0.06 * (e - e0) + 15.0 * np.exp(-((e - e0 - 150) ** 2 + (n - n0 - 100) ** 2)
                                                     / (2 * 120.0**2))


@pytest.fixture(scope="module")
def dem_path(tmp_path_factory) -> Path:
    e0, n0 = (float(v) for v in from_wgs84(FRAME.lat0_deg, FRAME.lon0_deg, EPSG))
    res, size = 5.0, 400  # 2 km x 2 km
    west, north = e0 - size * res / 2, n0 + size * res / 2
    cols = west + (np.arange(size) + 0.5) * res
    rows = north - (np.arange(size) + 0.5) * res
    E, N = np.meshgrid(cols, rows)
    z = _terrain(E, N, e0, n0).astype(np.float32)
    path = tmp_path_factory.mktemp("dem") / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="float32", crs=f"EPSG:{EPSG}",
                       transform=from_origin(west, north, res, res)) as ds:
        ds.write(z, 1)
    return path


def _pose(north: float = 0.0, east: float = 0.0) -> PoseAt:
    return PoseAt(0, np.array([north, east, -250.0]), np.diag([4.0, 4.0, 9.0]),
                  "satellite_anchored", False, np.array([0.0, 0.0, 0.5]))


def test_dem_reader_interpolates_the_raster(dem_path: Path) -> None:
    dem = GeoTiffDem(dem_path, 3.0)
    e0, n0 = (float(v) for v in from_wgs84(FRAME.lat0_deg, FRAME.lon0_deg, EPSG))
    for dn, de in ((0.0, 0.0), (120.0, -300.0), (-410.0, 260.0)):
        lat, lon, _ = FRAME.ned_to_lla(np.array([dn, de, 0.0]))
        e, n = (float(v) for v in from_wgs84(float(lat), float(lon), EPSG))
        assert dem.height_at(float(lat), float(lon)) == pytest.approx(
            float(_terrain(np.array(e), np.array(n), e0, n0)), abs=0.05)


def test_ray_meets_the_dem_where_a_march_along_it_does(dem_path: Path) -> None:
    cfg = TargetingConfig(dem_path=dem_path, dem_sigma_m=3.0, gimbal_frame="earth")
    dem = GeoTiffDem(dem_path, 3.0)
    for pan, tilt in ((90.0, -40.0), (200.0, -55.0), (30.0, -70.0)):
        req = TargetRequest(960.0, 540.0, pan, tilt, 2.0)
        fix = locate_target(req, _pose(), cfg, FRAME, dem)
        lat, lon = fix.lat_deg, fix.lon_deg
        assert fix.alt_m == pytest.approx(dem.height_at(lat, lon), abs=0.1)
        assert fix.v_acc_m == 3.0
        # brute force: march along the optical axis (earth frame) until below the terrain
        d = np.array([math.cos(math.radians(tilt)) * math.cos(math.radians(pan)),
                      math.cos(math.radians(tilt)) * math.sin(math.radians(pan)),
                      -math.sin(math.radians(tilt))])
        c = np.array([0.0, 0.0, -250.0]) + np.array([0.0, 0.0, 0.1])  # lever arm (level)
        for s in np.arange(0.0, 3000.0, 0.1):
            p = c + s * d
            la, lo, _ = FRAME.ned_to_lla(p)
            if FRAME.alt0_m - p[2] <= dem.height_at(float(la), float(lo)):
                break
        assert np.hypot(*(fix.p_ned_m[:2] - p[:2])) < 0.5
        flat = locate_target(req, _pose(), TargetingConfig(gimbal_frame="earth"), FRAME, 1500.0)
        assert np.hypot(*(flat.p_ned_m[:2] - fix.p_ned_m[:2])) > 2.0  # the DEM mattered


def test_a_ray_leaving_the_dem_is_refused(dem_path: Path) -> None:
    cfg = TargetingConfig(dem_path=dem_path, gimbal_frame="earth", max_off_vertical_deg=89.0)
    dem = GeoTiffDem(dem_path, 5.0)
    with pytest.raises(TargetRefusedError) as exc:
        locate_target(TargetRequest(960.0, 540.0, 0.0, -8.0, 2.0), _pose(), cfg, FRAME, dem)
    assert exc.value.reason == RefusalReason.NO_TERRAIN_HEIGHT
