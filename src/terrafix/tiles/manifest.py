"""Signed flight manifest: what the cache must hold for one flight, and the pre-take-off check.

The manifest names the flight, its take-off origin, the route corridor and, for every tile the
corridor needs at the flight zoom, the tile's SHA-256. It is signed with Ed25519 by the
provisioning station; the aircraft verifies it against the station's public key before
take-off. `verify_cache` refuses (returns problems) when the signature is wrong, when the
corridor needs a tile the manifest does not list, when a listed tile is absent, altered or
corrupt, or when the freshness rules reject it: any cache miss on the planned route refuses
take-off. The signature covers a canonical JSON encoding (sorted keys, no spaces), so the file
can be pretty-printed without breaking it.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import shapely
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from shapely.geometry.base import BaseGeometry

from terrafix.geo.tiles import TileId
from terrafix.tiles.errors import CacheMissError, ManifestError
from terrafix.tiles.geometry import tiles_covering
from terrafix.tiles.records import FreshnessLabel
from terrafix.tiles.store import TileStore

FORMAT = "terrafix-flight-manifest/1"


@dataclass(frozen=True, slots=True)
class ManifestTile:
    """A tile the flight needs and the SHA-256 of its JPEG bytes."""

    tile: TileId
    sha256: str


@dataclass(frozen=True, slots=True)
class FlightManifest:
    """Content of a manifest (the signed part).

    takeoff_*: take-off origin, WGS84 degrees and metres above the ellipsoid.
    corridor_wkt: route corridor polygon, WGS84 lon/lat WKT. flight_zoom: zoom the navigation
    matches at; the corridor must be fully covered there.
    """

    flight_id: str
    created_utc: str
    takeoff_lat_deg: float
    takeoff_lon_deg: float
    takeoff_alt_m: float
    flight_zoom: int
    corridor_wkt: str
    tiles: tuple[ManifestTile, ...]

    @property
    def corridor(self) -> BaseGeometry:
        return shapely.from_wkt(self.corridor_wkt)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flight_id": self.flight_id,
            "created_utc": self.created_utc,
            "takeoff": {"lat_deg": self.takeoff_lat_deg, "lon_deg": self.takeoff_lon_deg,
                        "alt_m": self.takeoff_alt_m},
            "flight_zoom": self.flight_zoom,
            "corridor_wkt": self.corridor_wkt,
            "tiles": [[t.tile.z, t.tile.x, t.tile.y, t.sha256] for t in self.tiles],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlightManifest:
        try:
            return cls(
                flight_id=str(d["flight_id"]), created_utc=str(d["created_utc"]),
                takeoff_lat_deg=float(d["takeoff"]["lat_deg"]),
                takeoff_lon_deg=float(d["takeoff"]["lon_deg"]),
                takeoff_alt_m=float(d["takeoff"]["alt_m"]), flight_zoom=int(d["flight_zoom"]),
                corridor_wkt=str(d["corridor_wkt"]),
                tiles=tuple(ManifestTile(TileId(int(z), int(x), int(y)), str(h))
                            for z, x, y, h in d["tiles"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest content is malformed: {exc!r}") from exc


def canonical_bytes(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


# --- keys ----------------------------------------------------------------------------------
def generate_keypair(private_path: str | Path, public_path: str | Path) -> None:
    """Write a new Ed25519 key pair as PEM (private key readable by the owner only)."""
    key = Ed25519PrivateKey.generate()
    priv = Path(private_path)
    priv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    Path(public_path).write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ManifestError(f"cannot read Ed25519 private key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ManifestError(f"{path} holds a {type(key).__name__}, expected an Ed25519 key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ManifestError(f"cannot read Ed25519 public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ManifestError(f"{path} holds a {type(key).__name__}, expected an Ed25519 key")
    return key


# --- build, sign, load ---------------------------------------------------------------------
def build_manifest(store: TileStore, flight_id: str, takeoff_lat_deg: float,
                   takeoff_lon_deg: float, takeoff_alt_m: float, corridor: BaseGeometry,
                   flight_zoom: int) -> FlightManifest:
    """List the corridor's tiles at the flight zoom with their hashes.

    Raises CacheMissError naming the tiles the store lacks or would refuse to serve, so a
    manifest is never issued for a cache that cannot fly the route.
    """
    if not flight_id:
        raise ManifestError("flight id must not be empty")
    needed = tiles_covering(corridor, flight_zoom)
    entries: list[ManifestTile] = []
    problems: list[str] = []
    for t in needed:
        rec = store.get_record(t)
        if rec is None:
            problems.append(f"{t.z}/{t.x}/{t.y} missing")
            continue
        if store.freshness_of(rec).label == FreshnessLabel.REJECTED:
            problems.append(f"{t.z}/{t.x}/{t.y} rejected: {store.freshness_of(rec).reason}")
            continue
        entries.append(ManifestTile(t, rec.sha256))
    if problems:
        raise CacheMissError(_miss_message(len(needed), problems))
    return FlightManifest(flight_id, datetime.now(UTC).isoformat(timespec="seconds"),
                          float(takeoff_lat_deg), float(takeoff_lon_deg), float(takeoff_alt_m),
                          int(flight_zoom), corridor.wkt, tuple(entries))


def _miss_message(n_needed: int, problems: list[str]) -> str:
    shown = "; ".join(problems[:10])
    more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
    return (f"cache miss on the planned route: {len(problems)} of {n_needed} corridor tiles "
            f"are not usable: {shown}{more}")


def write_signed(manifest: FlightManifest, key: Ed25519PrivateKey, path: str | Path) -> Path:
    content = manifest.to_dict()
    signature = key.sign(canonical_bytes(content))
    doc = {"format": FORMAT, "manifest": content,
           "signature_ed25519": base64.b64encode(signature).decode("ascii")}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), "utf-8")
    os.replace(tmp, out)
    return out


def load_signed(path: str | Path, public_key: Ed25519PublicKey) -> FlightManifest:
    """Read a manifest and check its signature; raises ManifestError when it does not hold."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {p}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ManifestError(f"{p}: format {fmt!r}, expected {FORMAT!r}")
    try:
        signature = base64.b64decode(doc["signature_ed25519"], validate=True)
        content = doc["manifest"]
    except (KeyError, ValueError, TypeError) as exc:
        raise ManifestError(f"{p}: missing or malformed signature: {exc!r}") from exc
    try:
        public_key.verify(signature, canonical_bytes(content))
    except InvalidSignature:
        raise ManifestError(f"{p}: Ed25519 signature does not verify with the given public key "
                            f"(manifest altered or signed by another key)") from None
    return FlightManifest.from_dict(content)


