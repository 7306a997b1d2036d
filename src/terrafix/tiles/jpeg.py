"""JPEG checks and codecs for 256x256 grayscale map tiles (OpenCV's libjpeg-turbo).

A tile is accepted only if it is a complete JPEG (SOI at the start, EOI at the end: libjpeg
"decodes" truncated files by padding them with grey, so decoding alone does not catch a
half-written tile) that decodes to 256x256 pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from terrafix.geo.tiles import TILE_SIZE_PX
from terrafix.tiles.errors import InvalidTileError

_SOI = b"\xff\xd8\xff"
_EOI = b"\xff\xd9"


def decode_gray(data: bytes) -> np.ndarray | None:
    """JPEG bytes -> (256, 256) uint8 image, or None when not a complete 256x256 JPEG."""
    if not data.startswith(_SOI) or not data.rstrip(b"\x00").endswith(_EOI):
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None or img.shape != (TILE_SIZE_PX, TILE_SIZE_PX):
        return None
    return img


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the frame header (SOFn) of a JPEG, or None if there is none."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            return (int.from_bytes(data[i + 7:i + 9], "big"),
                    int.from_bytes(data[i + 5:i + 7], "big"))
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def check_tile_jpeg(data: bytes, what: str, *, decode: bool = True) -> None:
    """Raise InvalidTileError unless `data` is a complete JPEG of a 256x256 tile.

    The frame header must declare 256x256, the file must end with EOI, and (decode=True) the
    entropy-coded data must decode; the decode runs at 1/8 scale (libjpeg still walks every
    coefficient, skipping most of the inverse DCT), which is what provisioning can afford per
    tile. decode=False is for bytes this process has just produced with `encode_gray` (raster
    provisioning): decoding them again would only re-check libjpeg's own encoder, at about the
    cost of the encode. Reads decode fully and check the SHA-256 anyway.
    """
    ok = data.startswith(_SOI) and data.rstrip(b"\x00").endswith(_EOI) \
        and jpeg_size(data) == (TILE_SIZE_PX, TILE_SIZE_PX)
    if ok and decode:
        small = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        ok = small is not None and small.shape == (TILE_SIZE_PX // 8, TILE_SIZE_PX // 8)
    if not ok:
        head = data[:4].hex()
        raise InvalidTileError(f"{what}: expected a complete 256x256 JPEG, got {len(data)} bytes "
                               f"starting {head!r}")


def encode_gray(image: np.ndarray, quality: int = 90) -> bytes:
    """(256, 256) uint8 image -> baseline grayscale JPEG bytes."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise InvalidTileError(f"expected a 2-D uint8 image, got {image.dtype} {image.shape}")
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InvalidTileError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()
