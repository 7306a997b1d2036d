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

from terrafix.camera import CameraPose, Intrinsics, pixels_to_ground_ned
from terrafix.geo import LocalFrame
from terrafix.geo.utm import from_wgs84
from terrafix.vision.mapfeatures import MapRaster
from terrafix.vision.rasters import raster_from_geotiff, stretch_to_uint8


def dgsamples_dir() -> Path:
    spec = importlib.util.find_spec("dgsamples")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def pan_path(sensor: str) -> Path:
    return Path(glob.glob(str(dgsamples_dir() / f"{sensor}_longmont_1k" / "*_PAN" / "*.TIF"))[0])


@lru_cache(maxsize=4)
def map_raster(z: int, sensor: str = "wv2") -> MapRaster:
    """The PAN image of `sensor` warped to Web-Mercator global pixels at zoom z."""
    return raster_from_geotiff(pan_path(sensor), z)


@lru_cache(maxsize=2)
def _world(sensor: str) -> tuple[np.ndarray, rasterio.Affine, int]:
    with rasterio.open(pan_path(sensor)) as src:
        data = src.read(1)
        return stretch_to_uint8(data, data > 0), src.transform, src.crs.to_epsg()


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
