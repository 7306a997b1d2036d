"""Simulated in-flight map tiles: what a flight would upload for a z/x/y, honest or poisoned.

A tile is rendered from an orthophoto world (`sim.world.OrthoWorld`, e.g. the WorldView-3
camera world) on the Web-Mercator pixel grid of its z/x/y, as the onboard orthorectifier
would write it, with
- a georeferencing error: the ground the tile shows is displaced by `offset_en_m` (east,
  north metres), the residual of the pose it was made from;
- a radiometric change: gain, bias and gamma of another exposure / time of day, then sensor
  noise and a slight blur, then JPEG compression (quality 85).
Poisoned candidates are the same renderings shifted by 5-50 m, or content from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from terrafix.geo.tiles import TILE_SIZE_PX, TileId, global_px_to_lonlat, tile_bounds
from terrafix.sim.world import OrthoWorld


@dataclass(frozen=True, slots=True)
class Radiometry:
    gain: float = 1.0
    bias: float = 0.0  # in [0, 1] intensity units
    gamma: float = 1.0
    noise_sigma: float = 0.0  # grey levels
    blur_sigma_px: float = 0.0

    @staticmethod
    def random(rng: np.random.Generator) -> Radiometry:
        """A different exposure and sensor: gain 0.8-1.2, bias +-0.06, gamma 0.85-1.15,
        noise 2-5 grey levels, blur 0-0.8 px."""
        return Radiometry(float(rng.uniform(0.8, 1.2)), float(rng.uniform(-0.06, 0.06)),
                          float(rng.uniform(0.85, 1.15)), float(rng.uniform(2.0, 5.0)),
                          float(rng.uniform(0.0, 0.8)))


def tile_inside_world(world: OrthoWorld, tile: TileId, margin_m: float = 60.0) -> bool:
    """Whether the tile and `margin_m` around it lie on valid imagery."""
    w, s, e, n = tile_bounds(tile)
    lat = np.array([s, s, n, n])
    lon = np.array([w, e, e, w])
    cols, rows = world.lla_to_pixel(lat, lon)
    m = margin_m / world.res_m
    h, wd = world.image.shape
    if cols.min() - m < 0 or rows.min() - m < 0 or cols.max() + m > wd - 1 \
            or rows.max() + m > h - 1:
        return False
    c0, c1 = int(cols.min() - m), int(cols.max() + m)
    r0, r1 = int(rows.min() - m), int(rows.max() + m)
    return bool(world.valid[r0:r1, c0:c1].all())


def render_tile(world: OrthoWorld, tile: TileId, offset_en_m: tuple[float, float] = (0.0, 0.0),
                radiometry: Radiometry = Radiometry(), rng: np.random.Generator | None = None
                ) -> np.ndarray:
    """(256, 256) uint8 rendering of `tile` from `world` (see module docstring)."""
    k = np.arange(TILE_SIZE_PX, dtype=np.float64) + 0.5
    gx, gy = np.meshgrid(tile.x * TILE_SIZE_PX + k, tile.y * TILE_SIZE_PX + k)
    lon, lat = global_px_to_lonlat(gx, gy, tile.z)
    cols, rows = world.lla_to_pixel(lat, lon)
    # The tile shows the ground at (true + offset): sample the world there.
    cols = cols + offset_en_m[0] / world.res_m
    rows = rows - offset_en_m[1] / world.res_m
    img = cv2.remap(world.image, cols.astype(np.float32), rows.astype(np.float32),
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32) / 255.0
    r = radiometry
    img = np.clip(r.gain * np.power(np.clip(img, 0, 1), r.gamma) + r.bias, 0, 1) * 255.0
    if r.blur_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), r.blur_sigma_px)
    if r.noise_sigma > 0:
        rng = rng or np.random.default_rng(0)
        img = img + rng.normal(0.0, r.noise_sigma, img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def honest_offset(rng: np.random.Generator, flight_bias_en_m: np.ndarray,
                  jitter_sigma_m: float = 0.3, max_m: float = 1.5) -> tuple[float, float]:
    """A flight's georeferencing error at one tile: its bias plus per-tile jitter, the norm
    clipped to `max_m`."""
    d = flight_bias_en_m + rng.normal(0.0, jitter_sigma_m, 2)
    norm = float(np.hypot(*d))
    if norm > max_m:
        d = d * (max_m / norm)
    return float(d[0]), float(d[1])


def poison_offset(rng: np.random.Generator, lo_m: float = 5.0, hi_m: float = 50.0
                  ) -> tuple[float, float]:
    """A shift of lo..hi metres in a random direction."""
    r = float(rng.uniform(lo_m, hi_m))
    a = float(rng.uniform(0, 2 * np.pi))
    return r * np.cos(a), r * np.sin(a)
