"""How much of a fresh tile differs from the cached map tile (a hint for the ground's vote).

Block-wise normalised cross-correlation on a 8x8 grid of 32-px blocks: gain, gamma and sensor
differences between the map and the camera only scale and shift a block's grey levels, which
NCC ignores; new buildings, cleared fields or vehicles do not. A block is "changed" below
`ncc_changed`; blocks flat in either image (no texture to compare) are not counted.
score = changed / compared blocks, in [0, 1]; None when no block could be compared.
"""

from __future__ import annotations

import numpy as np

BLOCK_PX = 32
MIN_STD = 4.0


def change_score(tile: np.ndarray, reference: np.ndarray, *,
                 ncc_changed: float = 0.3) -> float | None:
    """tile, reference: (256, 256) uint8 of the same z/x/y."""
    if tile.shape != reference.shape:
        raise ValueError(f"tile {tile.shape} and reference {reference.shape} differ in shape")
    h, w = tile.shape
    a = tile.astype(np.float32).reshape(h // BLOCK_PX, BLOCK_PX, w // BLOCK_PX, BLOCK_PX)
    b = reference.astype(np.float32).reshape(a.shape)
    a = a - a.mean(axis=(1, 3), keepdims=True)
    b = b - b.mean(axis=(1, 3), keepdims=True)
    sa = np.sqrt((a * a).mean(axis=(1, 3)))
    sb = np.sqrt((b * b).mean(axis=(1, 3)))
    ok = (sa > MIN_STD) & (sb > MIN_STD)
    if not ok.any():
        return None
    ncc = (a * b).mean(axis=(1, 3)) / np.maximum(sa * sb, 1e-6)
    return float((ncc[ok] < ncc_changed).mean())
