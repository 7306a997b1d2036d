"""The upload protocol between the aircraft's uploader and the ground service (version 1).

Both ends import this module, so the bytes that are signed on the aircraft are the bytes that
are verified on the ground: one canonical JSON form, one certificate layout, one batch manifest
layout. `docs/upload-protocol.md` is the prose version of the same thing.

Trust chain (REQUIREMENTS U4):
    device key (long-term Ed25519, one per aircraft, public half registered on the ground)
      └─ signs a SessionCertificate: a fresh per-session Ed25519 public key, the flight id,
         a validity window
           └─ the session key signs every BatchManifest (the exact manifest bytes sent)
                └─ each tile part must hash (SHA-256) to its manifest entry

Wire (HTTPS only; JSON bodies UTF-8):
    POST {API}/sessions                       {"certificate": {...}, "signature": b64}
        -> 201 {"session_id": str, "expires_utc": iso}
    POST {API}/sessions/{session_id}/batches  multipart/form-data:
          part "manifest"  (application/json): canonical_bytes(BatchManifest.to_dict())
          part "signature" (text/plain): b64 Ed25519 signature of the manifest part's bytes
          one part per tile, field name "tile", filename "<sha256>.jpg" (image/jpeg)
        -> 200 {"outcomes": [{"sha256": str, "status": TileOutcomeStatus, "reason": str|null}]}
           A tile with no outcome, or with status "retry", was not stored: send it again.
    POST {API}/sessions/{session_id}/close    {} -> 200 {"accepted": n, "duplicate": n, ...}
          (with {"signature": b64 session-key signature of close_message(session_id)} the
          ground also ends the session: later batches are refused with "session_closed";
          without it the call only reports, and writes nothing)
Errors: a JSON body {"error": ErrorCode, "detail": human-readable reason}; 400 malformed,
401 unknown device / bad signature / expired session, 403 revoked device, 413 too large,
429 or 503 with Retry-After (seconds or HTTP-date), other 5xx are transient.

Plausibility of a tile (refused per tile, status "rejected", with the reason): zoom within the
ground's range, the tile inside its service area, capture time within the certificate's
[not_before, expires] window (and not in the future), beyond a clock skew the ground allows
(default 300 s). So the certificate window must cover the flight the tiles were made in, not
only the upload (the per-flight key of U2/U4 is certified for the flight and its upload).

Identity of a tile is its content hash: the ground stores a hash once; a re-sent hash is a
`duplicate`, which the uploader treats like `accepted` (it is safely on the ground).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from terrafix.geo.tiles import MAX_ZOOM

PROTOCOL_VERSION = 1
API_PREFIX = "/v1/upload"
MAX_TILES_PER_BATCH = 64
MAX_TILE_BYTES = 512 * 1024
MAX_MANIFEST_BYTES = 256 * 1024
MAX_BATCH_SEQ = (1 << 31) - 1  # the ground stores it as a 32-bit INTEGER


class ProtocolError(ValueError):
    """A message that does not follow this protocol (the text names the field and the value)."""


class TileOutcomeStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"  # final for this tile's bytes: counts against its attempt budget
    RETRY = "retry"  # not stored for a transient reason: send it again


class ErrorCode(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_DEVICE = "unknown_device"
    REVOKED_DEVICE = "revoked_device"
    BAD_SIGNATURE = "bad_signature"
    SESSION_EXPIRED = "session_expired"
    UNKNOWN_SESSION = "unknown_session"
    TOO_LARGE = "too_large"
    UNAUTHORIZED = "unauthorized"  # operator API without a valid operator credential
    BUSY = "busy"
    SESSION_CLOSED = "session_closed"  # the session was ended by a signed close
    NOT_FOUND = "not_found"  # operator API: no such tile or vote


# --- canonical bytes, keys, signatures ------------------------------------------------------
def canonical_bytes(content: dict[str, Any]) -> bytes:
    """The one byte form that is signed: sorted keys, no spaces, ASCII."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False).encode("ascii")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ProtocolError(f"{what} is not base64: {text[:40]!r}") from exc


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_from_raw(raw: bytes, what: str) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ProtocolError(f"{what} must be 32 raw Ed25519 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """Key id used everywhere (registry, certificates, logs): first 32 hex digits of the
    SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(raw_public_bytes(key)).hexdigest()[:32]


def verify(key: Ed25519PublicKey, signature_b64: str, message: bytes, what: str) -> None:
    """Raise ProtocolError unless `signature_b64` is `key`'s signature of `message`."""
    try:
        key.verify(unb64(signature_b64, f"{what} signature"), message)
    except InvalidSignature:
        raise ProtocolError(f"{what}: signature does not verify") from None


# --- values read from the wire -------------------------------------------------------------
MAX_WIRE_INT = (1 << 63) - 1
"""Largest integer taken from a message by default: what both ground backends store (BIGINT);
a larger one would fail at the database, which the ground takes for a transient error."""


def wire_int(value: Any, what: str, *, low: int = 0, high: int = MAX_WIRE_INT) -> int:
    """`value` if it is a JSON integer in [low, high], else ProtocolError naming it.

    A JSON `true`/`false` is refused: Python's bool is an int (True == 1), so a plain
    isinstance or == check would take `"v": true` for version 1. So is 1.0 (a JSON number that
    is not an integer)."""
    if type(value) is not int:
        raise ProtocolError(f"{what} must be an integer, got {type(value).__name__} {value!r:.60}")
    if not low <= value <= high:
        raise ProtocolError(f"{what} must be an integer in {low}..{high}, got {value}")
    return value


def wire_number(value: Any, what: str, *, low: float, high: float) -> float:
    """`value` as a float if it is a finite JSON number (not a bool) in [low, high]."""
    if type(value) not in (int, float) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ProtocolError(f"{what} must be a finite number in {low:g}..{high:g}, got "
                            f"{value!r:.60}")
    return float(value)


def check_version(d: dict[str, Any], what: str) -> None:
    """Refuse a message whose "v" is not exactly the integer PROTOCOL_VERSION."""
    v = d.get("v")
    if type(v) is not int or v != PROTOCOL_VERSION:
        raise ProtocolError(f"{what} version {v!r:.60} ({type(v).__name__}), expected the "
                            f"integer {PROTOCOL_VERSION}")


def _no_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not a JSON number")


def loads_wire_json(body: bytes | str, what: str) -> Any:
    """Parse a message body as strict JSON: NaN/Infinity (which Python's json reads by
    default, and which canonical_bytes cannot write back) are refused, and so is nesting too
    deep for the parser (RecursionError), each as ProtocolError naming `what`."""
    try:
        return json.loads(body, parse_constant=_no_constant)
    except ProtocolError as exc:
        raise ProtocolError(f"{what} is not JSON: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what} is not JSON: {exc}") from exc
    except RecursionError:
        raise ProtocolError(f"{what} is not JSON this parser reads: nested too deeply") from None


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        raise ProtocolError(f"timestamp {t!r} has no time zone (UTC expected)")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: Any, what: str) -> datetime:
    if not isinstance(text, str):
        raise ProtocolError(f"{what} must be an ISO-8601 UTC string, got {text!r}")
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProtocolError(f"{what} is not ISO-8601: {text!r}") from exc
    if t.tzinfo is None:
        raise ProtocolError(f"{what} has no time zone: {text!r}")
    return t.astimezone(UTC)


