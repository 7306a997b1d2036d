"""Frames orthorectified straight into z/x/y tiles, merged best view first (REQUIREMENTS U1).

Geometry: for a tile, its pixel grid maps to ground north/east metres by an affine map
(Web-Mercator is affine to well under a millimetre across one 256-px tile), the ground is the
flat plane at the flight's ground altitude, and a pinhole camera maps that plane to the frame
by a homography. So each tile pixel (u, v) is found in the frame at

    H_tile_to_frame = K · R_cam_to_nedᵀ · M,   M = [[a00, a01, a02 - n_cam],
                                                    [a10, a11, a12 - e_cam],
                                                    [0,   0,   d_ground - d_cam]]

(A = [[a..]]: tile pixel → north/east; p_cam_ned = (n_cam, e_cam, d_cam)), one
`cv2.warpPerspective` per tile and frame, as `vision.ortho` warps a frame onto its north-up
canvas (same plane-induced homography, same anti-aliasing by shrinking the frame first).

Merging: every tile pixel keeps the view with the smallest ground sample distance there,
GSD = h / (f · c³) with c the cosine of the ray's off-nadir angle (slant range and foreshortening
both grow as the ray tilts), so the most nadir, lowest frame wins pixel by pixel. A tile is
finished when `idle_frames` frames in a row have not touched it (the aircraft has moved on) and
kept only when at least `min_coverage` of its pixels are filled (a complete tile; a partial one
would carry black holes into the map).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np

from terrafix.camera import CameraError, CameraPose, Intrinsics, ground_footprint_ned
from terrafix.geo.frames import LocalFrame
from terrafix.geo.tiles import TILE_SIZE_PX, TileId, global_px_to_lonlat, lonlat_to_global_px

_S = TILE_SIZE_PX


@dataclass(frozen=True, slots=True)
class FrameView:
    """An eligible frame with its pose at the capture time.

    image: (H, W) uint8 at the intrinsics' resolution. p_cam_ned: (3,) m; R_cam_to_ned (3, 3).
    sigma_m: the pose's horizontal 1-sigma (m). captured_utc: capture time."""

    t_ns: int
    captured_utc: datetime
    image: np.ndarray = field(repr=False)
    p_cam_ned: np.ndarray
    R_cam_to_ned: np.ndarray
    sigma_m: float


@dataclass(frozen=True, slots=True)
class FinishedTile:
    """A tile the aircraft has moved away from. image: (256, 256) uint8; coverage: share of
    filled pixels; sigma_m: largest pose sigma among the frames used; frames: their capture
    times in merge order; captured_utc: the newest of them."""

    tile: TileId
    image: np.ndarray = field(repr=False)
    coverage: float
    sigma_m: float
    frames: tuple[datetime, ...]
    captured_utc: datetime


class _Canvas:
    __slots__ = ("cost", "frames", "image", "last_touch", "sigma_m")

    def __init__(self) -> None:
        self.image = np.zeros((_S, _S), np.uint8)
        self.cost = np.full((_S, _S), np.inf, np.float32)
        self.frames: list[datetime] = []
        self.sigma_m = 0.0
        self.last_touch = 0


