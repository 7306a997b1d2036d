"""GeoTIFF / COG -> Web-Mercator JPEG tiles at the zoom nearest the native resolution.

Radiometry: satellite PAN rasters are 11-16-bit; tiles are 8-bit. One linear stretch is
computed per raster (not per tile, which would make neighbouring tiles disagree in brightness
and break matching across tile seams): the 2nd and 98th percentiles of the valid pixels of a
decimated read (at most ~1 Mpx) map to 1 and 255, values outside are clipped (the cumulative
cut GIS viewers apply by default). 0 is kept for
no-data (outside the raster, or the raster's nodata value; when a raster declares none, 0 is
taken as fill, which is what DigitalGlobe products use), so edge tiles show black beyond the
image footprint. Cutting the darkest/brightest 2 % matters on PAN scenes: on the WorldView-2
Longmont scene the 99.5th percentile (1670) is 5x the median (347) because of a few bright
roofs, and stretching to it would crush the fields and roads into the bottom 30 grey levels.

Geometry: the raster is resampled (bilinear) onto the Web-Mercator tile grid in blocks of
8x8 tiles (see `_BlockWarper` for how); every tile with at least one valid pixel is encoded as
grayscale JPEG and stored in batches of a block. Zoom: the one whose ground
resolution is nearest the raster's native pixel size at its centre latitude (0.5 m at 40° N ->
z18), unless zooms are given. Capture date: from the DigitalGlobe .IMD/.XML beside the file
(first line time), else it must be given. Resumable: tiles already in the store are skipped
before any pixel is read, so a rerun after an interruption only does what is left.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import rasterio
from pyproj import Transformer
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from terrafix.geo.tiles import (
    MAX_ZOOM,
    ORIGIN_SHIFT_M,
    TILE_SIZE_PX,
    TileId,
    ground_resolution_m_per_px,
    mercator_to_lonlat,
    zoom_for_resolution,
)
from terrafix.tiles.errors import ProvisioningError
from terrafix.tiles.jpeg import encode_gray
from terrafix.tiles.records import NewTile, VotingStatus
from terrafix.tiles.store import DECODE_WORKERS, PreparedBatch, TileStore, decode_pool

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (tiles done, tiles total)

_IMD_TIME = re.compile(r"(?:firstLineTime|earliestAcqTime)\s*=\s*(\d{4}-\d{2}-\d{2})T")
_XML_TIME = re.compile(r"<(?:FIRSTLINETIME|EARLIESTACQTIME)>(\d{4}-\d{2}-\d{2})T")


@dataclass(frozen=True, slots=True)
class Stretch:
    """Linear map of raster values: `low` -> 1, `high` -> 255, clipped; no-data -> 0."""

    low: float
    high: float
    nodata: float | None

    def apply(self, values: np.ndarray) -> np.ndarray:
        """(H, W) raster values -> (H, W) uint8 (via a lookup table for integer rasters)."""
        if values.dtype in (np.uint8, np.uint16):
            lut = self.lut(np.iinfo(values.dtype).max + 1)
            return lut[values]
        scaled = 1.0 + (values.astype(np.float32) - self.low) * (254.0 / (self.high - self.low))
        out = np.clip(np.rint(scaled), 1, 255).astype(np.uint8)
        out[~self.valid_mask(values)] = 0
        return out

    def lut(self, size: int) -> np.ndarray:
        v = np.arange(size, dtype=np.float64)
        out = np.clip(np.rint(1.0 + (v - self.low) * (254.0 / (self.high - self.low))), 1, 255)
        out = out.astype(np.uint8)
        fill = 0 if self.nodata is None else int(self.nodata)
        if 0 <= fill < size:
            out[fill] = 0
        return out

    def valid_mask(self, values: np.ndarray) -> np.ndarray:
        fill = 0 if self.nodata is None else self.nodata
        return (values != fill) & np.isfinite(values)


def compute_stretch(src: rasterio.io.DatasetReader, low_pct: float = 2.0,
                    high_pct: float = 98.0, max_samples: int = 1_000_000) -> Stretch:
    """Percentile stretch of band 1 from a decimated read (see module docstring)."""
    scale = max(1.0, math.sqrt(src.width * src.height / max_samples))
    shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
    sample = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    nodata = src.nodata
    fill = 0 if nodata is None else nodata
    valid = sample[(sample != fill) & np.isfinite(sample)]
    if valid.size == 0:
        raise ProvisioningError(f"{src.name}: no valid pixels (all equal to the fill value "
                                f"{fill})")
    low, high = np.percentile(valid.astype(np.float64), [low_pct, high_pct])
    if not high > low:
        high = low + 1.0
    return Stretch(float(low), float(high), nodata)


def capture_date_from_metadata(path: str | Path) -> date | None:
    """Acquisition date from a DigitalGlobe .IMD or .XML beside the raster (same stem)."""
    p = Path(path)
    for suffix, pattern in ((".IMD", _IMD_TIME), (".imd", _IMD_TIME), (".XML", _XML_TIME),
                            (".xml", _XML_TIME)):
        meta = p.with_suffix(suffix)
        if meta.is_file():
            m = pattern.search(meta.read_text("utf-8", errors="replace"))
            if m:
                return date.fromisoformat(m.group(1))
    return None


def native_zoom(src: rasterio.io.DatasetReader) -> int:
    """Zoom whose resolution is nearest the raster's pixel size at its centre latitude."""
    _, south, _, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return zoom_for_resolution(native_resolution_m(src), (south + north) / 2.0)