# --- verification --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Outcome of the pre-take-off check: ok, or the problems that refuse take-off."""

    flight_id: str
    tiles_checked: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_cache(store: TileStore, manifest_path: str | Path,
                 public_key: Ed25519PublicKey) -> VerificationReport:
    """Signature, every listed hash against the file bytes, and corridor coverage at the flight
    zoom. Reads only (works on a read-only store)."""
    try:
        manifest = load_signed(manifest_path, public_key)
    except ManifestError as exc:
        return VerificationReport("?", 0, (str(exc),))
    problems: list[str] = []
    listed = {m.tile: m.sha256 for m in manifest.tiles}
    needed = tiles_covering(manifest.corridor, manifest.flight_zoom)
    unlisted = [t for t in needed if t not in listed]
    if unlisted:
        problems.append(_miss_message(len(needed), [f"{t.z}/{t.x}/{t.y} not in the manifest"
                                                    for t in unlisted]))
    misses: list[str] = []
    for t, expected in listed.items():
        rec = store.get_record(t)
        name = f"{t.z}/{t.x}/{t.y}"
        if rec is None:
            misses.append(f"{name} missing from the cache")
            continue
        try:
            data = store.tile_path(t).read_bytes()
        except FileNotFoundError:
            misses.append(f"{name} file missing")
            continue
        found = sha256(data).hexdigest()
        if found != expected:
            misses.append(f"{name} sha256 {found[:16]}… differs from the manifest's "
                          f"{expected[:16]}…")
        elif rec.sha256 != expected:
            misses.append(f"{name} metadata sha256 differs from the manifest")
        decision = store.freshness_of(rec)
        if decision.label == FreshnessLabel.REJECTED:
            misses.append(f"{name} rejected: {decision.reason}")
    if misses:
        problems.append(_miss_message(len(listed), misses))
    return VerificationReport(manifest.flight_id, len(listed), tuple(problems))
