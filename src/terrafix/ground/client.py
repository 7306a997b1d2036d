"""HTTP clients of the ground service: the operator's (devices) and a minimal upload client.

`UploadClient` speaks upload/protocol.py and nothing more: one session, signed batches, the
outcomes as the server sent them. It has no retry policy or attempt budgets (the aircraft's
uploader, terrafix.upload, has those); the tests and bench/ground.py drive it directly.
TLS is verified against the CA given (never switched off).
"""

from __future__ import annotations

import hashlib
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terrafix.ground.errors import GroundError
from terrafix.upload.protocol import (
    API_PREFIX,
    BatchManifest,
    SessionCertificate,
    TileEntry,
    b64,
    close_body,
    fingerprint,
    raw_public_bytes,
)


class GroundClientError(GroundError):
    """The ground service refused or could not be reached; status 0 = no HTTP answer."""

    def __init__(self, message: str, status: int = 0, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _client(base_url: str, ca_file: str | Path | None, headers: dict[str, str],
            timeout_s: float) -> httpx.Client:
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context(cafile=str(ca_file))
    return httpx.Client(base_url=base_url.rstrip("/"), verify=verify, headers=headers,
                        timeout=timeout_s)


def _check(resp: httpx.Response, what: str) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        doc = {}
    if resp.status_code >= 400:
        raise GroundClientError(f"{what}: HTTP {resp.status_code} {doc.get('error')}: "
                                f"{doc.get('detail', resp.text[:200])}", resp.status_code,
                                doc.get("error"))
    return doc


class OperatorClient:
    def __init__(self, base_url: str, token: str, *, ca_file: str | Path | None = None,
                 timeout_s: float = 30.0) -> None:
        self._c = _client(base_url, ca_file, {"Authorization": f"Bearer {token}"}, timeout_s)

    def close(self) -> None:
        self._c.close()

    def add_device(self, name: str, public_key: str) -> dict[str, Any]:
        return _check(self._c.post("/v1/admin/devices",
                                   json={"name": name, "public_key": public_key}), "add device")

    def list_devices(self) -> list[dict[str, Any]]:
        return _check(self._c.get("/v1/admin/devices"), "list devices")["devices"]

    def revoke_device(self, fp: str, reason: str) -> dict[str, Any]:
        return _check(self._c.post(f"/v1/admin/devices/{fp}/revoke", json={"reason": reason}),
                      "revoke device")

    def votes(self) -> dict[str, Any]:
        return _check(self._c.get("/v1/admin/votes"), "vote counts")


@dataclass(frozen=True, slots=True)
class UploadTile:
    """A tile to upload: bytes and what the manifest says about them."""

    jpeg: bytes
    z: int
    x: int
    y: int
    captured_utc: datetime
    sigma_m: float = 1.0
    trust: str = "normal"

    def entry(self) -> TileEntry:
        return TileEntry(hashlib.sha256(self.jpeg).hexdigest(), self.z, self.x, self.y,
                         self.captured_utc, self.sigma_m, self.trust, len(self.jpeg))


class UploadClient:
    """One upload session of one flight (see module docstring)."""

    def __init__(self, base_url: str, device_key: Ed25519PrivateKey, flight_id: str, *,
                 ca_file: str | Path | None = None, timeout_s: float = 60.0,
                 not_before: datetime | None = None, valid_for: timedelta = timedelta(hours=6)
                 ) -> None:
        self._c = _client(base_url, ca_file, {"User-Agent": "terrafix-ground-client/1"},
                          timeout_s)
        self.device_key = device_key
        self.flight_id = flight_id
        self.session_key = Ed25519PrivateKey.generate()
        now = datetime.now(UTC)
        self.certificate = SessionCertificate(
            fingerprint(device_key.public_key()), self.session_key.public_key(), flight_id,
            not_before or now - timedelta(hours=2), (not_before or now) + valid_for)
        self.session_id: str | None = None
        self._seq = 0

    def close(self) -> None:
        self._c.close()

    def __enter__(self) -> UploadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, body: dict[str, Any] | None = None) -> str:
        resp = self._c.post(f"{API_PREFIX}/sessions",
                            json=body or self.certificate.sign(self.device_key))
        self.session_id = _check(resp, "open session")["session_id"]
        return self.session_id

    def batch_parts(self, tiles: list[UploadTile], seq: int | None = None
                    ) -> tuple[bytes, str, list[tuple[str, tuple[str, bytes, str]]]]:
        """(manifest bytes, signature, multipart files) of a batch (tests tamper with them)."""
        assert self.session_id is not None, "open() first"
        if seq is None:
            seq = self._seq
            self._seq += 1
        manifest = BatchManifest(self.session_id, self.flight_id, seq,
                                 tuple(t.entry() for t in tiles))
        body, sig = manifest.signed_parts(self.session_key)
        files = [("tile", (f"{hashlib.sha256(t.jpeg).hexdigest()}.jpg", t.jpeg, "image/jpeg"))
                 for t in tiles]
        return body, sig, files

    def post_parts(self, manifest: bytes, signature: str,
                   files: list[tuple[str, tuple[str, bytes, str]]],
                   session_id: str | None = None) -> httpx.Response:
        sid = session_id or self.session_id
        parts = [("manifest", ("manifest.json", manifest, "application/json")), *files]
        return self._c.post(f"{API_PREFIX}/sessions/{sid}/batches", data={"signature": signature},
                            files=parts)

    def send(self, tiles: list[UploadTile], seq: int | None = None) -> list[dict[str, Any]]:
        """Send one batch; the server's outcomes, one per tile."""
        resp = self.post_parts(*self.batch_parts(tiles, seq))
        return _check(resp, f"batch of {len(tiles)} tiles")["outcomes"]

    def close_session(self, signed: bool = True) -> dict[str, Any]:
        assert self.session_id is not None
        body = close_body(self.session_id, self.session_key) if signed else {}
        return _check(self._c.post(f"{API_PREFIX}/sessions/{self.session_id}/close",
                                   json=body), "close session")


def new_flight_id() -> str:
    return f"flight-{uuid.uuid4().hex[:12]}"


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return b64(raw_public_bytes(key.public_key()))