@dataclass(frozen=True, slots=True)
class GeoTiffReport:
    """What a GeoTIFF import did, per run."""

    source: str
    capture_date: date
    zooms: tuple[int, ...]
    stretch: Stretch
    tiles_written: int
    tiles_skipped_existing: int
    tiles_empty: int
    tiles_total: int


def provision_geotiff(store: TileStore, path: str | Path, *, zooms: Sequence[int] | None = None,
                      capture_date: date | None = None, source: str | None = None,
                      replace: bool = False, quality: int = 90, block_tiles: int = 8,
                      on_progress: Progress | None = None) -> GeoTiffReport:
    """Cut a georeferenced raster into the store's tiles (see module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise ProvisioningError(f"no raster at {p}")
    cap = capture_date or capture_date_from_metadata(p)
    if cap is None:
        raise ProvisioningError(f"{p}: no capture date in .IMD/.XML metadata beside it; give one "
                                f"explicitly (--capture-date YYYY-MM-DD)")
    src_name = source or f"geotiff:{p.name}"
    try:
        src = rasterio.open(p)
    except (rasterio.errors.RasterioIOError, UnicodeDecodeError) as exc:
        raise ProvisioningError(f"cannot open raster {p}: {exc}") from exc
    try:
        with src:
            if src.crs is None:
                raise ProvisioningError(f"{p}: raster has no coordinate reference system")
            _check_georeferencing(src, p)
            zoom_list = tuple(zooms) if zooms else (native_zoom(src),)
            plans = [_checked_plan(src, p, z) for z in zoom_list]  # before any pixel is read
            stretch = compute_stretch(src)
            total = sum(pl.n_tiles for pl in plans)
            counts = {"written": 0, "skipped": 0, "empty": 0}
            done = 0
            for plan in plans:
                # closing(): an exception here (or in on_progress) stops the workers' blocks now
                with contextlib.closing(_provision_zoom(store, src, plan, stretch, cap, src_name,
                                                        replace, quality, block_tiles,
                                                        counts)) as blocks:
                    for n in blocks:
                        done += n
                        if on_progress:
                            on_progress(done, total)
    except (rasterio.errors.RasterioError, CPLE_BaseError, UnicodeDecodeError) as exc:
        # a file that opens but whose blocks or georeferencing do not read (corrupt strips,
        # bad tags) is the file's fault: say which file, never a bare GDAL error
        raise ProvisioningError(f"{p}: cannot read the raster: {exc}") from exc
    log.info("provisioned %s: %d tiles written, %d already present, %d empty (zooms %s)",
             p.name, counts["written"], counts["skipped"], counts["empty"], zoom_list)
    return GeoTiffReport(src_name, cap, zoom_list, stretch, counts["written"], counts["skipped"],
                         counts["empty"], total)


def _check_georeferencing(src: rasterio.io.DatasetReader, p: Path) -> None:
    """Refuse a geotransform that cannot be warped: zero, infinite or NaN pixel size, a
    non-invertible (degenerate) matrix, or bounds that are not finite (found by fuzzing:
    these surfaced as ZeroDivisionError, OverflowError and TransformNotInvertibleError)."""
    t = src.transform
    coeffs = (t.a, t.b, t.c, t.d, t.e, t.f)
    bounds = tuple(src.bounds)
    if (not all(math.isfinite(v) for v in (*coeffs, *bounds)) or not math.isfinite(t.determinant)
            or abs(t.determinant) < 1e-300 or src.width < 1 or src.height < 1):
        raise ProvisioningError(f"{p}: unusable georeferencing: geotransform {coeffs}, bounds "
                                f"{bounds}, size {src.width}x{src.height} (expected a finite, "
                                "invertible pixel-to-map transform)")
    try:
        res_m = native_resolution_m(src)
    except rasterio.errors.CRSError as exc:  # an engineering/local CRS has no metre factor
        raise ProvisioningError(f"{p}: CRS {src.crs} is neither geographic nor projected in "
                                f"linear units: {exc}") from exc
    mercator = transform_bounds(src.crs, "EPSG:3857", *src.bounds, densify_pts=21)
    if not (math.isfinite(res_m) and res_m > 0) or not all(math.isfinite(v) for v in mercator):
        raise ProvisioningError(f"{p}: unusable georeferencing: pixel size {res_m} m, Web "
                                f"Mercator bounds {tuple(mercator)} (expected a positive pixel "
                                "size and an area inside the Web Mercator world)")


MAX_TILES_PER_IMPORT = 1 << 24
"""16.7 M tiles (hundreds of GB of JPEG) per zoom and raster: more is a mistake in the
request or in the file's header, refused before any work rather than run for days."""


