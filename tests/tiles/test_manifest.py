"""Signed flight manifests v2 and the pre-take-off verification (T5, U4).

The cache here holds tiles at two flight zooms (z18 and their z19 children over the same
corridor), map-feature arrays and a retrieval index under features/ and retrieval/, and two
model files in a separate model folder; every tampering with any of them must be refused with
the file named.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import shapely
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terrafix.geo.tiles import TileId, tile_bounds
from terrafix.tiles import CacheMissError, FreshnessPolicy
from terrafix.tiles.errors import ManifestError
from terrafix.tiles.manifest import (
    FlightManifest,
    ManifestFile,
    ManifestModel,
    ManifestTile,
    build_manifest,
    fingerprint,
    generate_keypair,
    load_private_key,
    load_public_key,
    load_signed,
    verify_cache,
    write_signed,
)
from tests.tiles.conftest import StoreFactory, Z, block_of_tiles, jpeg, new_tiles

MODEL_NAMES = ("xfeat-backbone__384x384__fp32__x86_64-cpu.onnx",
               "xfeat-backbone__640x640__fp32__x86_64-cpu.onnx")
ZOOMS = (Z, Z + 1)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    generate_keypair(tmp_path / "keys" / "k.pem", tmp_path / "keys" / "k.pub")
    return tmp_path / "keys" / "k.pem", tmp_path / "keys" / "k.pub"


def _corridor(tiles) -> shapely.Geometry:
    w = min(tile_bounds(t)[0] for t in tiles)
    s = min(tile_bounds(t)[1] for t in tiles)
    e = max(tile_bounds(t)[2] for t in tiles)
    n = max(tile_bounds(t)[3] for t in tiles)
    return shapely.box(w, s, e, n).buffer(-1e-7)


def _children(tiles: list[TileId]) -> list[TileId]:
    return [TileId(t.z + 1, 2 * t.x + dx, 2 * t.y + dy) for t in tiles
            for dx in (0, 1) for dy in (0, 1)]


def write_flight_files(root: Path, models: Path) -> None:
    """Stand-in feature/index/model files (the manifest is blind to their content)."""
    rng = np.random.default_rng(3)
    for z in ZOOMS:
        feat = root / "features" / "xfeat" / f"z{z}"
        feat.mkdir(parents=True)
        np.save(feat / "descriptors.npy", rng.standard_normal((200, 64)).astype(np.float16))
        np.save(feat / "keypoints.npy", rng.uniform(0, 1e5, (200, 2)))
        (feat / "meta.json").write_text(json.dumps({"z": z}))
        ret = root / "retrieval" / "xfeat" / f"z{z}"
        ret.mkdir(parents=True)
        (ret / "index.faiss").write_bytes(rng.bytes(4096))
        np.save(ret / "vocabulary.npy", rng.standard_normal((8, 64)).astype(np.float32))
    (root / "features" / "vps.json").write_text(json.dumps({"levels": {"xfeat": list(ZOOMS)}}))
    models.mkdir(parents=True, exist_ok=True)
    for name in MODEL_NAMES:
        (models / name).write_bytes(rng.bytes(20_000))


@pytest.fixture
def flight(stores: StoreFactory, keys: tuple[Path, Path], tmp_path: Path):
    store = stores()
    tiles18 = block_of_tiles(4, 3)
    tiles = tiles18 + _children(tiles18)
    store.put_many(new_tiles(tiles))
    models = tmp_path / "models"
    write_flight_files(Path(store.root), models)
    key = load_private_key(keys[0])
    m = build_manifest(store, "F-001", 40.138, -105.14, 1520.0, _corridor(tiles18), ZOOMS,
                       models=[models / n for n in MODEL_NAMES], signer=key.public_key())
    path = write_signed(m, key, tmp_path / "manifest.json")
    return store, tiles, m, path, load_public_key(keys[1]), models


def _verify(flight, **kw):
    store, _tiles, _m, path, pub, models = flight
    return verify_cache(store, path, kw.pop("pinned", pub), model_folder=models, **kw)


def _flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_complete_cache_verifies_and_everything_the_flight_reads_is_listed(flight) -> None:
    store, tiles, m, path, pub, _models = flight
    assert {e.tile for e in m.tiles} == set(tiles)
    assert m.flight_zooms == ZOOMS
    listed = {f.path for f in m.files}
    assert "features/vps.json" in listed
    for z in ZOOMS:
        assert f"features/xfeat/z{z}/descriptors.npy" in listed
        assert f"retrieval/xfeat/z{z}/index.faiss" in listed
        assert f"retrieval/xfeat/z{z}/vocabulary.npy" in listed
    assert [(x.model, x.width, x.height) for x in m.models] == [
        ("xfeat-backbone", 384, 384), ("xfeat-backbone", 640, 640)]
    assert all(t.size == len(store.tile_path(t.tile).read_bytes()) for t in m.tiles)
    report = _verify(flight, required_models=MODEL_NAMES)
    assert report.ok, report.problems
    assert report.tiles_checked == len(tiles) and report.files_checked == len(listed)
    assert report.models_checked == 2
    loaded = load_signed(path, pub)
    assert loaded == m and loaded.takeoff_alt_m == 1520.0


def test_the_fingerprint_pins_the_signer_as_well_as_the_public_key(flight) -> None:
    pub = flight[4]
    assert _verify(flight, pinned=fingerprint(pub)).ok
    other = Ed25519PrivateKey.generate().public_key()
    report = _verify(flight, pinned=fingerprint(other))
    assert not report.ok and "not by the pinned provisioning key" in report.problems[0]


def test_verification_runs_on_a_read_only_store(flight, stores: StoreFactory) -> None:
    store, _tiles, _m, path, pub, models = flight
    store.close()
    assert verify_cache(stores(read_only=True), path, pub, model_folder=models).ok


@pytest.mark.parametrize("zoom", ZOOMS)
@pytest.mark.parametrize("which", [0, -1])
def test_one_byte_of_a_tile_of_any_flown_zoom_is_refused_with_the_tile_named(
        flight, zoom: int, which: int) -> None:
    store, tiles, _m, _path, _pub, _models = flight
    t = [x for x in tiles if x.z == zoom][which]
    _flip_byte(store.tile_path(t))
    report = _verify(flight)
    assert not report.ok
    assert f"tiles/{t.z}/{t.x}/{t.y}.jpg: sha256" in " ".join(report.problems)


@pytest.mark.parametrize("rel", [
    "features/xfeat/z18/descriptors.npy", "features/xfeat/z19/keypoints.npy",
    "features/xfeat/z19/meta.json", "features/vps.json",
    "retrieval/xfeat/z18/index.faiss", "retrieval/xfeat/z19/vocabulary.npy"])
def test_one_byte_of_a_feature_array_or_the_index_is_refused_with_the_file_named(
        flight, rel: str) -> None:
    root = Path(flight[0].root)
    _flip_byte(root / rel, at=len((root / rel).read_bytes()) - 1)
    report = _verify(flight)
    assert not report.ok
    assert any(p.startswith(f"{rel}: sha256") for p in report.problems), report.problems


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_byte_of_a_model_is_refused_with_the_model_named(flight, name: str) -> None:
    _flip_byte(flight[5] / name)
    report = _verify(flight)
    assert not report.ok and any(f"model {name}: sha256" in p for p in report.problems)


def test_a_file_added_to_a_verified_part_is_refused(flight) -> None:
    root = Path(flight[0].root)
    (root / "retrieval" / "xfeat" / "z19" / "index2.faiss").write_bytes(b"x" * 100)
    report = _verify(flight)
    assert not report.ok
    assert "retrieval/xfeat/z19/index2.faiss: extra file" in " ".join(report.problems)


@pytest.mark.parametrize("rel", ["features/xfeat/z18/descriptors.npy",
                                 "retrieval/xfeat/z19/index.faiss"])
def test_a_file_removed_from_a_verified_part_is_refused(flight, rel: str) -> None:
    (Path(flight[0].root) / rel).unlink()
    report = _verify(flight)
    assert not report.ok and f"{rel}: missing" in " ".join(report.problems)


def test_a_removed_model_and_a_model_the_flight_loads_unlisted_are_refused(flight) -> None:
    (flight[5] / MODEL_NAMES[0]).unlink()
    report = _verify(flight)
    assert f"model {MODEL_NAMES[0]}: missing" in " ".join(report.problems)
    extra = "xfeat-backbone__512x512__fp32__x86_64-cpu.onnx"
    report = _verify(flight, required_models=[*MODEL_NAMES, extra])
    assert f"model {extra}: the flight loads it but the manifest does not list it" in \
        " ".join(report.problems)


def test_a_size_change_is_named_even_when_appended(flight) -> None:
    rel = "features/xfeat/z19/descriptors.npy"
    with (Path(flight[0].root) / rel).open("ab") as f:
        f.write(b"\0")
    report = _verify(flight)
    assert any(p.startswith(f"{rel}: ") and "bytes, the manifest lists" in p
               for p in report.problems)


def test_a_removed_tile_of_a_flown_zoom_is_a_cache_miss(flight) -> None:
    store, tiles, _m, _path, _pub, _models = flight
    t = [x for x in tiles if x.z == Z + 1][3]
    store.delete([t])
    report = _verify(flight)
    assert not report.ok and "cache miss on the planned route" in report.problems[0]
    assert f"tiles/{t.z}/{t.x}/{t.y}.jpg missing" in report.problems[0]


def test_an_altered_manifest_fails_its_signature(flight) -> None:
    path = flight[3]
    doc = json.loads(path.read_text())
    doc["manifest"]["files"] = doc["manifest"]["files"][1:]
    path.write_text(json.dumps(doc))
    report = _verify(flight)
    assert not report.ok and "signature" in report.problems[-1]


def test_a_manifest_resigned_by_another_key_is_refused(flight, tmp_path: Path) -> None:
    """Whoever holds the aircraft cannot alter the cache and sign it with a key of theirs:
    the signer is pinned by the onboard config."""
    _store, _tiles, m, path, pub, _models = flight
    theirs = Ed25519PrivateKey.generate()
    forged = replace(m, signer_public_key=theirs.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    write_signed(forged, theirs, path)
    report = _verify(flight)
    assert not report.ok and "not by the pinned provisioning key" in report.problems[0]
    with pytest.raises(ManifestError, match="pinned"):
        load_signed(path, pub)


def test_a_manifest_that_does_not_cover_its_corridor_at_a_flight_zoom_is_refused(
        flight, keys) -> None:
    _store, _tiles, m, path, _pub, _models = flight
    t = next(e.tile for e in m.tiles if e.tile.z == Z + 1)
    short = replace(m, tiles=tuple(e for e in m.tiles if e.tile != t))
    write_signed(short, load_private_key(keys[0]), path)
    report = _verify(flight)
    assert not report.ok
    assert f"tiles/{t.z}/{t.x}/{t.y}.jpg not in the manifest" in report.problems[0]


def test_an_older_manifest_format_is_a_clear_error(flight) -> None:
    path = flight[3]
    path.write_text(json.dumps({"format": "terrafix-flight-manifest/1", "manifest": {},
                                "signature_ed25519": ""}))
    report = _verify(flight)
    assert not report.ok
    assert "terrafix-flight-manifest/1" in report.problems[0] and "older" in report.problems[0]
    assert "terrafix tiles manifest" in report.problems[0]


@pytest.mark.parametrize("form", ["pem-renamed", "der", "raw-seed", "hex-of-pinned",
                                  "pem-in-jpeg"])
def test_a_private_key_under_the_cache_root_is_refused(flight, keys, form: str) -> None:
    store, _tiles, _m, _path, _pub, _models = flight
    root = Path(store.root)
    key = load_private_key(keys[0])
    pem = keys[0].read_bytes()
    if form == "pem-renamed":
        (root / "quarantine").mkdir(exist_ok=True)
        target = root / "quarantine" / "notes.txt"
        target.write_bytes(pem)
    elif form == "der":
        target = root / "tiles" / "key.bin"
        target.write_bytes(key.private_bytes(serialization.Encoding.DER,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    elif form == "raw-seed":
        target = root / "seed"
        target.write_bytes(key.private_bytes(serialization.Encoding.Raw,
                                             serialization.PrivateFormat.Raw,
                                             serialization.NoEncryption()))
    elif form == "hex-of-pinned":
        target = root / "sign.hex"
        target.write_text(key.private_bytes(serialization.Encoding.Raw,
                                            serialization.PrivateFormat.Raw,
                                            serialization.NoEncryption()).hex() + "\n")
    else:  # appended to a tile outside any listing
        target = root / "tiles" / "3" / "1" / "1.jpg"
        target.parent.mkdir(parents=True)
        target.write_bytes(jpeg(7) + b"\n" + pem)
    report = _verify(flight)
    assert not report.ok
    assert any("private key inside the flying folder" in p and str(target) in p
               for p in report.problems), report.problems


def test_hash_sidecars_and_ordinary_files_are_not_taken_for_keys(flight) -> None:
    root = Path(flight[0].root)
    (root / "notes.sha256").write_text("ab" * 32 + "\n")
    (root / "tiles.sqlite-note").write_bytes(b"x" * 32)
    assert _verify(flight).ok


def test_building_a_manifest_for_an_uncovered_route_raises_a_cache_miss(
        stores: StoreFactory) -> None:
    store = stores()
    tiles = block_of_tiles(3, 1)
    store.put_many(new_tiles(tiles[:2]))
    with pytest.raises(CacheMissError, match=f"{tiles[2].x}/{tiles[2].y} missing"):
        build_manifest(store, "F-2", 40.1, -105.1, 0.0, _corridor(tiles), Z,
                       signer=Ed25519PrivateKey.generate().public_key())


def test_imagery_rejected_as_too_old_counts_as_a_miss(flight) -> None:
    store, tiles, _m, _path, _pub, _models = flight
    conflict = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": shapely.geometry.mapping(_corridor(tiles[:1])),
        "properties": {"name": "front", "classification": "active_conflict"}}]}
    store.set_sectors(FreshnessPolicy.from_geojson(conflict))
    captured = store.get_record(tiles[0]).capture_date
    store.today = captured.replace(year=captured.year + 1)
    report = _verify(flight)
    assert not report.ok and "rejected" in report.problems[0]


def test_manifest_content_round_trips_and_refuses_paths_leaving_the_folder() -> None:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    m = FlightManifest("x", "2024-01-01T00:00:00+00:00", 1.0, 2.0, 3.0, (18, 19),
                       "POLYGON ((0 0, 1 0, 1 1, 0 0))",
                       (ManifestTile(TileId(18, 1, 2), 10, "ab" * 32),),
                       (ManifestFile("features/vps.json", 3, "cd" * 32),),
                       (ManifestModel("m__8x8__fp32__h.onnx", "m", 8, 8, 5, "ef" * 32),), raw)
    assert FlightManifest.from_dict(m.to_dict()) == m
    with pytest.raises(ManifestError):
        FlightManifest.from_dict({"flight_id": "x"})
    for bad in ("../etc/passwd", "/abs", "features/../../x", "a//b"):
        d = m.to_dict()
        d["files"] = [[bad, 3, "cd" * 32]]
        with pytest.raises(ManifestError, match="relative POSIX path"):
            FlightManifest.from_dict(d)
