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


def test_the_ellipse_follows_the_dem_slope(dem_path: Path) -> None:
    """With only the aircraft's height uncertain, the reported covariance is what moving the
    aircraft up and down does to the hit on the real DEM (6% slope rising east: looking east,
    up the slope, the hit moves less than on flat ground)."""
    tiny = dict(attitude_roll_pitch_sigma_deg=1e-6, attitude_yaw_sigma_deg=1e-6,
                gimbal_sigma_deg=1e-6, focal_relative_sigma=1e-6, pixel_sigma_px=1e-6,
                dem_sigma_m=1e-6, ground_alt_sigma_m=1e-6)
    cfg = TargetingConfig(dem_path=dem_path, gimbal_frame="earth", **tiny)
    dem = GeoTiffDem(dem_path, 1e-6)
    req = TargetRequest(960.0, 540.0, 90.0, -45.0, 2.0)  # east, up the slope, 45 deg

    def pose(down: float, var_down: float = 0.0) -> PoseAt:
        return PoseAt(0, np.array([-400.0, -600.0, down]), np.diag([1e-9, 1e-9, var_down]),
                      "satellite_anchored", False, np.array([0.0, 0.0, 0.5]))

    fix = locate_target(req, pose(-250.0, 100.0), cfg, FRAME, dem)
    d = 0.5
    up = locate_target(req, pose(-250.0 - d), cfg, FRAME, dem).p_ned_m[:2]
    down = locate_target(req, pose(-250.0 + d), cfg, FRAME, dem).p_ned_m[:2]
    dp = (up - down) / (2 * d)  # d hit / d (aircraft down), numerically on the DEM
    expected = 100.0 * np.outer(dp, dp)
    assert fix.cov_ne_m2[1, 1] == pytest.approx(expected[1, 1], rel=0.03)
    flat = TargetingConfig(gimbal_frame="earth", **tiny)
    on_flat = locate_target(req, pose(-250.0, 100.0), flat, FRAME, 1500.0)
    assert on_flat.cov_ne_m2[1, 1] > 1.08 * fix.cov_ne_m2[1, 1]  # the slope mattered
