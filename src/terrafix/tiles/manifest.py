"""Signed flight manifest (v2): every file the flight reads from the cache, and the take-off check.

What it lists, each with its size and SHA-256:
- the tiles of the route corridor at every zoom the flight uses (`flight_zooms`: the map
  levels the navigation matches at);
- every file of the verified parts of the cache root: `features/` (map-feature arrays, their
  block grids and meta, `vps.json`) and `retrieval/` (chunks, vocabulary, `index.faiss`);
  nothing else may appear there (an extra file is refused like an altered one);
- the ONNX models the flight loads, with their input sizes (from a separate model folder).

It is signed with Ed25519 by the provisioning station's key, which stays with the ground
tooling (`terrafix.config_paths`); the signed content carries the signer's public key and the
aircraft checks it against the key (or fingerprint) pinned in its own config, never against
a key found in the cache, which whoever holds the aircraft could replace.

`verify_cache` refuses (returns problems naming each file) when the cache folder holds a
private key, the format is older than this terrafix reads, the signature or signer is wrong,
a corridor tile at a flight zoom is not listed, a listed tile/file/model is missing, of the
wrong size or hash, a verified part holds an unlisted file, a model the flight needs is not
listed, or the freshness rules reject a tile. The signature covers a canonical JSON encoding
(sorted keys, no spaces), so the file may be pretty-printed without breaking it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import shapely
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from shapely.geometry.base import BaseGeometry

from terrafix.config_paths import write_secret_file
from terrafix.geo.tiles import TileId
from terrafix.tiles.errors import CacheMissError, ManifestError
from terrafix.tiles.geometry import tiles_covering
from terrafix.tiles.private_keys import find_private_keys
from terrafix.tiles.records import FreshnessLabel
from terrafix.tiles.store import TileStore

FORMAT = "terrafix-flight-manifest/2"
OLDER_FORMATS = ("terrafix-flight-manifest/1",)
VERIFIED_PARTS = ("features", "retrieval")
"""Folders under the cache root listed whole: every file in them is in the manifest."""
_CHUNK = 1 << 20


# --- content ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ManifestTile:
    """A corridor tile: its JPEG's size in bytes and SHA-256 (hex)."""

    tile: TileId
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return f"tiles/{self.tile.z}/{self.tile.x}/{self.tile.y}.jpg"


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """A file of a verified part; `path` is POSIX, relative to the cache root."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ManifestModel:
    """An ONNX model the flight loads: file name in the model folder, model name, the fixed
    input size it was exported for (width, height px), size and SHA-256."""

    file_name: str
    model: str
    width: int
    height: int
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class FlightManifest:
    """Content of a manifest (the signed part).

    takeoff_*: take-off origin, WGS84 degrees and metres above the ellipsoid. corridor_wkt:
    route corridor polygon, WGS84 lon/lat WKT, fully covered at every zoom of `flight_zooms`.
    signer_public_key: raw 32-byte Ed25519 public key of the signer (checked against the pin).
    """

    flight_id: str
    created_utc: str
    takeoff_lat_deg: float
    takeoff_lon_deg: float
    takeoff_alt_m: float
    flight_zooms: tuple[int, ...]
    corridor_wkt: str
    tiles: tuple[ManifestTile, ...]
    files: tuple[ManifestFile, ...]
    models: tuple[ManifestModel, ...]
    signer_public_key: bytes

    @property
    def corridor(self) -> BaseGeometry:
        return shapely.from_wkt(self.corridor_wkt)

    @property
    def signer_fingerprint(self) -> str:
        return fingerprint_of_raw(self.signer_public_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flight_id": self.flight_id,
            "created_utc": self.created_utc,
            "takeoff": {"lat_deg": self.takeoff_lat_deg, "lon_deg": self.takeoff_lon_deg,
                        "alt_m": self.takeoff_alt_m},
            "flight_zooms": list(self.flight_zooms),
            "corridor_wkt": self.corridor_wkt,
            "tiles": [[t.tile.z, t.tile.x, t.tile.y, t.size, t.sha256] for t in self.tiles],
            "files": [[f.path, f.size, f.sha256] for f in self.files],
            "models": [{"file": m.file_name, "model": m.model, "width": m.width,
                        "height": m.height, "size": m.size, "sha256": m.sha256}
                       for m in self.models],
            "signer_public_key": base64.b64encode(self.signer_public_key).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: Any) -> FlightManifest:
        try:
            return cls(
                flight_id=str(d["flight_id"]), created_utc=str(d["created_utc"]),
                takeoff_lat_deg=float(d["takeoff"]["lat_deg"]),
                takeoff_lon_deg=float(d["takeoff"]["lon_deg"]),
                takeoff_alt_m=float(d["takeoff"]["alt_m"]),
                flight_zooms=tuple(int(z) for z in d["flight_zooms"]),
                corridor_wkt=str(d["corridor_wkt"]),
                tiles=tuple(ManifestTile(TileId(int(z), int(x), int(y)), int(n), _hex(h))
                            for z, x, y, n, h in d["tiles"]),
                files=tuple(ManifestFile(_rel_path(p), int(n), _hex(h))
                            for p, n, h in d["files"]),
                models=tuple(ManifestModel(_rel_path(m["file"]), str(m["model"]),
                                           int(m["width"]), int(m["height"]), int(m["size"]),
                                           _hex(m["sha256"])) for m in d["models"]),
                signer_public_key=base64.b64decode(d["signer_public_key"], validate=True))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ManifestError(f"manifest content is malformed: {exc!r}") from exc


def _hex(value: Any) -> str:
    text = str(value)
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"expected a 64-digit lowercase hex SHA-256, got {text[:70]!r}")
    return text


def _rel_path(value: Any) -> str:
    """A listed path may not leave its folder (no absolute paths, no '..')."""
    text = str(value)
    parts = text.split("/")
    if not text or text.startswith("/") or "\\" in text or any(p in ("", ".", "..")
                                                               for p in parts):
        raise ValueError(f"expected a relative POSIX path inside the folder, got {text!r}")
    return text


def canonical_bytes(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode("ascii")


# --- keys ------------------------------------------------------------------------------------
def generate_keypair(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 key pair as PEM (private key 0600, folder 0700); returns the
    public key's fingerprint (what an onboard config pins)."""
    key = Ed25519PrivateKey.generate()
    write_secret_file(private_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    Path(public_path).parent.mkdir(parents=True, exist_ok=True)
    Path(public_path).write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return fingerprint(key.public_key())


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


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint_of_raw(raw: bytes) -> str:
    """Key id: first 32 hex digits of the SHA-256 of the raw 32-byte public key (the same
    definition as the upload protocol's device-key fingerprints)."""
    return hashlib.sha256(raw).hexdigest()[:32]


def fingerprint(key: Ed25519PublicKey) -> str:
    return fingerprint_of_raw(raw_public_bytes(key))


SignerPin = Ed25519PublicKey | str
"""What the onboard config pins: the signer's public key, or its fingerprint (hex)."""


# --- hashing ---------------------------------------------------------------------------------
def hash_file(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def part_files(cache_root: Path) -> list[Path]:
    """Every regular file under the verified parts of `cache_root`, sorted."""
    out: list[Path] = []
    for part in VERIFIED_PARTS:
        folder = cache_root / part
        if folder.is_dir():
            for dirpath, _dirs, names in os.walk(folder):
                out += [Path(dirpath) / n for n in names]
    return sorted(out)


def _posix(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# --- build, sign, load -----------------------------------------------------------------------
def build_manifest(store: TileStore, flight_id: str, takeoff_lat_deg: float,
                   takeoff_lon_deg: float, takeoff_alt_m: float, corridor: BaseGeometry,
                   flight_zooms: int | Iterable[int], *, models: Sequence[Path] = (),
                   signer: Ed25519PublicKey) -> FlightManifest:
    """List the corridor's tiles at every flight zoom, the verified parts of the cache root and
    the given model files, each with size and hash.

    Raises CacheMissError naming the tiles the store lacks or would refuse to serve (so a
    manifest is never issued for a cache that cannot fly the route), ManifestError for a
    model file that is missing or not named as a built model.
    """
    from terrafix.inference.cache import ModelKey
    from terrafix.inference.errors import InferenceError

    if not flight_id:
        raise ManifestError("flight id must not be empty")
    zooms = (int(flight_zooms),) if isinstance(flight_zooms, int) \
        else tuple(sorted({int(z) for z in flight_zooms}))
    if not zooms:
        raise ManifestError("a manifest needs at least one flight zoom")
    entries: list[ManifestTile] = []
    problems: list[str] = []
    n_needed = 0
    for z in zooms:
        needed = tiles_covering(corridor, z)
        n_needed += len(needed)
        for t in needed:
            rec = store.get_record(t)
            if rec is None:
                problems.append(f"{t.z}/{t.x}/{t.y} missing")
                continue
            if store.freshness_of(rec).label == FreshnessLabel.REJECTED:
                problems.append(f"{t.z}/{t.x}/{t.y} rejected: {store.freshness_of(rec).reason}")
                continue
            size, digest = hash_file(store.tile_path(t))
            if digest != rec.sha256:
                problems.append(f"{t.z}/{t.x}/{t.y} file differs from its metadata hash")
                continue
            entries.append(ManifestTile(t, size, digest))
    if problems:
        raise CacheMissError(_miss_message(n_needed, problems))
    root = Path(store.root)
    files = tuple(ManifestFile(_posix(p, root), *hash_file(p)) for p in part_files(root))
    model_entries: list[ManifestModel] = []
    for p in models:
        p = Path(p)
        try:
            key = ModelKey.parse(p.name)
        except InferenceError as exc:
            raise ManifestError(f"model {p}: {exc}") from exc
        if not p.is_file():
            raise ManifestError(f"model {p} does not exist (run `terrafix models build`)")
        model_entries.append(ManifestModel(p.name, key.model, key.width, key.height,
                                           *hash_file(p)))
    return FlightManifest(flight_id, datetime.now(UTC).isoformat(timespec="seconds"),
                          float(takeoff_lat_deg), float(takeoff_lon_deg), float(takeoff_alt_m),
                          zooms, corridor.wkt, tuple(entries), files,
                          tuple(sorted(model_entries, key=lambda m: m.file_name)),
                          raw_public_bytes(signer))


def _miss_message(n_needed: int, problems: list[str]) -> str:
    shown = "; ".join(problems[:10])
    more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
    return (f"cache miss on the planned route: {len(problems)} of {n_needed} corridor tiles "
            f"are not usable: {shown}{more}")


def write_signed(manifest: FlightManifest, key: Ed25519PrivateKey, path: str | Path) -> Path:
    if raw_public_bytes(key.public_key()) != manifest.signer_public_key:
        raise ManifestError("the manifest names another signer than the key signing it")
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


def _pin_matches(pinned: SignerPin, signer_raw: bytes) -> bool:
    if isinstance(pinned, Ed25519PublicKey):
        return raw_public_bytes(pinned) == signer_raw
    pin = pinned.strip().lower()
    return len(pin) >= 16 and fingerprint_of_raw(signer_raw).startswith(pin)


def load_signed(path: str | Path, pinned: SignerPin) -> FlightManifest:
    """Read a manifest, check that its signer is the pinned one and its signature holds;
    raises ManifestError (naming the file) when not."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read manifest {p}: {exc}") from exc
    fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
    if fmt in OLDER_FORMATS:
        raise ManifestError(f"{p}: manifest format {fmt!r} is older than this terrafix reads "
                            f"({FORMAT!r}: it lists every file the flight reads); sign a new "
                            "one with `terrafix tiles manifest`")
    if fmt != FORMAT:
        raise ManifestError(f"{p}: format {fmt!r}, expected {FORMAT!r}")
    try:
        signature = base64.b64decode(doc["signature_ed25519"], validate=True)
        content = doc["manifest"]
        signer_raw = base64.b64decode(content["signer_public_key"], validate=True)
        signer = Ed25519PublicKey.from_public_bytes(signer_raw)
    except (KeyError, ValueError, TypeError, binascii.Error) as exc:
        raise ManifestError(f"{p}: missing or malformed signature or signer: {exc!r}") from exc
    if not _pin_matches(pinned, signer_raw):
        want = fingerprint(pinned) if isinstance(pinned, Ed25519PublicKey) else pinned
        raise ManifestError(f"{p}: signed by key {fingerprint_of_raw(signer_raw)}, not by the "
                            f"pinned provisioning key {want}")
    try:
        signer.verify(signature, canonical_bytes(content))
    except InvalidSignature:
        raise ManifestError(f"{p}: Ed25519 signature does not verify with the pinned key "
                            f"(manifest altered or signed by another key)") from None
    return FlightManifest.from_dict(content)


# --- verification ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Outcome of the pre-take-off check: ok, or the problems (each naming its file) that
    refuse take-off."""

    flight_id: str
    tiles_checked: int
    files_checked: int
    models_checked: int
    bytes_hashed: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_cache(store: TileStore, manifest_path: str | Path, pinned: SignerPin, *,
                 model_folder: str | Path | None = None,
                 required_models: Iterable[str] = ()) -> VerificationReport:
    """Private keys, format, signer, signature; every listed tile, file and model against its
    size and hash; corridor coverage at each flight zoom; no unlisted file in a verified part;
    every model in `required_models` (file names the flight will load) listed. Reads only
    (works on a read-only store)."""
    root = Path(store.root)
    keys = find_private_keys(root, pinned if isinstance(pinned, Ed25519PublicKey) else None)
    if model_folder is not None:
        keys += find_private_keys(Path(model_folder))
    key_problems = [f"private key inside the flying folder: {k} (signing keys stay with the "
                    "ground tooling; remove it and re-provision)" for k in keys]
    try:
        manifest = load_signed(manifest_path, pinned)
    except ManifestError as exc:
        return VerificationReport("?", 0, 0, 0, 0, (*key_problems, str(exc)))
    problems = list(key_problems)
    hashed = 0
    # tiles: corridor coverage at every flight zoom, then each listed tile
    listed = {m.tile: m for m in manifest.tiles}
    unlisted = [t for z in manifest.flight_zooms for t in tiles_covering(manifest.corridor, z)
                if t not in listed]
    if unlisted:
        problems.append(_miss_message(len(listed) + len(unlisted),
                                      [f"tiles/{t.z}/{t.x}/{t.y}.jpg not in the manifest"
                                       for t in unlisted]))
    misses: list[str] = []
    for t, entry in listed.items():
        rec = store.get_record(t)
        if rec is None:
            misses.append(f"{entry.name} missing from the cache")
            continue
        found = _check_file(store.tile_path(t), entry.name, entry.size, entry.sha256)
        hashed += entry.size
        if found:
            misses.append(found)
        elif rec.sha256 != entry.sha256:
            misses.append(f"{entry.name} metadata sha256 differs from the manifest")
        decision = store.freshness_of(rec)
        if decision.label == FreshnessLabel.REJECTED:
            misses.append(f"{entry.name} rejected: {decision.reason}")
    if misses:
        problems.append(_miss_message(len(listed), misses))
    # verified parts of the cache root: each listed file, and nothing unlisted
    files = {f.path: f for f in manifest.files}
    for f in manifest.files:
        found = _check_file(root / f.path, f.path, f.size, f.sha256)
        hashed += f.size
        if found:
            problems.append(found)
    for p in part_files(root):
        rel = _posix(p, root)
        if rel not in files:
            problems.append(f"{rel}: extra file in a verified part (not in the manifest)")
    # models
    if manifest.models or list(required_models):
        if model_folder is None:
            problems.append("the manifest lists models but no model folder was given")
        else:
            folder = Path(model_folder)
            names = {m.file_name for m in manifest.models}
            for m in manifest.models:
                found = _check_file(folder / m.file_name, f"model {m.file_name}", m.size,
                                    m.sha256)
                hashed += m.size
                if found:
                    problems.append(found)
            for name in required_models:
                if name not in names:
                    problems.append(f"model {name}: the flight loads it but the manifest does "
                                    "not list it")
    return VerificationReport(manifest.flight_id, len(listed), len(files),
                              len(manifest.models), hashed, tuple(problems))


def _check_file(path: Path, name: str, size: int, sha256: str) -> str | None:
    """None when the file has the listed size and hash, else the problem naming it."""
    try:
        if path.is_symlink():
            return f"{name}: is a symbolic link (listed files must be regular files)"
        found_size = path.stat().st_size
        if found_size != size:
            return f"{name}: {found_size} bytes, the manifest lists {size}"
        _, digest = hash_file(path)
    except FileNotFoundError:
        return f"{name}: missing (listed in the manifest)"
    except OSError as exc:
        return f"{name}: unreadable: {exc}"
    if digest != sha256:
        return f"{name}: sha256 {digest[:16]}… differs from the manifest's {sha256[:16]}…"
    return None
