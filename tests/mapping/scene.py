"""A flat textured ground and a pinhole camera rendering it, independent of the code under test:
frames are made by casting each pixel's ray onto the ground (`pixels_to_ground_ned`) and
sampling the texture there; truth tiles by converting each tile pixel to lon/lat to NED."""

from __future__ import annotations

import cv2
import numpy as np

from terrafix.camera import CameraPose, Extrinsics, Intrinsics, pixels_to_ground_ned
from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import euler_to_R_body_to_ned
from terrafix.geo.tiles import TileId, global_px_to_lonlat

LAT0, LON0, ALT0, GROUND_ALT = 40.1377, -105.1403, 1720.0, 1520.0
FRAME = LocalFrame(LAT0, LON0, ALT0)
GROUND_DOWN = ALT0 - GROUND_ALT
INTR = Intrinsics(320, 240, 300.0, 300.0, 159.5, 119.5)
EXTR = Extrinsics()
GROUND_RES_M = 0.2
GROUND_HALF_M = 300.0


def ground_texture(seed: int) -> np.ndarray:
    """(3000, 3000) float32 texture over north/east [-300, 300) m at 0.2 m/px, row = south."""
    rng = np.random.default_rng(seed)
    n = int(2 * GROUND_HALF_M / GROUND_RES_M)
    img = np.zeros((n, n), np.float32)
    for cells, weight in ((30, 0.5), (150, 0.3), (600, 0.2)):
        grid = rng.random((cells, cells), dtype=np.float32)
        img += weight * cv2.resize(grid, (n, n), interpolation=cv2.INTER_CUBIC)
    return np.clip(img * 255, 0, 255)


def sample(texture: np.ndarray, north: np.ndarray, east: np.ndarray) -> np.ndarray:
    col = ((east + GROUND_HALF_M) / GROUND_RES_M - 0.5).astype(np.float32)
    row = ((GROUND_HALF_M - north) / GROUND_RES_M - 0.5).astype(np.float32)
    return cv2.remap(texture, col, row, cv2.INTER_LINEAR, borderValue=0)


def camera_pose(n: float, e: float, height: float, roll: float = 0.0, pitch: float = 0.0,
                yaw: float = 0.0) -> CameraPose:
    return CameraPose.from_body(np.array([n, e, GROUND_DOWN - height]),
                                euler_to_R_body_to_ned(roll, pitch, yaw), EXTR)


def render(texture: np.ndarray, pose: CameraPose) -> np.ndarray:
    v, u = np.mgrid[0:INTR.height, 0:INTR.width].astype(np.float64)
    pts, ok = pixels_to_ground_ned(np.column_stack([u.ravel(), v.ravel()]), pose, INTR,
                                   GROUND_DOWN)
    assert ok.all()
    img = sample(texture, pts[:, 0].reshape(u.shape), pts[:, 1].reshape(u.shape))
    return np.clip(img, 0, 255).astype(np.uint8)


def truth_tile(texture: np.ndarray, tile: TileId) -> np.ndarray:
    v, u = np.mgrid[0:256, 0:256].astype(np.float64)
    lon, lat = global_px_to_lonlat(tile.x * 256 + u + 0.5, tile.y * 256 + v + 0.5, tile.z)
    ned = FRAME.lla_to_ned(lat, lon, np.full(lat.shape, GROUND_ALT))
    return np.clip(sample(texture, ned[..., 0], ned[..., 1]), 0, 255).astype(np.uint8)