def pixel_size_m(src: rasterio.io.DatasetReader) -> tuple[float, float]:
    """(column, row) size of one pixel on the ground in metres (at the centre latitude for a
    geographic raster). Both axes: `native_resolution_m` is the finer one only."""
    t = src.transform  # hypot, not src.res: that overflows to inf on a garbled 1e200
    res_x, res_y = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    if src.crs.is_geographic:
        _, south, _, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        m_per_deg = math.radians(1.0) * 6378137.0
        return (res_x * m_per_deg * math.cos(math.radians((south + north) / 2.0)),
                res_y * m_per_deg)
    factor = src.crs.linear_units_factor[1]
    return res_x * factor, res_y * factor


def _checked_plan(src: rasterio.io.DatasetReader, p: Path, z: int) -> _ZoomPlan:
    """The tile plan of zoom z, refused when it cannot be a real cut of this raster.

    Found by fuzzing: a GeoTIFF whose pixel height was garbled to 1.6e116 m (24 px wide, 4 m
    wide pixels) passed the georeferencing check (PROJ clamps such bounds to finite Web
    Mercator ones) and planned 10 billion z17 tiles, which ran for ever. A pixel coarser than
    a tile carries no detail at that zoom, and a plan far larger than the raster's own
    footprint (its pixels times their size, any rotation) means the georeferencing does not
    fit the projection; either is refused here, before any pixel is read, with the values."""
    if not (isinstance(z, int) and 0 <= z <= MAX_ZOOM):
        raise ProvisioningError(f"{p}: zoom {z!r} is not an integer in 0..{MAX_ZOOM}")
    plan = _plan(src, z)
    if plan.nx <= 0 or plan.ny <= 0:
        raise ProvisioningError(f"{p}: bounds {tuple(src.bounds)} ({src.crs}) lie outside the "
                                "Web Mercator world (expected an area within ±85.05° latitude)")
    _, south, _, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    lat = min(max((south + north) / 2.0, -85.0), 85.0)
    tile_m = ground_resolution_m_per_px(z, lat) * TILE_SIZE_PX
    px_x, px_y = pixel_size_m(src)
    if not (math.isfinite(px_x) and math.isfinite(px_y)) or max(px_x, px_y) > tile_m:
        raise ProvisioningError(
            f"{p}: pixels of {px_x:.4g} x {px_y:.4g} m are coarser than a z{z} tile "
            f"({tile_m:.0f} m at {lat:.1f}° latitude): expected pixels finer than the tiles "
            "(check the file's geotransform, or cut it at a coarser zoom)")
    diagonal_tiles = math.hypot(src.width * px_x, src.height * px_y) / tile_m
    footprint_tiles = 4.0 * (diagonal_tiles + 2.0) ** 2  # x4: the Mercator scale varies
    if plan.n_tiles > footprint_tiles:
        raise ProvisioningError(
            f"{p}: its bounds map onto {plan.n_tiles} z{z} tiles ({plan.nx} x {plan.ny}), but "
            f"{src.width} x {src.height} pixels of {px_x:.4g} x {px_y:.4g} m cover at most "
            f"about {footprint_tiles:.0f}: the georeferencing does not fit the projection "
            f"({src.crs})")
    if plan.n_tiles > MAX_TILES_PER_IMPORT:
        raise ProvisioningError(
            f"{p}: {plan.n_tiles} z{z} tiles ({plan.nx} x {plan.ny}) in one import, at most "
            f"{MAX_TILES_PER_IMPORT}: cut the raster into parts or choose a coarser zoom")
    return plan


