"""Photometric effects of a real navigation camera, applied to a rendered frame.

Why: the matcher must cope with what a small industrial camera delivers — lens vignetting,
auto-exposure changes, motion/defocus blur, sensor noise, lossy compression on the way from
the camera, haze and cloud shadows. Every effect is switchable (0/None = off) and drawn from the
caller's seeded generator, so datasets stay deterministic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

from terrafix.sim.errors import SimError


@dataclass(frozen=True, slots=True)
class ImageEffects:
    """Effect parameters. Ranges (lo, hi) are sampled uniformly per frame.

    vignetting: relative darkening at the image corners (cos^4-like falloff), 0..0.9.
    gain, gamma: exposure gain and gamma ranges. blur_sigma_px: Gaussian blur sigma range.
    noise_sigma: sensor noise std in grey levels. jpeg_quality: JPEG round trip, None = off.
    haze: uniform veil 0..0.9 (contrast loss). cloud_cover: fraction of the frame under cloud
    or cloud shadow patches, 0..0.9.
    """

    vignetting: float = 0.25
    gain: tuple[float, float] = (0.85, 1.15)
    gamma: tuple[float, float] = (0.85, 1.15)
    blur_sigma_px: tuple[float, float] = (0.0, 0.8)
    noise_sigma: float = 2.0
    jpeg_quality: int | None = 90
    haze: float = 0.0
    cloud_cover: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.vignetting <= 0.9):
            raise SimError(f"vignetting must be 0..0.9, got {self.vignetting}")
        for name in ("gain", "gamma", "blur_sigma_px"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise SimError(f"{name} must be a range 0 <= lo <= hi, got {(lo, hi)}")
        if self.jpeg_quality is not None and not (10 <= self.jpeg_quality <= 100):
            raise SimError(f"jpeg_quality must be 10..100 or None, got {self.jpeg_quality}")

    @staticmethod
    def none() -> ImageEffects:
        """Every effect off: the rendered frame is the pure geometric warp."""
        return ImageEffects(0.0, (1.0, 1.0), (1.0, 1.0), (0.0, 0.0), 0.0, None, 0.0, 0.0)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@lru_cache(maxsize=8)
def _vignette_mask(height: int, width: int, strength: float) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((x - (width - 1) / 2) ** 2 + (y - (height - 1) / 2) ** 2) \
        / (((width - 1) / 2) ** 2 + ((height - 1) / 2) ** 2)
    mask = 1.0 - strength * r2 ** 1.5
    mask.flags.writeable = False
    return mask


def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int
                  ) -> np.ndarray:
    """Low-frequency random field in [0, 1] of shape (H, W) (bicubic-upsampled noise)."""
    coarse = rng.random((cells, max(2, int(cells * width / height)))).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)


@lru_cache(maxsize=4)
def _noise_bank(n: int) -> np.ndarray:
    """A fixed bank of n + 65536 standard-normal float32 samples. A frame's sensor noise is a
    window of it at a random offset: the same statistics as fresh noise at a fraction of the
    cost of drawing 1.2 M normals per frame (the offset comes from the frame's generator)."""
    bank = np.random.default_rng(0x5EED).standard_normal(n + 65536, dtype=np.float32)
    bank.flags.writeable = False
    return bank


def _gain_gamma_lut(gain: float, gamma: float) -> np.ndarray:
    x = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(255.0 * np.clip(x * gain, 0.0, 1.0) ** gamma + 0.5, 0, 255).astype(np.uint8)


def apply_effects(image: np.ndarray, effects: ImageEffects, rng: np.random.Generator
                  ) -> np.ndarray:
    """Apply `effects` to an (H, W) uint8 frame; returns a new (H, W) uint8 frame.

    Order follows the light path: cloud/haze in the atmosphere, exposure (gain, gamma), lens
    vignetting and blur, sensor noise, then JPEG compression in the camera."""
    h, w = image.shape
    img = image
    if effects.cloud_cover > 0 or effects.haze > 0:
        f = image.astype(np.float32)
        if effects.cloud_cover > 0:
            field = _smooth_field(rng, h, w, 6)
            thr = np.quantile(field, 1.0 - effects.cloud_cover)
            cover = np.clip((field - thr) / 0.08, 0.0, 1.0)
            if rng.random() < 0.5:  # bright cloud
                f = f * (1 - cover) + (225.0 + 20.0 * field) * cover
            else:  # cloud shadow
                f = f * (1 - 0.55 * cover)
        if effects.haze > 0:
            f = f * (1.0 - effects.haze) + 200.0 * effects.haze
        img = np.clip(f + 0.5, 0, 255).astype(np.uint8)
    gain = rng.uniform(*effects.gain)
    gamma = rng.uniform(*effects.gamma)
    img = cv2.LUT(img, _gain_gamma_lut(gain, gamma))
    sigma = rng.uniform(*effects.blur_sigma_px)
    if sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if effects.vignetting > 0 or effects.noise_sigma > 0:
        f = img.astype(np.float32)
        if effects.vignetting > 0:
            f *= _vignette_mask(h, w, effects.vignetting)
        if effects.noise_sigma > 0:
            bank = _noise_bank(h * w)
            off = int(rng.integers(0, 65536))
            f += bank[off:off + h * w].reshape(h, w) * np.float32(effects.noise_sigma)
        f += np.float32(0.5)
        np.clip(f, 0, 255, out=f)
        img = f.astype(np.uint8)
    if effects.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, effects.jpeg_quality])
        if not ok:
            raise SimError("JPEG encoding failed")
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return img


def blackout_frame(height: int, width: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A frame without any ground texture: full cloud (bright, featureless) or black lens."""
    if kind == "cloud":
        field = _smooth_field(rng, height, width, 3)
        img = 215.0 + 25.0 * field + rng.standard_normal((height, width)) * 1.5
    elif kind == "black":
        img = 4.0 + rng.standard_normal((height, width)) * 1.5
    else:
        raise SimError(f"blackout kind must be 'cloud' or 'black', got {kind!r}")
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
