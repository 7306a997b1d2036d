"""A ground service inside the calling process, for the demo loop and the tests.

    with embedded_ground(build / "ground", base=map_store, area_bbox=bbox) as g:
        dev = g.register_device("aircraft-1")       # device key made and registered
        ... upload with g.url, g.ca_file and dev.private_key ...
        g.wait_votes(); print(g.counts())          # promoted / conflict / pending

SQLite, TLS on loopback with a throw-away CA (`tiles.tls.make_test_pki`), credentials made
up per start: nothing to start or configure by hand. `counts()` is what the demo reports.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terrafix.ground.config import AreaConfig, GroundConfig, VotingConfig
from terrafix.ground.records import DeviceRecord
from terrafix.ground.server import create_ground_app
from terrafix.ground.service import GroundService
from terrafix.ground.serving import copy_from_store, seed_base
from terrafix.tiles import TileStore
from terrafix.tiles.provider_server import serve_in_thread
from terrafix.tiles.tls import TlsFiles, make_test_pki
from terrafix.upload.protocol import b64, raw_public_bytes


@dataclass(frozen=True, slots=True)
class VoteCounts:
    promoted: int
    conflict: int
    pending: int

    def as_dict(self) -> dict[str, int]:
        return {"promoted": self.promoted, "conflict": self.conflict, "pending": self.pending}


@dataclass
class EmbeddedGround:
    """A running ground service: its URL, the CA to verify it with, credentials."""

    service: GroundService
    url: str
    tls: TlsFiles
    provider_api_key: str
    operator_token: str
    devices: dict[str, tuple[Ed25519PrivateKey, DeviceRecord]] = field(default_factory=dict)

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_cert

    def register_device(self, name: str, key: Ed25519PrivateKey | None = None
                        ) -> tuple[Ed25519PrivateKey, DeviceRecord]:
        """Register (and if needed make) an aircraft's device key, as the operator would."""
        key = key or Ed25519PrivateKey.generate()
        rec, _ = self.service.ingest.register_device(
            b64(raw_public_bytes(key.public_key())), name)
        self.devices[name] = (key, rec)
        return key, rec

    def wait_votes(self, timeout_s: float = 120.0) -> bool:
        return self.service.voter.wait_idle(timeout_s)

    def counts(self) -> VoteCounts:
        c = self.service.vote_counts()
        return VoteCounts(c["TRUSTED"], c["CONFLICT"], c["PENDING"])


@contextmanager
def embedded_ground(root: str | Path, *, base: TileStore | None = None,
                    area_bbox: tuple[float, float, float, float] | None = None,
                    min_flights: int = 2, min_devices: int = 2, fsync: bool = True
                    ) -> Iterator[EmbeddedGround]:
    """Start a ground service under `root` (SQLite, TLS on 127.0.0.1, a free port), seeded
    with every tile of `base` as base imagery; stops it on exit."""
    root = Path(root)
    tls = make_test_pki(root / "tls")
    api_key = secrets.token_urlsafe(24)
    op_token = secrets.token_urlsafe(24)
    cfg = GroundConfig(root=root, operator_tokens=(op_token,), provider_api_keys=(api_key,),
                       voting=VotingConfig(min_flights=min_flights, min_devices=min_devices),
                       area=AreaConfig(bbox=area_bbox), fsync=fsync)
    svc = GroundService.open(cfg)
    try:
        if base is not None:
            seed_base(svc.serving, copy_from_store(base))
        app = create_ground_app(svc)
        with serve_in_thread(app, tls_cert=tls.server_cert,  # type: ignore[arg-type]
                             tls_key=tls.server_key) as url:
            yield EmbeddedGround(svc, url, tls, api_key, op_token)
    finally:
        svc.close()