@dataclass(frozen=True, slots=True)
class _ZoomPlan:
    z: int
    x0: int
    y0: int
    nx: int
    ny: int

    @property
    def n_tiles(self) -> int:
        return self.nx * self.ny


def _plan(src: rasterio.io.DatasetReader, z: int) -> _ZoomPlan:
    xmin, ymin, xmax, ymax = transform_bounds(src.crs, "EPSG:3857", *src.bounds, densify_pts=21)
    size = 2.0 * ORIGIN_SHIFT_M / (1 << z)
    x0 = math.floor((xmin + ORIGIN_SHIFT_M) / size)
    x1 = math.ceil((xmax + ORIGIN_SHIFT_M) / size)
    y0 = math.floor((ORIGIN_SHIFT_M - ymax) / size)
    y1 = math.ceil((ORIGIN_SHIFT_M - ymin) / size)
    n = 1 << z
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, n), min(y1, n)
    return _ZoomPlan(z, x0, y0, x1 - x0, y1 - y0)


def _provision_zoom(store: TileStore, src: rasterio.io.DatasetReader, plan: _ZoomPlan,
                    stretch: Stretch, cap: date, src_name: str, replace: bool, quality: int,
                    block_tiles: int, counts: dict[str, int]) -> Iterator[int]:
    """Yields the number of tiles handled after each block.

    Blocks are cut (warp, stretch, JPEG encode: OpenCV/numpy code that releases the GIL) and
    staged (`TileStore.prepare_batch`: hashes, staging files) on the shared worker threads, a
    few blocks ahead, while this thread commits the finished ones in block order; so the
    cutting and file creation of the next blocks overlap the database work of this one.
    """
    z = plan.z
    warper = _BlockWarper(src, stretch, z)
    pool = decode_pool()
    ahead = DECODE_WORKERS + 1  # blocks in flight: every worker busy, one queued

    def cut(todo: list[TileId], bx: int, by: int, bw: int, bh: int) -> tuple[PreparedBatch, int]:
        img = warper.block(plan.x0 + bx, plan.y0 + by, bw, bh)
        batch: list[NewTile] = []
        empty = 0
        for t in todo:
            c0 = (t.x - plan.x0 - bx) * TILE_SIZE_PX
            r0 = (t.y - plan.y0 - by) * TILE_SIZE_PX
            tile_img = img[r0:r0 + TILE_SIZE_PX, c0:c0 + TILE_SIZE_PX]
            if not tile_img.any():
                empty += 1
                continue
            batch.append(NewTile(t, encode_gray(np.ascontiguousarray(tile_img), quality), cap,
                                 src_name, VotingStatus.TRUSTED))
        # the bytes come from encode_gray just above: no decode re-check
        return store.prepare_batch(batch, decode_check=False), empty

    Job = Future[tuple[PreparedBatch, int]]
    pending: deque[tuple[int, Job | None]] = deque()

    def commit(n_tiles: int, job: Job | None) -> int:
        if job is not None:
            prepared, empty = job.result()
            counts["empty"] += empty
            report = store.commit_batch(prepared, on_conflict="replace" if replace else "skip")
            counts["written"] += len(report.inserted) + len(report.replaced)
            counts["skipped"] += len(report.unchanged)
        return n_tiles

    try:
        for by in range(0, plan.ny, block_tiles):
            for bx in range(0, plan.nx, block_tiles):
                bw, bh = min(block_tiles, plan.nx - bx), min(block_tiles, plan.ny - by)
                tiles = [TileId(z, plan.x0 + bx + i, plan.y0 + by + j)
                         for j in range(bh) for i in range(bw)]
                present = set() if replace else _present(store, tiles)
                counts["skipped"] += len(present)
                todo = [t for t in tiles if t not in present]
                pending.append((len(tiles), pool.submit(cut, todo, bx, by, bw, bh)
                                if todo else None))
                if len(pending) > ahead:
                    yield commit(*pending.popleft())
        while pending:
            yield commit(*pending.popleft())
    finally:  # interrupted (an error, or the caller stopped): drop what was not committed
        for _n, job in pending:
            if job is not None and not job.cancel():
                with contextlib.suppress(Exception):
                    job.result()[0].discard()


