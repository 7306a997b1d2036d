"""Fixtures of the ground-service tests: both metadata backends, a real TLS server on
loopback, registered aircraft and real JPEG tiles over the Longmont test area."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from terrafix.geo.tiles import TileId, lonlat_to_tile
from terrafix.ground.client import UploadClient, UploadTile, public_key_b64
from terrafix.ground.config import AreaConfig, GroundConfig, VotingConfig
from terrafix.ground.server import create_ground_app
from terrafix.ground.service import GroundService
from terrafix.tiles.jpeg import encode_gray
from terrafix.tiles.provider_server import serve_in_thread
from terrafix.tiles.tls import TlsFiles, make_test_pki
from tests.tiles.conftest import pg_dsn  # noqa: F401 - the shared PostgreSQL fixture

LON0, LAT0 = -105.14, 40.138
Z = 19
AREA = (-105.16, 40.12, -105.12, 40.16)


def texture(seed: int) -> np.ndarray:
    """(256, 256) uint8 with structure at several scales, different for every seed."""
    rng = np.random.default_rng(seed)
    img = np.zeros((256, 256), np.float32)
    for cells, weight in ((4, 0.4), (16, 0.35), (64, 0.25)):
        grid = rng.random((cells, cells), dtype=np.float32)
        img += weight * cv2.resize(grid, (256, 256), interpolation=cv2.INTER_CUBIC)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def tile_ids(n: int) -> list[TileId]:
    t0 = lonlat_to_tile(LON0, LAT0, Z)
    return [TileId(Z, t0.x + i % 8, t0.y + i // 8) for i in range(n)]


def upload_tiles(n: int, seed: int = 0, captured: datetime | None = None) -> list[UploadTile]:
    when = captured or datetime.now(UTC) - timedelta(minutes=30)
    return [UploadTile(encode_gray(texture(seed * 1000 + i)), t.z, t.x, t.y, when)
            for i, t in enumerate(tile_ids(n))]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def ground_config(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
                  ) -> Iterator[GroundConfig]:
    dsn = request.getfixturevalue("pg_dsn") if backend_kind == "postgres" else None
    schema = f"g_{uuid.uuid4().hex[:12]}"
    yield GroundConfig(root=tmp_path / "ground", dsn=dsn, schema=schema,
                       operator_tokens=(secrets.token_hex(16),),
                       provider_api_keys=(secrets.token_hex(16),),
                       voting=VotingConfig(), area=AreaConfig(bbox=AREA))
    if dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for s in (schema, f"{schema}_serving", f"{schema}_superseded"):
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(s)))


@dataclass
class Ground:
    svc: GroundService
    url: str
    tls: TlsFiles
    cfg: GroundConfig

    def device(self, name: str) -> Ed25519PrivateKey:
        key = Ed25519PrivateKey.generate()
        self.svc.ingest.register_device(public_key_b64(key), name)
        return key

    def client(self, key: Ed25519PrivateKey, flight: str, **kw: object) -> UploadClient:
        return UploadClient(self.url, key, flight, ca_file=self.tls.ca_cert, **kw)

    def blob_files(self) -> list[Path]:
        return sorted(p for p in (self.cfg.root / "blobs").rglob("*") if p.is_file())

    def written(self) -> tuple[int, int, int]:
        """(candidate rows, blob files, sessions) — all zero when nothing was written."""
        return (self.svc.db.candidate_count(), len(self.blob_files()),
                self.svc.db.session_count())


@contextlib.contextmanager
def running_ground(cfg: GroundConfig, tls: TlsFiles) -> Iterator[Ground]:
    svc = GroundService.open(cfg)
    try:
        with serve_in_thread(create_ground_app(svc), tls_cert=tls.server_cert,  # type: ignore[arg-type]
                             tls_key=tls.server_key) as url:
            yield Ground(svc, url, tls, cfg)
    finally:
        svc.close()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_pki(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def ground(ground_config: GroundConfig, tls_files: TlsFiles) -> Iterator[Ground]:
    with running_ground(ground_config, tls_files) as g:
        yield g


def scene(seed: int, size: int = 640) -> np.ndarray:
    """(size, size) uint8 ground with structure from 2 m to 100 m (0.23 m/px at z19)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    for cells, weight in ((6, 0.3), (24, 0.3), (96, 0.25), (320, 0.15)):
        grid = rng.random((cells, cells), dtype=np.float32)
        img += weight * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


M_PER_PX_Z19 = 0.2286  # z19 at the test latitude


def view(ground_img: np.ndarray, shift_en_m: tuple[float, float] = (0.0, 0.0),
         seed: int = 0, gain: float = 1.0) -> np.ndarray:
    """A (256, 256) honest-looking rendering of the centre of `ground_img`, showing the
    ground displaced by shift_en_m, with another exposure and sensor noise."""
    rng = np.random.default_rng(seed)
    c = ground_img.shape[0] / 2 - 128
    dx = shift_en_m[0] / M_PER_PX_Z19
    dy = -shift_en_m[1] / M_PER_PX_Z19
    m = np.float32([[1, 0, -(c + dx)], [0, 1, -(c + dy)]])
    out = cv2.warpAffine(ground_img.astype(np.float32), m, (256, 256), flags=cv2.INTER_LINEAR)
    out = out * gain + rng.normal(0, 3.0, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)
