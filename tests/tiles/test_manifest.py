"""Signed flight manifests and the pre-take-off verification (T5)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import shapely

from terrafix.geo.tiles import tile_bounds
from terrafix.tiles import CacheMissError, FreshnessPolicy
from terrafix.tiles.errors import ManifestError
from terrafix.tiles.manifest import (
    FlightManifest,
    build_manifest,
    generate_keypair,
    load_private_key,
    load_public_key,
    load_signed,
    verify_cache,
    write_signed,
)
from tests.tiles.conftest import StoreFactory, Z, block_of_tiles, jpeg, new_tiles


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    return tmp_path / "k.pem", tmp_path / "k.pub"


def _corridor(tiles) -> shapely.Geometry:
    w = min(tile_bounds(t)[0] for t in tiles)
    s = min(tile_bounds(t)[1] for t in tiles)
    e = max(tile_bounds(t)[2] for t in tiles)
    n = max(tile_bounds(t)[3] for t in tiles)
    return shapely.box(w, s, e, n).buffer(-1e-7)


@pytest.fixture
def flight(stores: StoreFactory, keys: tuple[Path, Path], tmp_path: Path):
    store = stores()
    tiles = block_of_tiles(4, 3)
    store.put_many(new_tiles(tiles))
    corridor = _corridor(tiles)
    m = build_manifest(store, "F-001", 40.138, -105.14, 1520.0, corridor, Z)
    path = write_signed(m, load_private_key(keys[0]), tmp_path / "manifest.json")
    return store, tiles, m, path, load_public_key(keys[1])


def test_a_complete_cache_verifies(flight) -> None:
    store, tiles, m, path, pub = flight
    assert {e.tile for e in m.tiles} == set(tiles)
    report = verify_cache(store, path, pub)
    assert report.ok, report.problems
    assert report.flight_id == "F-001" and report.tiles_checked == len(tiles)
    loaded = load_signed(path, pub)
    assert loaded == m and loaded.takeoff_alt_m == 1520.0


def test_verification_runs_on_a_read_only_store(flight, stores: StoreFactory) -> None:
    store, _tiles, _m, path, pub = flight
    store.close()
    assert verify_cache(stores(read_only=True), path, pub).ok


def test_an_altered_manifest_fails_its_signature(flight) -> None:
    store, _tiles, _m, path, pub = flight
    doc = json.loads(path.read_text())
    doc["manifest"]["takeoff"]["lat_deg"] += 0.01
    path.write_text(json.dumps(doc))
    report = verify_cache(store, path, pub)
    assert not report.ok and "signature" in report.problems[0]


def test_a_manifest_signed_by_another_key_is_refused(flight, tmp_path: Path) -> None:
    store, _tiles, _m, path, _pub = flight
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    report = verify_cache(store, path, load_public_key(tmp_path / "other.pub"))
    assert not report.ok and "signature" in report.problems[0]
    with pytest.raises(ManifestError, match="signature"):
        load_signed(path, load_public_key(tmp_path / "other.pub"))


def test_a_tile_changed_after_signing_is_named_in_the_refusal(flight) -> None:
    store, tiles, _m, path, pub = flight
    t = tiles[5]
    store.put(t, jpeg(4242), capture_date=store.get_record(t).capture_date, source="swap",
              on_conflict="replace")
    report = verify_cache(store, path, pub)
    assert not report.ok
    assert f"{t.z}/{t.x}/{t.y} sha256" in report.problems[0]


def test_a_missing_tile_on_the_route_refuses_take_off(flight) -> None:
    store, tiles, _m, path, pub = flight
    store.delete([tiles[0]])
    report = verify_cache(store, path, pub)
    assert not report.ok
    assert "cache miss on the planned route" in report.problems[0]
    assert f"{tiles[0].z}/{tiles[0].x}/{tiles[0].y} missing" in report.problems[0]


def test_a_manifest_that_does_not_cover_its_corridor_is_refused(flight, keys) -> None:
    store, _tiles, m, path, pub = flight
    short = replace(m, tiles=m.tiles[1:])  # validly signed, but a corridor tile is absent
    write_signed(short, load_private_key(keys[0]), path)
    report = verify_cache(store, path, pub)
    t = m.tiles[0].tile
    assert not report.ok and f"{t.z}/{t.x}/{t.y} not in the manifest" in report.problems[0]


def test_building_a_manifest_for_an_uncovered_route_raises_a_cache_miss(
        stores: StoreFactory) -> None:
    store = stores()
    tiles = block_of_tiles(3, 1)
    store.put_many(new_tiles(tiles[:2]))
    with pytest.raises(CacheMissError, match=f"{tiles[2].x}/{tiles[2].y} missing"):
        build_manifest(store, "F-2", 40.1, -105.1, 0.0, _corridor(tiles), Z)


def test_imagery_rejected_as_too_old_counts_as_a_miss(flight) -> None:
    store, tiles, _m, path, pub = flight
    conflict = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": shapely.geometry.mapping(_corridor(tiles[:1])),
        "properties": {"name": "front", "classification": "active_conflict"}}]}
    store.set_sectors(FreshnessPolicy.from_geojson(conflict))
    captured = store.get_record(tiles[0]).capture_date
    store.today = captured.replace(year=captured.year + 1)
    report = verify_cache(store, path, pub)
    assert not report.ok and "rejected" in report.problems[0]


def test_manifest_content_round_trips() -> None:
    from terrafix.geo.tiles import TileId
    from terrafix.tiles.manifest import ManifestTile

    m = FlightManifest("x", "2024-01-01T00:00:00+00:00", 1.0, 2.0, 3.0, 18,
                       "POLYGON ((0 0, 1 0, 1 1, 0 0))",
                       (ManifestTile(TileId(18, 1, 2), "ab" * 32),))
    assert FlightManifest.from_dict(m.to_dict()) == m
    with pytest.raises(ManifestError):
        FlightManifest.from_dict({"flight_id": "x"})