# --- session certificate ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionCertificate:
    """A per-session key, certified by the aircraft's device key (REQUIREMENTS U4)."""

    device_fingerprint: str
    session_public_key: Ed25519PublicKey
    flight_id: str
    not_before_utc: datetime
    expires_utc: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "device": self.device_fingerprint,
                "session_key": b64(raw_public_bytes(self.session_public_key)),
                "flight_id": self.flight_id, "not_before": _iso(self.not_before_utc),
                "expires": _iso(self.expires_utc)}

    def sign(self, device_key: Ed25519PrivateKey) -> dict[str, Any]:
        """The body of `POST {API}/sessions`."""
        body = self.to_dict()
        return {"certificate": body, "signature": b64(device_key.sign(canonical_bytes(body)))}

    @property
    def session_fingerprint(self) -> str:
        return fingerprint(self.session_public_key)

    @classmethod
    def from_dict(cls, d: Any) -> SessionCertificate:
        if not isinstance(d, dict):
            raise ProtocolError(f"certificate must be an object, got {type(d).__name__}")
        check_version(d, "certificate")
        unknown = sorted(str(k) for k in set(d) - _CERTIFICATE_FIELDS)
        if unknown:  # signed bytes are re-serialised: only the fields this version defines
            raise ProtocolError(f"certificate has unknown fields {unknown[:5]}; version "
                                f"{PROTOCOL_VERSION} has {sorted(_CERTIFICATE_FIELDS)}")
        try:
            device, key, flight = d["device"], d["session_key"], d["flight_id"]
        except KeyError as exc:
            raise ProtocolError(f"certificate lacks {exc.args[0]!r}") from None
        if not (isinstance(device, str) and isinstance(key, str) and isinstance(flight, str)):
            raise ProtocolError("certificate device, session_key and flight_id must be strings")
        return cls(device, public_key_from_raw(unb64(key, "session_key"), "session_key"),
                   flight, parse_iso(d.get("not_before"), "not_before"),
                   parse_iso(d.get("expires"), "expires"))


_CERTIFICATE_FIELDS = frozenset({"v", "device", "session_key", "flight_id", "not_before",
                                 "expires"})