class TileMosaic:
    """Accumulates frames into tiles at zoom z (see module docstring). Not thread-safe: one
    worker owns it."""

    def __init__(self, frame: LocalFrame, ground_alt_m: float, intrinsics: Intrinsics, z: int,
                 *, min_coverage: float = 0.99, idle_frames: int = 3,
                 reference: Callable[[TileId], np.ndarray | None] | None = None,
                 align_min_response: float = 0.08, align_max_sigmas: float = 3.0,
                 align_max_spread_m: float = 1.0) -> None:
        self.frame = frame
        self.ground_alt_m = float(ground_alt_m)
        self.ground_down_m = float(frame.alt0_m - ground_alt_m)
        self.K = intrinsics.K
        self.intrinsics = intrinsics
        self.z = int(z)
        self.min_coverage = float(min_coverage)
        self.idle_frames = int(idle_frames)
        self._reference = reference
        self.align_min_response = float(align_min_response)
        self.align_max_sigmas = float(align_max_sigmas)
        self.align_max_spread_m = float(align_max_spread_m)
        self.frames_aligned = 0
        self.align_shifts_m: list[float] = []
        self._window = cv2.createHanningWindow((_S, _S), cv2.CV_32F)
        self._tiles: dict[TileId, _Canvas] = {}
        self._count = 0
        self.incomplete = 0
        self._dist = np.array(intrinsics.dist) if intrinsics.has_distortion else None
        v, u = np.mgrid[0:_S, 0:_S].astype(np.float64)
        self._uv1 = np.stack([u.ravel(), v.ravel(), np.ones(_S * _S)])  # (3, S*S)

    # --- geometry ------------------------------------------------------------------------
    def tile_to_ne(self, tile: TileId) -> np.ndarray:
        """(2, 3) affine: tile pixel (u, v) centre coordinates -> ground north/east (m)."""
        uv = np.array([[0.0, 0.0], [_S - 1.0, 0.0], [0.0, _S - 1.0], [_S - 1.0, _S - 1.0]])
        lon, lat = global_px_to_lonlat(tile.x * _S + uv[:, 0] + 0.5,
                                       tile.y * _S + uv[:, 1] + 0.5, self.z)
        ned = self.frame.lla_to_ned(np.asarray(lat), np.asarray(lon),
                                    np.full(4, self.ground_alt_m))
        X = np.column_stack([uv, np.ones(4)])
        A, *_ = np.linalg.lstsq(X, ned[:, :2], rcond=None)
        return A.T

    def tiles_seen(self, pose: CameraPose) -> list[TileId]:
        """Tiles the frame's ground footprint touches."""
        ne = ground_footprint_ned(pose, self.intrinsics, self.ground_down_m)
        lat, lon, _ = self.frame.ned_to_lla(np.column_stack([ne, np.full(4, self.ground_down_m)]))
        px, py = lonlat_to_global_px(np.asarray(lon), np.asarray(lat), self.z)
        x0, x1 = int(np.floor(px.min() / _S)), int(np.floor(px.max() / _S))
        y0, y1 = int(np.floor(py.min() / _S)), int(np.floor(py.max() / _S))
        return [TileId(self.z, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]

    # --- accumulation --------------------------------------------------------------------
    def add(self, view: FrameView) -> list[FinishedTile]:
        """Merge one frame; returns the tiles finished by it (complete ones only)."""
        self._count += 1
        pose = CameraPose(np.asarray(view.p_cam_ned, np.float64),
                          np.asarray(view.R_cam_to_ned, np.float64))
        height = self.ground_down_m - float(pose.p_cam_ned[2])
        try:
            tiles = self.tiles_seen(pose) if height > 1.0 else []
        except CameraError:
            tiles = []  # a corner sees the sky: a steep bank, no orthorectification
        if tiles and self._reference is not None:
            pose = self._aligned(view, pose, height, tiles)
        if tiles:
            self._paint(view, pose, height, tiles)
        return self._finish(lambda c: self._count - c.last_touch >= self.idle_frames)

    def flush(self) -> list[FinishedTile]:
        """Finish every tile still open (end of flight)."""
        return self._finish(lambda _c: True)

    def _aligned(self, view: FrameView, pose: CameraPose, height: float,
                 tiles: list[TileId]) -> CameraPose:
        """The pose moved so that the frame lines up with the map, when it clearly does.

        Each tile the frame fully covers is warped with the pose and phase-correlated with the
        map's tile (cross-sensor and months apart, but roads, field edges and buildings hold):
        a displacement s of the fresh view against the map means the believed camera position
        is off by s on the ground. The median s over the tiles that correlate (response >=
        align_min_response) is applied when the tiles agree (spread <= align_max_spread_m)
        and it is within align_max_sigmas of the pose's 1-sigma; otherwise the pose stands
        (changed ground, no texture, or a pose the map contradicts: not this step's call)."""
        shifts = []
        for t in tiles:
            ref = self._reference(t)  # type: ignore[misc]
            if ref is None:
                continue
            warped, valid = self._warp(view.image, pose, height, t)
            if warped is None or not valid.all():
                continue
            (dx, dy), resp = cv2.phaseCorrelate(warped.astype(np.float32),
                                                ref.astype(np.float32), self._window)
            if resp < self.align_min_response:
                continue
            A = self.tile_to_ne(t)
            shifts.append(A[:, :2] @ np.array([-dx, -dy]))  # fresh content vs the map, N/E m
        if not shifts:
            return pose
        s = np.median(np.array(shifts), axis=0)
        spread = float(np.max(np.linalg.norm(np.array(shifts) - s, axis=1)))
        if spread > self.align_max_spread_m and len(shifts) > 1:
            return pose
        if float(np.linalg.norm(s)) > self.align_max_sigmas * max(view.sigma_m, 0.5):
            return pose
        self.frames_aligned += 1
        self.align_shifts_m.append(float(np.linalg.norm(s)))
        p = pose.p_cam_ned.copy()
        p[:2] -= s
        return CameraPose(p, pose.R_cam_to_ned)

    def _warp(self, image: np.ndarray, pose: CameraPose, height: float,
              t: TileId) -> tuple[np.ndarray | None, np.ndarray]:
        """The frame warped into tile t (no anti-aliasing: alignment only) and its mask."""
        n_c, e_c, d_c = (float(v) for v in pose.p_cam_ned)
        A = self.tile_to_ne(t)
        M = np.array([[A[0, 0], A[0, 1], A[0, 2] - n_c], [A[1, 0], A[1, 1], A[1, 2] - e_c],
                      [0.0, 0.0, self.ground_down_m - d_c]])
        H = self.K @ pose.R_cam_to_ned.T @ M
        ones = np.full(image.shape, 255, np.uint8)
        valid = cv2.warpPerspective(ones, H, (_S, _S), flags=cv2.INTER_NEAREST
                                    | cv2.WARP_INVERSE_MAP, borderValue=0) > 0
        if not valid.any():
            return None, valid
        return cv2.warpPerspective(image, H, (_S, _S), flags=cv2.INTER_LINEAR
                                   | cv2.WARP_INVERSE_MAP, borderValue=0), valid

    def _paint(self, view: FrameView, pose: CameraPose, height: float,
               tiles: list[TileId]) -> None:
        image = view.image
        if self._dist is not None:
            image = cv2.undistort(image, self.K, self._dist)
        h, w = image.shape
        R_ned_to_cam = pose.R_cam_to_ned.T
        # anti-aliasing: shrink the frame to about the tile resolution first
        tile_gsd = float(np.linalg.norm(self.tile_to_ne(tiles[0])[:, 0]))
        frame_gsd = height / (self.intrinsics.fx * max(pose.R_cam_to_ned[2, 2], 0.5))
        shrink = tile_gsd / frame_gsd
        src, to_src = image, np.eye(3)
        if shrink > 1.3:
            sw, sh = max(round(w / shrink), 8), max(round(h / shrink), 8)
            src = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            sx, sy = sw / w, sh / h
            to_src = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5],
                               [0.0, 0.0, 1.0]])
        ones = np.full(src.shape, 255, np.uint8)
        n_c, e_c, d_c = (float(v) for v in pose.p_cam_ned)
        for t in tiles:
            A = self.tile_to_ne(t)
            M = np.array([[A[0, 0], A[0, 1], A[0, 2] - n_c],
                          [A[1, 0], A[1, 1], A[1, 2] - e_c],
                          [0.0, 0.0, self.ground_down_m - d_c]])
            H = to_src @ self.K @ R_ned_to_cam @ M
            valid = cv2.warpPerspective(ones, H, (_S, _S), flags=cv2.INTER_NEAREST
                                        | cv2.WARP_INVERSE_MAP, borderValue=0) > 0
            if not valid.any():
                continue
            valid = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            rays = M @ self._uv1  # (3, S*S) camera-to-ground vectors in NED
            c = rays[2] / np.linalg.norm(rays, axis=0)
            cost = (height / (self.intrinsics.fx * c ** 3)).reshape(_S, _S).astype(np.float32)
            canvas = self._tiles.get(t)
            if canvas is None:
                canvas = self._tiles[t] = _Canvas()
            better = valid & (cost < canvas.cost)
            if not better.any():
                continue
            warped = cv2.warpPerspective(src, H, (_S, _S), flags=cv2.INTER_LINEAR
                                         | cv2.WARP_INVERSE_MAP, borderValue=0)
            canvas.image[better] = warped[better]
            canvas.cost[better] = cost[better]
            canvas.frames.append(view.captured_utc)
            canvas.sigma_m = max(canvas.sigma_m, float(view.sigma_m))
            canvas.last_touch = self._count

    def _finish(self, done) -> list[FinishedTile]:
        out = []
        for t in [t for t, c in self._tiles.items() if done(c)]:
            c = self._tiles.pop(t)
            if not c.frames:
                continue
            coverage = float(np.isfinite(c.cost).mean())
            if coverage < self.min_coverage:
                self.incomplete += 1
                continue
            out.append(FinishedTile(t, c.image, coverage, c.sigma_m, tuple(c.frames),
                                    max(c.frames)))
        return out

    @property
    def open_tiles(self) -> int:
        return len(self._tiles)
