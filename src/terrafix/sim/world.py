"""Rendered worlds: what the nadir camera sees at any 6-DoF pose over flat ground.

Two worlds share one renderer: `OrthoWorld` (a georeferenced orthophoto read with rasterio, e.g.
the WorldView-3 image of the dgsamples package) and `SyntheticWorld` (procedural farmland of any
size, generated per tile and cached). Each is a metric raster on the ground plane; a frame is one
`cv2.warpPerspective` of the ground homography from a pyramid level matched to the frame's
ground sample distance (no aliasing when flying high, and fast: the bar is >= 5 frames/s at
1280x960 on two cores). Lens distortion, when the intrinsics have any, is folded into a single
`cv2.remap` so the image is still resampled only once.

Pixel conventions: OpenCV pixel centres at integer coordinates, both in the frame (the camera
model's convention) and in the source raster (rasterio's pixel-corner transform shifted by half a
pixel). The ground is the plane down = frame.alt0_m - world.ground_alt_m of the flight's NED
frame (flat-ground assumption of the whole system).
"""

from __future__ import annotations

import importlib.util
import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from terrafix.camera import CameraError, CameraPose, Intrinsics, ground_footprint_ned
from terrafix.geo.frames import LocalFrame
from terrafix.geo.utm import from_wgs84, to_wgs84
from terrafix.sim.effects import ImageEffects, apply_effects
from terrafix.sim.errors import WorldError
from terrafix.sim.synthetic_texture import landmarks_in, synthetic_tile

# --------------------------------------------------------------------------- shared geometry


def ground_homography(pose: CameraPose, intrinsics: Intrinsics, ground_down_m: float
                      ) -> np.ndarray:
    """(3, 3) homography from ground (north, east, 1) on the plane down = ground_down_m to
    undistorted image pixels."""
    C = pose.p_cam_ned
    A = np.array([[1.0, 0.0, -C[0]], [0.0, 1.0, -C[1]], [0.0, 0.0, ground_down_m - C[2]]])
    return intrinsics.K @ pose.R_cam_to_ned.T @ A


