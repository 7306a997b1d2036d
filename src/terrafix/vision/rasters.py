"""Sources of map rasters for provisioning: a tile-cache mosaic or a GeoTIFF/COG reprojected
to Web-Mercator global pixels (the tile grid), both as `MapRaster`.

Provisioning-time code (rasterio); nothing here runs in flight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from terrafix.geo.tiles import ORIGIN_SHIFT_M, TILE_SIZE_PX, lonlat_to_global_px
from terrafix.vision.errors import VisionError
from terrafix.vision.mapfeatures import MapRaster


def stretch_to_uint8(a: np.ndarray, valid: np.ndarray,
                     percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """Linear stretch of a (H, W) raster to uint8 between two percentiles of its valid pixels."""
    if not valid.any():
        raise VisionError("raster has no valid pixel")
    lo, hi = np.percentile(a[valid], percentiles)
    out = (a.astype(np.float32) - lo) * (255.0 / max(float(hi - lo), 1e-6))
    return np.clip(out, 0, 255).astype(np.uint8)


def raster_from_geotiff(path: str | Path, z: int, band: int = 1) -> MapRaster:
    """Reproject one band of a georeferenced raster onto the Web-Mercator pixel grid of zoom z
    (bilinear), stretched to uint8; nodata/zero pixels are invalid."""
    import rasterio
    from rasterio.warp import Resampling, reproject, transform_bounds

    with rasterio.open(path) as src:
        if src.crs is None:
            raise VisionError(f"{path} has no coordinate reference system")
        data = src.read(band).astype(np.float32)
        native = float(abs(src.res[0])) if src.crs.is_projected else None
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        x0, y0 = lonlat_to_global_px(west, north, z)
        x1, y1 = lonlat_to_global_px(east, south, z)
        px_x0, px_y0 = int(np.floor(x0)), int(np.floor(y0))
        w, h = int(np.ceil(x1)) - px_x0, int(np.ceil(y1)) - px_y0
        res = 2.0 * ORIGIN_SHIFT_M / (TILE_SIZE_PX * (1 << z))
        transform = rasterio.transform.from_origin(-ORIGIN_SHIFT_M + px_x0 * res,
                                                   ORIGIN_SHIFT_M - px_y0 * res, res, res)
        out = np.zeros((h, w), np.float32)
        nodata = src.nodata if src.nodata is not None else 0
        reproject(data, out, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs="EPSG:3857",
                  resampling=Resampling.bilinear, src_nodata=nodata, dst_nodata=0)
    valid = out > 0
    return MapRaster(stretch_to_uint8(out, valid), z, float(px_x0), float(px_y0), valid,
                     native)


def raster_from_mosaic(mosaic: Any) -> MapRaster:
    """A tile-cache mosaic (attributes image (H, W) uint8, z, px_x0, px_y0, and optionally a
    valid mask) as a MapRaster; without a mask, pixels darker than 3 grey levels (missing
    tiles, JPEG-smeared black borders) are invalid."""
    image = np.asarray(mosaic.image)
    if image.ndim == 3:
        image = image.mean(axis=2).astype(np.uint8)
    valid = getattr(mosaic, "valid", None)
    valid = np.asarray(valid, bool) if valid is not None else image > 2
    return MapRaster(image, int(mosaic.z), float(mosaic.px_x0), float(mosaic.px_y0), valid)


def rasters_from_store(store: Any, z: int, window_px: int = 4096) -> list[MapRaster]:
    """The cached area of a `terrafix.tiles.TileStore` at zoom z as mosaic windows of at most
    `window_px` pixels (bounded memory for a 400 km² cache), with the store's valid masks.

    When the store holds no tile at zoom z, the nearest coarser cached zoom is upsampled
    (bilinear) — a z19 level over 0.5 m imagery cached at z18 is exactly that. Windows do not
    overlap: keypoints within 8 px of a window edge are lost (a 16-px seam every `window_px`
    px, < 1% of the features). Windows without any cached tile are skipped.
    """
    import cv2
    from shapely.geometry import box

    from terrafix.geo.tiles import global_px_to_lonlat

    summary = store.summary()
    if summary.bounds is None:
        raise VisionError(f"tile cache {store.root} is empty")
    cached = sorted(zz for zz, n in summary.zooms.items() if n > 0)
    coarser = [zz for zz in cached if zz <= z]
    zs = coarser[-1] if coarser else cached[0]
    if zs > z:
        raise VisionError(f"tile cache holds zooms {cached}, none at or below {z}")
    up = 1 << (z - zs)
    # Only windows that hold cached tiles (the cached areas may be far apart: one bounding
    # box over all of them would be mostly empty).
    tiles_per_window = max(window_px // (up * TILE_SIZE_PX), 1)
    windows = sorted({(r.tile.x // tiles_per_window, r.tile.y // tiles_per_window)
                      for r in store.tiles_intersecting(box(*summary.bounds), zs)})
    step = tiles_per_window * TILE_SIZE_PX
    out = []
    for wx_i, wy_i in windows:
        wx, wy = wx_i * step, wy_i * step
        ex, ey = wx + step, wy + step
        w_lon, n_lat = global_px_to_lonlat(wx + 0.5, wy + 0.5, zs)
        e_lon, s_lat = global_px_to_lonlat(ex - 0.5, ey - 0.5, zs)
        mosaic = store.mosaic(float(w_lon), float(s_lat), float(e_lon), float(n_lat), zs)
        if not np.asarray(mosaic.valid).any():
            continue
        r = raster_from_mosaic(mosaic)
        if up > 1:
            h, w = r.image.shape
            image = cv2.resize(r.image, (w * up, h * up), interpolation=cv2.INTER_LINEAR)
            valid = cv2.resize(r.valid.astype(np.uint8), (w * up, h * up),
                               interpolation=cv2.INTER_NEAREST) > 0
            r = MapRaster(image, z, r.px_x0 * up, r.px_y0 * up, valid)
        out.append(r)
    return out