def close_message(session_id: str) -> bytes:
    """What the session key signs to end its session (`POST .../close` with a signature)."""
    return canonical_bytes({"v": PROTOCOL_VERSION, "close": session_id})


def close_body(session_id: str, session_key: Ed25519PrivateKey) -> dict[str, Any]:
    """The body of a signed `POST {API}/sessions/{session_id}/close`."""
    return {"signature": b64(session_key.sign(close_message(session_id)))}


# --- batch manifest -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TileEntry:
    """One tile of a batch. sigma_m: horizontal 1-sigma of the pose it was made from;
    trust: "normal" (sigma <= 3 m) or "low" (3-5 m); frames: capture times (UTC ISO) of
    the frames merged into it; change_score: 0 (same as the cached map) .. 1 (all changed)."""

    sha256: str
    z: int
    x: int
    y: int
    captured_utc: datetime
    sigma_m: float
    trust: str
    size_bytes: int
    change_score: float | None = None
    frames: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "z": self.z, "x": self.x, "y": self.y,
                "captured": _iso(self.captured_utc), "sigma_m": float(self.sigma_m),
                "trust": self.trust, "size": self.size_bytes,
                "change_score": None if self.change_score is None else float(self.change_score),
                "frames": list(self.frames)}

    @classmethod
    def from_dict(cls, d: Any) -> TileEntry:
        if not isinstance(d, dict):
            raise ProtocolError(f"tile entry must be an object, got {type(d).__name__}")
        try:
            sha, z, x, y, size = d["sha256"], d["z"], d["x"], d["y"], d["size"]
            sigma, trust = d["sigma_m"], d["trust"]
        except KeyError as exc:
            raise ProtocolError(f"tile entry lacks {exc.args[0]!r}") from None
        if not (isinstance(sha, str) and len(sha) == 64
                and all(c in "0123456789abcdef" for c in sha)):
            raise ProtocolError(f"tile sha256 must be 64 lowercase hex digits, got {sha!r}")
        z = wire_int(z, "tile z", high=MAX_ZOOM)
        x = wire_int(x, "tile x", high=(1 << z) - 1)
        y = wire_int(y, "tile y", high=(1 << z) - 1)
        size = wire_int(size, "tile size", high=MAX_TILE_BYTES)
        sigma = wire_number(sigma, "tile sigma_m", low=0.0, high=1e6)
        if trust not in ("normal", "low"):
            raise ProtocolError(f"tile trust must be 'normal' or 'low', got {trust!r}")
        change = d.get("change_score")
        if change is not None:
            change = wire_number(change, "tile change_score", low=0.0, high=1.0)
        frames = d.get("frames", [])
        if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
            raise ProtocolError("tile frames must be a list of strings")
        return cls(sha, z, x, y, parse_iso(d.get("captured"), "tile captured"), sigma,
                   trust, size, change, tuple(frames))


@dataclass(frozen=True, slots=True)
class BatchManifest:
    """What a batch claims; signed by the session key over `canonical_bytes(to_dict())`."""

    session_id: str
    flight_id: str
    batch_seq: int
    tiles: tuple[TileEntry, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "session_id": self.session_id,
                "flight_id": self.flight_id, "batch_seq": self.batch_seq,
                "tiles": [t.to_dict() for t in self.tiles]}

    def signed_parts(self, session_key: Ed25519PrivateKey) -> tuple[bytes, str]:
        """(manifest part bytes, signature part text) for the multipart body."""
        body = canonical_bytes(self.to_dict())
        return body, b64(session_key.sign(body))

    @classmethod
    def parse(cls, body: bytes) -> BatchManifest:
        if len(body) > MAX_MANIFEST_BYTES:
            raise ProtocolError(f"manifest of {len(body)} bytes, at most {MAX_MANIFEST_BYTES}")
        d = loads_wire_json(body, "manifest")
        if not isinstance(d, dict):
            raise ProtocolError(f"manifest must be an object, got {type(d).__name__}")
        check_version(d, "manifest")
        tiles = d.get("tiles")
        if not isinstance(tiles, list) or len(tiles) > MAX_TILES_PER_BATCH:
            raise ProtocolError(f"manifest tiles must be a list of at most "
                                f"{MAX_TILES_PER_BATCH} entries")
        seq = wire_int(d.get("batch_seq"), "manifest batch_seq", high=MAX_BATCH_SEQ)
        sid, fid = d.get("session_id"), d.get("flight_id")
        if not isinstance(sid, str) or not isinstance(fid, str):
            raise ProtocolError("manifest session_id and flight_id must be strings")
        entries = tuple(TileEntry.from_dict(t) for t in tiles)
        if len({t.sha256 for t in entries}) != len(entries):
            raise ProtocolError("manifest lists the same sha256 twice")
        return cls(sid, fid, seq, entries)