def fit_affine(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares affine (3, 3) mapping src (N, 2) to dst (N, 2), and its max residual."""
    X = np.column_stack((src, np.ones(len(src))))
    coef, *_ = np.linalg.lstsq(X, dst, rcond=None)
    resid = float(np.abs(X @ coef - dst).max())
    return np.vstack((coef.T, [0.0, 0.0, 1.0])), resid


@lru_cache(maxsize=4)
def _undistort_grid(intr: Intrinsics) -> np.ndarray:
    """(H*W, 1, 2) float64 undistorted pixel positions of every distorted output pixel."""
    ys, xs = np.mgrid[0:intr.height, 0:intr.width]
    px = np.column_stack((xs.ravel(), ys.ravel())).astype(np.float64).reshape(-1, 1, 2)
    und = cv2.undistortPoints(px, intr.K, np.array(intr.dist), P=intr.K)
    und.flags.writeable = False
    return und


def pyramid_level_for(pose: CameraPose, intrinsics: Intrinsics, ground_down_m: float,
               res_m: float, max_level: int) -> int:
    """Pyramid level whose resolution is the finest not finer than half the frame's GSD at the
    principal point (so the warp never minifies by 2x or more)."""
    axis = pose.R_cam_to_ned[:, 2]
    if axis[2] <= 1e-6:
        return 0
    slant = (ground_down_m - pose.p_cam_ned[2]) / axis[2]
    gsd = slant / intrinsics.fx
    ratio = gsd / res_m
    return int(min(max_level, max(0, math.floor(math.log2(ratio)) if ratio >= 2 else 0)))


class _RasterWorld:
    """Common rendering for worlds that are metric rasters on the ground plane.

    Subclasses provide `res_m`, `ground_alt_m`, `_ned_to_px(frame)` (affine (3, 3) from the
    flight's (north, east, 1) to level-0 pixel coordinates), `_source(level, x0, y0, x1, y1)`
    returning an image covering level-L pixels [x0, x1) x [y0, y1) and its origin, and
    `_covers(px_polygon)`.
    """

    res_m: float
    ground_alt_m: float
    max_level: int = 5

    def _ned_to_px(self, frame: LocalFrame) -> np.ndarray:
        raise NotImplementedError

    def _source(self, level: int, x0: int, y0: int, x1: int, y1: int
                ) -> tuple[np.ndarray, tuple[int, int]]:
        raise NotImplementedError

    def _covers(self, poly_px: np.ndarray) -> bool:
        raise NotImplementedError

    def ground_down_m(self, frame: LocalFrame) -> float:
        return float(frame.alt0_m - self.ground_alt_m)

    def footprint_px(self, pose: CameraPose, intrinsics: Intrinsics, frame: LocalFrame
                     ) -> np.ndarray:
        """Footprint corners (4, 2) in level-0 raster pixels; WorldError above the horizon."""
        try:
            ne = ground_footprint_ned(pose, intrinsics, self.ground_down_m(frame))
        except CameraError as exc:
            raise WorldError(f"camera sees the sky: {exc}") from None
        A = self._ned_to_px(frame)
        return ne @ A[:2, :2].T + A[:2, 2]

    def footprint_on_imagery(self, pose: CameraPose, intrinsics: Intrinsics,
                             frame: LocalFrame) -> bool:
        """True when the whole image footprint lies on valid imagery."""
        try:
            poly = self.footprint_px(pose, intrinsics, frame)
        except WorldError:
            return False
        return self._covers(poly)

    def check_footprint(self, pose: CameraPose, intrinsics: Intrinsics, frame: LocalFrame,
                        what: str = "frame") -> None:
        """Raise WorldError when the footprint leaves the imagery."""
        if not self.footprint_on_imagery(pose, intrinsics, frame):
            lat, lon, _ = frame.ned_to_lla(pose.p_cam_ned)
            raise WorldError(
                f"{what}: camera footprint at {float(lat):.6f}, {float(lon):.6f} "
                f"({-pose.p_cam_ned[2] + self.ground_down_m(frame):.0f} m above ground) "
                f"leaves the imagery of {getattr(self, 'name', 'the world')}")

    def render(self, pose: CameraPose, intrinsics: Intrinsics, frame: LocalFrame,
               effects: ImageEffects | None = None, rng: np.random.Generator | None = None
               ) -> np.ndarray:
        """The (H, W) uint8 image seen from `pose` (in `frame`'s NED). Areas off the imagery
        render black; call `check_footprint` first to refuse such poses. `effects` (with
        `rng`) are applied after the geometric warp; None renders the pure warp."""
        g = self.ground_down_m(frame)
        H_ground_to_img = ground_homography(pose, intrinsics, g)
        poly = self.footprint_px(pose, intrinsics, frame)
        level = pyramid_level_for(pose, intrinsics, g, self.res_m, self.max_level)
        s = float(1 << level)
        # Level-0 pixel x0 -> level-L pixel (x0 - (s - 1) / 2) / s (pyrDown centres).
        to_level = np.array([[1 / s, 0, -(s - 1) / (2 * s)], [0, 1 / s, -(s - 1) / (2 * s)],
                             [0, 0, 1]])
        poly_l = (poly - (s - 1) / 2) / s
        x0, y0 = np.floor(poly_l.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(poly_l.max(axis=0)).astype(int) + 3
        src, (ox, oy) = self._source(level, int(x0), int(y0), int(x1), int(y1))
        to_src = np.array([[1.0, 0, -ox], [0, 1.0, -oy], [0, 0, 1]])
        M = to_src @ to_level @ self._ned_to_px(frame) @ np.linalg.inv(H_ground_to_img)
        w, h = intrinsics.width, intrinsics.height
        if intrinsics.has_distortion:
            pts = cv2.perspectiveTransform(_undistort_grid(intrinsics), M).reshape(h, w, 2)
            img = cv2.remap(src, pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32),
                            cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        else:
            img = cv2.warpPerspective(src, M, (w, h), flags=cv2.INTER_LINEAR
                                      | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                                      borderValue=0)
        if effects is not None:
            img = apply_effects(img, effects, rng if rng is not None
                                else np.random.default_rng(0))
        return img


# --------------------------------------------------------------------------- orthophoto world


def stretch_to_uint8(raw: np.ndarray, valid: np.ndarray,
                     percentiles: tuple[float, float] = (0.5, 99.5), gamma: float = 0.7
                     ) -> np.ndarray:
    """Robust contrast stretch of a (H, W) raster to uint8: the given percentiles of the valid
    pixels map to 0..255, then a gamma (< 1 brightens the dark farmland of PAN imagery)."""
    lo, hi = np.percentile(raw[valid], percentiles)
    if hi <= lo:
        raise WorldError(f"raster has no contrast: percentiles {percentiles} give {lo}, {hi}")
    x = np.clip((raw.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0) ** gamma
    out = (x * 255.0 + 0.5).astype(np.uint8)
    out[~valid] = 0
    return out


@dataclass(frozen=True, slots=True)
class ImageryInfo:
    """Where an orthophoto comes from (for meta.json and figures)."""

    name: str
    source: str
    acquired: str
    path: str


class OrthoWorld(_RasterWorld):
    """A georeferenced orthophoto (projected CRS in metres, north-up) as the camera's world.

    image: (H, W) uint8 level 0; valid: (H, W) bool mask of real imagery (nodata excluded).
    """

    def __init__(self, image: np.ndarray, valid: np.ndarray, transform: tuple[float, ...],
                 crs_epsg: int, ground_alt_m: float, info: ImageryInfo) -> None:
        a, b, c, d, e, f = transform[:6]
        if abs(b) > 1e-12 or abs(d) > 1e-12 or a <= 0 or e >= 0:
            raise WorldError(f"only north-up rasters are supported, transform {transform}")
        self.image = image
        self.valid = valid
        self.transform = (a, b, c, d, e, f)
        self.crs_epsg = crs_epsg
        self.res_m = float(a)
        self.ground_alt_m = float(ground_alt_m)
        self.info = info
        self.name = info.name
        self._pyramid: list[np.ndarray] = [image]
        # Coarse valid mask for footprint checks: a cell is valid only if all its pixels are.
        self._mask_step = 8
        hh, ww = (valid.shape[0] // 8) * 8, (valid.shape[1] // 8) * 8
        self._valid_coarse = valid[:hh, :ww].reshape(hh // 8, 8, ww // 8, 8).all(axis=(1, 3))
        self._affine_cache: dict[tuple[float, float, float], np.ndarray] = {}

    @staticmethod
    def from_geotiff(path: str | Path, ground_alt_m: float, name: str | None = None,
                     acquired: str = "", source: str = "") -> OrthoWorld:
        """Read a single-band GeoTIFF (e.g. uint16 PAN) and stretch it to uint8."""
        import rasterio

        with rasterio.open(path) as ds:
            raw = ds.read(1)
            epsg = ds.crs.to_epsg() if ds.crs is not None else None
            tr = ds.transform
            nodata = ds.nodata
        if epsg is None:
            raise WorldError(f"{path}: raster has no EPSG CRS")
        valid = raw != (0 if nodata is None else nodata)
        # Remove isolated zero speckle from the mask and shrink it by a few pixels so that
        # resampling never blends nodata into a frame.
        valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        img = stretch_to_uint8(raw, valid)
        info = ImageryInfo(name or Path(path).stem, source, acquired, str(path))
        return OrthoWorld(img, valid, (tr.a, tr.b, tr.c, tr.d, tr.e, tr.f), epsg,
                          ground_alt_m, info)

    # -- georeferencing
    def pixel_to_projected(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray,
                                                                            np.ndarray]:
        """OpenCV pixel coordinates (centres at integers) -> projected x, y."""
        a, _, c, _, e, f = self.transform
        return c + a * (np.asarray(cols) + 0.5), f + e * (np.asarray(rows) + 0.5)

    def projected_to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray,
                                                                       np.ndarray]:
        a, _, c, _, e, f = self.transform
        return (np.asarray(x) - c) / a - 0.5, (np.asarray(y) - f) / e - 0.5

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]

    @property
    def bounds_wgs84(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) degrees of the raster's outer edges."""
        h, w = self.image.shape
        cols = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
        rows = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
        lat, lon = to_wgs84(*self.pixel_to_projected(cols, rows), self.crs_epsg)
        return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())

    @property
    def centre_wgs84(self) -> tuple[float, float]:
        """(lat, lon) of the raster centre."""
        h, w = self.image.shape
        lat, lon = to_wgs84(*self.pixel_to_projected((w - 1) / 2, (h - 1) / 2), self.crs_epsg)
        return float(lat), float(lon)

    def lla_to_pixel(self, lat_deg: np.ndarray, lon_deg: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        return self.projected_to_pixel(*from_wgs84(lat_deg, lon_deg, self.crs_epsg))

    def _ned_to_px(self, frame: LocalFrame) -> np.ndarray:
        key = (frame.lat0_deg, frame.lon0_deg, frame.alt0_m)
        A = self._affine_cache.get(key)
        if A is None:
            h, w = self.image.shape
            cols, rows = np.meshgrid(np.linspace(0, w - 1, 5), np.linspace(0, h - 1, 5))
            lat, lon = to_wgs84(*self.pixel_to_projected(cols.ravel(), rows.ravel()),
                                self.crs_epsg)
            ned = frame.lla_to_ned(lat, lon, np.full(lat.shape, self.ground_alt_m))
            A, resid = fit_affine(ned[:, :2], np.column_stack((cols.ravel(), rows.ravel())))
            if resid > 0.05:
                raise WorldError(f"NED->raster mapping is not affine over {self.name} "
                                 f"(residual {resid:.3f} px > 0.05 px)")
            self._affine_cache[key] = A
        return A

    def _level(self, level: int) -> np.ndarray:
        while len(self._pyramid) <= level:
            self._pyramid.append(cv2.pyrDown(self._pyramid[-1]))
        return self._pyramid[level]

    def _source(self, level: int, x0: int, y0: int, x1: int, y1: int
                ) -> tuple[np.ndarray, tuple[int, int]]:
        img = self._level(level)
        h, w = img.shape
        cx0, cy0 = max(0, x0), max(0, y0)
        cx1, cy1 = min(w, x1), min(h, y1)
        if cx0 >= cx1 or cy0 >= cy1:
            return np.zeros((2, 2), np.uint8), (x0, y0)
        return img[cy0:cy1, cx0:cx1], (cx0, cy0)

    def _covers(self, poly_px: np.ndarray) -> bool:
        h, w = self.image.shape
        if np.any(poly_px < -0.5) or np.any(poly_px[:, 0] > w - 0.5) \
                or np.any(poly_px[:, 1] > h - 0.5):
            return False
        step = self._mask_step
        ch, cw = self._valid_coarse.shape
        mask = np.zeros((ch + 2, cw + 2), np.uint8)
        pts = np.round((poly_px + 0.5) / step * 16).astype(np.int32) + 16
        cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, 4)
        cv2.polylines(mask, [pts], True, 1, 1, cv2.LINE_8, 4)
        inside = mask[1:ch + 1, 1:cw + 1].astype(bool)
        if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
            return False
        return bool(np.all(self._valid_coarse[inside]))


def dgsamples_root() -> Path:
    """Folder of the installed dgsamples package (located without importing it)."""
    spec = importlib.util.find_spec("dgsamples")
    if spec is None or not spec.submodule_search_locations:
        raise WorldError("the dgsamples package is not installed (scripts/bootstrap.sh "
                         "installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


DGSAMPLES = {
    # key: (folder glob, acquisition date, description)
    "wv3": ("wv3_longmont_1k/*_PAN/*.TIF", "2014-10-06", "WorldView-3 PAN 0.3 m, Longmont CO"),
    "wv2": ("wv2_longmont_1k/*_PAN/*.TIF", "2014-06-20", "WorldView-2 PAN 0.5 m, Longmont CO"),
}
LONGMONT_GROUND_ALT_M = 1520.0


@lru_cache(maxsize=2)
def load_dgsamples_world(which: str = "wv3", ground_alt_m: float = LONGMONT_GROUND_ALT_M
                         ) -> OrthoWorld:
    """The dgsamples imagery as a world: "wv3" (the camera's world) or "wv2" (the map's)."""
    if which not in DGSAMPLES:
        raise WorldError(f"dgsamples world must be one of {sorted(DGSAMPLES)}, got {which!r}")
    pattern, date, desc = DGSAMPLES[which]
    files = sorted(dgsamples_root().glob(pattern))
    if len(files) != 1:
        raise WorldError(f"expected one dgsamples file for {pattern}, found {files}")
    return OrthoWorld.from_geotiff(files[0], ground_alt_m, name=f"dgsamples-{which}",
                                   acquired=date, source=desc)


# --------------------------------------------------------------------------- synthetic world

# Generated tiles, shared by every SyntheticWorld of the process (~1 MB per level-0 tile).
_TILE_CACHE: OrderedDict[tuple[int, int, float, int, int, int], np.ndarray] = OrderedDict()
_TILE_CACHE_SIZE = 224
_MAX_SOURCE_TILES = 64
"""Level-0 tiles one render may assemble (4^L times as many at pyramid level L)."""


class SyntheticWorld(_RasterWorld):
    """Procedural farmland around `anchor` (WGS84 origin; its altitude is the ground AMSL),
    extending `extent_m` in every direction, generated per tile on demand and cached.

    World coordinates: the anchor's NED plane; level-0 pixel size `res_m`; pixel x = east,
    pixel y = south.
    """

    def __init__(self, seed: int, anchor: LocalFrame, extent_m: float = 50_000.0,
                 res_m: float = 0.25, tile_px: int = 1024) -> None:
        self.seed = int(seed)
        self.anchor = anchor
        self.extent_m = float(extent_m)
        self.res_m = float(res_m)
        self.ground_alt_m = float(anchor.alt0_m)
        self.tile_px = int(tile_px)
        self.name = f"synthetic-{self.seed}"
        self._affine_cache: dict[tuple[float, float, float], np.ndarray] = {}

    @property
    def bounds_wgs84(self) -> tuple[float, float, float, float]:
        r = self.extent_m
        pts = np.array([[r, -r, 0.0], [r, r, 0.0], [-r, r, 0.0], [-r, -r, 0.0]])
        lat, lon, _ = self.anchor.ned_to_lla(pts)
        return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())

    def _world_ne_to_px(self) -> np.ndarray:
        r = self.res_m
        # x = east / res - 0.5, y = south / res - 0.5 (pixel centres at integers).
        return np.array([[0.0, 1.0 / r, -0.5], [-1.0 / r, 0.0, -0.5], [0.0, 0.0, 1.0]])

    def _ned_to_px(self, frame: LocalFrame) -> np.ndarray:
        key = (frame.lat0_deg, frame.lon0_deg, frame.alt0_m)
        A = self._affine_cache.get(key)
        if A is None:
            a = self.anchor
            if (frame.lat0_deg, frame.lon0_deg) == (a.lat0_deg, a.lon0_deg):
                A = self._world_ne_to_px()
            else:
                g = np.linspace(-5000.0, 5000.0, 5)
                n, e = np.meshgrid(g, g)
                ne = np.column_stack((n.ravel(), e.ravel()))
                lat, lon, _ = frame.ned_to_lla(np.column_stack((ne, np.zeros(len(ne)))))
                world = a.lla_to_ned(lat, lon, np.full(lat.shape, self.ground_alt_m))
                W, resid = fit_affine(ne, world[:, :2])
                if resid > 0.01:
                    raise WorldError(f"flight frame too far from the synthetic anchor "
                                     f"(affine residual {resid:.3f} m)")
                A = self._world_ne_to_px() @ W
            self._affine_cache[key] = A
        return A

    def ne_to_pixel(self, ne_world_m: np.ndarray) -> np.ndarray:
        """World (anchor-frame) north/east metres (N, 2) -> level-0 pixel coordinates."""
        A = self._world_ne_to_px()
        return np.asarray(ne_world_m, dtype=np.float64) @ A[:2, :2].T + A[:2, 2]

    def landmarks_ned(self, n_min: float, e_min: float, n_max: float, e_max: float
                      ) -> np.ndarray:
        """Known landmark centres (K, 3) in the anchor's NED frame (on the ground plane)
        within the given north/east box."""
        xy = landmarks_in(self.seed, e_min, -n_max, e_max, -n_min)
        return np.column_stack((-xy[:, 1], xy[:, 0], np.zeros(len(xy))))

    def tile(self, level: int, tx: int, ty: int) -> np.ndarray:
        """(T / 2^level, T / 2^level) uint8 tile, cached (LRU shared by all worlds)."""
        key = (self.seed, self.tile_px, self.res_m, level, tx, ty)
        hit = _TILE_CACHE.get(key)
        if hit is not None:
            _TILE_CACHE.move_to_end(key)
            return hit
        img = synthetic_tile(self.seed, tx, ty, self.tile_px, self.res_m) if level == 0 \
            else cv2.pyrDown(self.tile(level - 1, tx, ty))
        img.flags.writeable = False
        _TILE_CACHE[key] = img
        while len(_TILE_CACHE) > _TILE_CACHE_SIZE:
            _TILE_CACHE.popitem(last=False)
        return img

    def _source(self, level: int, x0: int, y0: int, x1: int, y1: int
                ) -> tuple[np.ndarray, tuple[int, int]]:
        t = self.tile_px >> level
        tx0, ty0 = x0 // t, y0 // t
        tx1, ty1 = (x1 - 1) // t, (y1 - 1) // t
        # the limit is on pixels assembled, not ground covered: a level-L tile has 4^-L of
        # a level-0 tile's pixels (800 m above ground in a 40 deg bank the footprint spans
        # 81 tiles at level 1, a quarter of the pixels of 81 level-0 tiles)
        if (tx1 - tx0 + 1) * (ty1 - ty0 + 1) > _MAX_SOURCE_TILES << (2 * level):
            raise WorldError(f"footprint spans {(tx1 - tx0 + 1) * (ty1 - ty0 + 1)} synthetic "
                             f"tiles at level {level}; the camera looks too far")
        rows = [np.hstack([self.tile(level, tx, ty) for tx in range(tx0, tx1 + 1)])
                for ty in range(ty0, ty1 + 1)]
        return np.vstack(rows), (tx0 * t, ty0 * t)

    def _covers(self, poly_px: np.ndarray) -> bool:
        lim = self.extent_m / self.res_m
        return bool(np.all(np.abs(poly_px) < lim))
