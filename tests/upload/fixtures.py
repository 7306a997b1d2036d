"""Flight stores of synthetic ~20 KB tiles and a TLS ground double, for the upload tests and
the benchmark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from terrafix.geo.tiles import TileId
from terrafix.mapping.flight_store import open_flight_store, put_flight_tile
from terrafix.mapping.provenance import TileProvenance

T0 = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)


def tile_image(rng: np.random.Generator) -> np.ndarray:
    """A 256x256 textured image whose JPEG is ~20 KB (blurred noise)."""
    img = rng.normal(128, 60, (256, 256)).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 0.95)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_flight_store(root: Path, flight_id: str, n: int, *, seed: int = 0,
                      low_trust_every: int = 0) -> list[TileId]:
    """A flight store with n distinct tiles at z19 (every k-th LOW_TRUST)."""
    rng = np.random.default_rng(seed)
    tiles = []
    with open_flight_store(root) as store:
        for i in range(n):
            t = TileId(19, 100_000 + i % 50, 200_000 + i // 50)
            low = low_trust_every and i % low_trust_every == 0
            prov = TileProvenance(flight_id, T0 + timedelta(seconds=i), 4.0 if low else 2.0,
                                  "low" if low else "normal",
                                  ((T0 + timedelta(seconds=i)).isoformat(),), 0.1)
            put_flight_tile(store, t, tile_image(rng), prov)
            tiles.append(t)
    return tiles
