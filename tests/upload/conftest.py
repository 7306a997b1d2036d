"""A TLS ground double on loopback, a device key registered on it, a flight store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from terrafix.tiles.provider_server import serve_in_thread
from terrafix.tiles.tls import TlsFiles, make_test_pki
from terrafix.upload.config import UploadConfig
from terrafix.upload.keys import create_device_key, load_device_key

from .ground_double import GroundDouble


@dataclass
class Ground:
    double: GroundDouble
    url: str
    pki: TlsFiles
    key_path: Path

    def config(self, **retry) -> UploadConfig:
        base = {"max_in_call_retries": 2, "backoff_base_s": 2.0, "backoff_cap_s": 30.0,
                "max_per_tile_attempts": 3}
        base.update(retry)
        batch = base.pop("batch_tiles", 8)
        return UploadConfig(url=self.url, ca_cert=self.pki.ca_cert, device_key=self.key_path,
                            batch_tiles=batch, request_timeout_s=10.0, retry=base)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TlsFiles:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def ground(tmp_path, pki) -> Iterator[Ground]:
    double = GroundDouble(tmp_path / "ground")
    key_path = tmp_path / "keys" / "device_ed25519.pem"
    create_device_key(key_path)
    double.register(load_device_key(key_path).public_key())
    with serve_in_thread(double.app, tls_cert=pki.server_cert, tls_key=pki.server_key) as url:
        yield Ground(double, url, pki, key_path)
