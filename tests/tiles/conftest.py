"""Fixtures of the tile-cache tests: both metadata backends, real JPEG tiles.

The PostgreSQL half needs the throw-away server of `scripts/ensure_postgres.sh`. The fixture
runs that script itself (it is idempotent and serialises concurrent callers with a lock), so
the tests work under `scripts/test.sh`, plain pytest and pytest-xdist alike; if the server
cannot be started the PostgreSQL tests FAIL with the script's reason, they are never skipped.
Each test gets its own PostgreSQL schema, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest
from psycopg import sql

from terrafix.geo.tiles import TileId, lonlat_to_tile
from terrafix.tiles import NewTile, TileStore, open_store
from terrafix.tiles.jpeg import encode_gray

REPO = Path(__file__).resolve().parents[2]
# Longmont, Colorado: where the dgsamples imagery is.
LON0, LAT0 = -105.14, 40.138
Z = 18


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    script = REPO / "scripts" / "ensure_postgres.sh"
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=300,
                          check=False)
    if proc.returncode != 0:
        pytest.fail(f"PostgreSQL for the tile-store tests could not be started by {script}:\n"
                    f"{proc.stderr}{proc.stdout}", pytrace=False)
    dsn = proc.stdout.strip().splitlines()[-1]
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute("SELECT postgis_version()")
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL at {dsn} is not usable: {exc}", pytrace=False)
    return dsn


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


class StoreFactory:
    """Opens the store under test (same root, same PostgreSQL schema) as often as needed."""

    def __init__(self, kind: str, root: Path, dsn: str | None) -> None:
        self.kind = kind
        self.root = root
        self.dsn = dsn
        self.schema = f"t_{uuid.uuid4().hex[:16]}" if dsn else None
        self._opened: list[TileStore] = []

    def open_kwargs(self) -> dict:
        return {"dsn": self.dsn, "schema": self.schema} if self.dsn else {}

    def __call__(self, **kwargs: object) -> TileStore:
        store = open_store(self.root, **{**self.open_kwargs(), **kwargs})  # type: ignore[arg-type]
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for s in self._opened:
            with contextlib.suppress(Exception):  # already closed by the test
                s.close()
        if self.dsn:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(self.schema)))


@pytest.fixture
def stores(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
           ) -> Iterator[StoreFactory]:
    dsn = request.getfixturevalue("pg_dsn") if backend_kind == "postgres" else None
    factory = StoreFactory(backend_kind, tmp_path / "cache", dsn)
    yield factory
    factory.close_all()


def texture(seed: int) -> np.ndarray:
    """(256, 256) uint8 image with structure at several scales (JPEG-compressible like
    imagery, and different for every seed)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((256, 256), np.float32)
    for cells, weight in ((4, 0.5), (16, 0.3), (64, 0.2)):
        grid = rng.random((cells, cells), dtype=np.float32)
        img += weight * cv2.resize(grid, (256, 256), interpolation=cv2.INTER_CUBIC)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def jpeg(seed: int) -> bytes:
    return encode_gray(texture(seed))


def block_of_tiles(nx: int, ny: int, z: int = Z, lon: float = LON0,
                   lat: float = LAT0) -> list[TileId]:
    t0 = lonlat_to_tile(lon, lat, z)
    return [TileId(z, t0.x + i, t0.y + j) for j in range(ny) for i in range(nx)]


def new_tiles(tiles: list[TileId], seed0: int = 0, capture: date = date(2024, 5, 1),
              source: str = "test") -> list[NewTile]:
    return [NewTile(t, jpeg(seed0 + i), capture, source) for i, t in enumerate(tiles)]


TileMaker = Callable[[list[TileId]], list[NewTile]]