class _BlockWarper:
    """Warps the stretched raster into blocks of Web-Mercator tiles.

    The raster -> Web-Mercator transform is evaluated exactly (pyproj) on a grid every
    `_GRID_PX` output pixels and interpolated bilinearly in between (the map is smooth: the
    error is far below 0.01 px over 32 px), then OpenCV resamples bilinearly. This does what
    GDAL's warper does with its approximate transformer, about an order of magnitude faster
    here. When the tiles are much coarser than the raster, the source is first averaged down by
    an integer factor, so bilinear sampling does not alias. `block` may be called from several
    threads: the GDAL dataset and the PROJ transformer are used under a lock (they are not
    thread-safe), the stretch and resampling run concurrently.
    """

    _GRID_PX = 32

    def __init__(self, src: rasterio.io.DatasetReader, stretch: Stretch, z: int) -> None:
        self._src = src
        self._stretch = stretch
        self._to_src = Transformer.from_crs("EPSG:3857", src.crs, always_xy=True)
        self._lock = threading.Lock()
        self._inv = ~src.transform
        self._tile_m = 2.0 * ORIGIN_SHIFT_M / (1 << z)
        res_out = self._tile_m / TILE_SIZE_PX
        res_in = native_resolution_m(src)
        self._factor = max(1, int(res_out / res_in)) if res_out / res_in >= 2.0 else 1
        dtype = np.dtype(src.dtypes[0])
        # The stretch's lookup table, built once (65536 entries for uint16), not per block.
        self._lut = stretch.lut(np.iinfo(dtype).max + 1) \
            if dtype in (np.uint8, np.uint16) else None

    def block(self, tx0: int, ty0: int, ntx: int, nty: int) -> np.ndarray:
        """(nty*256, ntx*256) uint8 image of tiles tx0.. x ty0.. (0 where no data)."""
        g = self._GRID_PX
        w, h = ntx * TILE_SIZE_PX, nty * TILE_SIZE_PX
        nx, ny = w // g, h // g
        # Grid nodes at the centres of g-px cells, one extra ring outside, so that cv2.resize
        # interpolates (never extrapolates) every output pixel; see module docstring.
        kx = np.arange(-1, nx + 1, dtype=np.float64)
        ky = np.arange(-1, ny + 1, dtype=np.float64)
        px = (kx + 0.5) * g  # output pixel coordinate of the node (pixel-centre convention)
        py = (ky + 0.5) * g
        res = self._tile_m / TILE_SIZE_PX
        mx = -ORIGIN_SHIFT_M + tx0 * self._tile_m + px * res
        my = ORIGIN_SHIFT_M - ty0 * self._tile_m - py * res
        gx, gy = np.meshgrid(mx, my)
        with self._lock:
            sx, sy = self._to_src.transform(gx, gy)
        a = self._inv
        col = a.a * sx + a.b * sy + a.c - 0.5  # source pixel-centre coordinates
        row = a.d * sx + a.e * sy + a.f - 0.5
        c0 = max(int(np.floor(col.min())) - 2, 0)
        r0 = max(int(np.floor(row.min())) - 2, 0)
        c1 = min(int(np.ceil(col.max())) + 3, self._src.width)
        r1 = min(int(np.ceil(row.max())) + 3, self._src.height)
        if c1 <= c0 or r1 <= r0:
            return np.zeros((h, w), np.uint8)
        f = self._factor
        window = Window(c0, r0, c1 - c0, r1 - r0)
        with self._lock:
            if f > 1:
                shape = (max(1, (r1 - r0) // f), max(1, (c1 - c0) // f))
                values = self._src.read(1, window=window, out_shape=shape,
                                        resampling=Resampling.average)
            else:
                values = self._src.read(1, window=window)
        src_img = np.take(self._lut, values) if self._lut is not None \
            else self._stretch.apply(values)
        fx = (c1 - c0) / src_img.shape[1]
        fy = (r1 - r0) / src_img.shape[0]
        map_x = ((col - c0 + 0.5) / fx - 0.5).astype(np.float32)
        map_y = ((row - r0 + 0.5) / fy - 0.5).astype(np.float32)
        size = ((nx + 2) * g, (ny + 2) * g)
        map_x = cv2.resize(map_x, size, interpolation=cv2.INTER_LINEAR)[g:g + h, g:g + w]
        map_y = cv2.resize(map_y, size, interpolation=cv2.INTER_LINEAR)[g:g + h, g:g + w]
        return cv2.remap(src_img, map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def native_resolution_m(src: rasterio.io.DatasetReader) -> float:
    """Pixel size of a raster in metres (at its centre latitude for geographic rasters)."""
    res = min(abs(src.res[0]), abs(src.res[1]))
    if src.crs.is_geographic:
        _, south, _, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        return math.radians(res) * 6378137.0 * math.cos(math.radians((south + north) / 2.0))
    return res * src.crs.linear_units_factor[1]


def _present(store: TileStore, tiles: list[TileId]) -> set[TileId]:
    z = tiles[0].z
    xs = [t.x for t in tiles]
    ys = [t.y for t in tiles]
    size = 2.0 * ORIGIN_SHIFT_M / (1 << z)
    # Query the block's box shrunk by a hair, so neighbours that merely touch are not returned.
    eps = size * 1e-6
    w, n = mercator_to_lonlat(-ORIGIN_SHIFT_M + min(xs) * size + eps,
                              ORIGIN_SHIFT_M - min(ys) * size - eps)
    e, s = mercator_to_lonlat(-ORIGIN_SHIFT_M + (max(xs) + 1) * size - eps,
                              ORIGIN_SHIFT_M - (max(ys) + 1) * size + eps)
    wanted = set(tiles)
    return {t for t in store.hits_in_box(float(w), float(s), float(e), float(n), z).tile_ids()
            if t in wanted}
