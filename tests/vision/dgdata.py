"""Test-side access to the dgsamples imagery: the WorldView-2 map reprojected to Web-Mercator
and a plain pinhole renderer of the WorldView-3 image, for unit tests that need real pixels
without the simulator or the tile cache. Nothing here is written to the repository.
"""

from __future__ import annotations

import glob
import importlib.util
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.warp import Resampling, reproject

from terrafix.camera import CameraPose, Intrinsics, pixels_to_ground_ned
from terrafix.geo import LocalFrame
from terrafix.geo.tiles import ORIGIN_SHIFT_M, TILE_SIZE_PX, lonlat_to_global_px
from terrafix.geo.utm import from_wgs84
from terrafix.vision.mapfeatures import MapRaster


def dgsamples_dir() -> Path:
    spec = importlib.util.find_spec("dgsamples")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def pan_path(sensor: str) -> Path:
    return Path(glob.glob(str(dgsamples_dir() / f"{sensor}_longmont_1k" / "*_PAN" / "*.TIF"))[0])


def to_uint8(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a[valid], (1, 99))
    return np.clip((a.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255).astype(
        np.uint8)


@lru_cache(maxsize=4)
def map_raster(z: int, sensor: str = "wv2") -> MapRaster:
    """The PAN image of `sensor` warped to Web-Mercator global pixels at zoom z."""
    with rasterio.open(pan_path(sensor)) as src:
        data = src.read(1)
        west, south, east, north = rasterio.warp.transform_bounds(src.crs, "EPSG:4326",
                                                                  *src.bounds)
        x0, y0 = lonlat_to_global_px(west, north, z)
        x1, y1 = lonlat_to_global_px(east, south, z)
        px_x0, px_y0 = int(np.floor(x0)), int(np.floor(y0))
        w, h = int(np.ceil(x1)) - px_x0, int(np.ceil(y1)) - px_y0
        res = 2.0 * ORIGIN_SHIFT_M / (TILE_SIZE_PX * (1 << z))
        transform = rasterio.transform.from_origin(-ORIGIN_SHIFT_M + px_x0 * res,
                                                   ORIGIN_SHIFT_M - px_y0 * res, res, res)
        out = np.zeros((h, w), np.float32)
        reproject(data.astype(np.float32), out, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs="EPSG:3857", resampling=Resampling.bilinear,
                  src_nodata=0, dst_nodata=0)
    valid = out > 0
    return MapRaster(to_uint8(out, valid), z, float(px_x0), float(px_y0), valid)


@lru_cache(maxsize=2)
def _world(sensor: str) -> tuple[np.ndarray, rasterio.Affine, int]:
    with rasterio.open(pan_path(sensor)) as src:
        data = src.read(1)
        return to_uint8(data, data > 0), src.transform, src.crs.to_epsg()


def scene_frame() -> LocalFrame:
    with rasterio.open(pan_path("wv3")) as src:
        b = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return LocalFrame((b[1] + b[3]) / 2.0, (b[0] + b[2]) / 2.0, 1500.0)


def render(pose: CameraPose, intrinsics: Intrinsics, frame: LocalFrame,
           sensor: str = "wv3") -> np.ndarray:
    """Pinhole view (H, W) uint8 of the flat ground (down = 0 in `frame`) textured with the
    PAN image of `sensor`."""
    img, transform, epsg = _world(sensor)
    gx, gy = np.meshgrid(np.linspace(0, intrinsics.width - 1, 6),
                         np.linspace(0, intrinsics.height - 1, 6))
    px = np.column_stack((gx.ravel(), gy.ravel()))
    ground, _ = pixels_to_ground_ned(px, pose, intrinsics, 0.0)
    lat, lon, _ = frame.ned_to_lla(ground)
    x, y = from_wgs84(lat, lon, epsg)
    col, row = ~transform * (np.asarray(x), np.asarray(y))
    src_px = np.column_stack((col, row)) - 0.5
    H, _ = cv2.findHomography(px, src_px)
    return cv2.warpPerspective(img, H, (intrinsics.width, intrinsics.height),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
