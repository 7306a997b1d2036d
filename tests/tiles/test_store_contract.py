"""The TileStore contract, run against both metadata backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import date

import numpy as np
import pytest
import shapely

from terrafix.geo.geodesic import distance_m
from terrafix.geo.tiles import TILE_SIZE_PX, TileId, lonlat_to_global_px, tile_bounds
from terrafix.tiles import (
    CorruptTileError,
    DuplicateTileError,
    FreshnessLabel,
    FreshnessPolicy,
    InvalidTileError,
    NewTile,
    PutReport,
    ReadOnlyStoreError,
    SchemaVersionError,
    TileNotFoundError,
    VotingStatus,
)
from terrafix.tiles.records import FRESHNESS_CODES, VOTING_CODES
from tests.tiles.conftest import REPO, StoreFactory, Z, block_of_tiles, jpeg, new_tiles, texture


def _tree_digest(root) -> dict[str, str]:
    """sha256 of every file under the tiles folder."""
    out = {}
    for dirpath, _dirs, files in os.walk(root / "tiles"):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _worker(stores: StoreFactory, **args: object) -> subprocess.CompletedProcess:
    doc = {"root": str(stores.root), "dsn": stores.dsn, "schema": stores.schema, **args}
    return subprocess.run([sys.executable, "-m", "tests.tiles.worker", json.dumps(doc)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


# --- writes ------------------------------------------------------------------------------
def test_put_then_read_returns_identical_bytes_and_metadata(stores: StoreFactory) -> None:
    store = stores()
    tiles = block_of_tiles(3, 2)
    items = new_tiles(tiles, capture=date(2024, 3, 9), source="unit")
    report = store.put_many(items)
    assert report.inserted == tuple(tiles)
    for item in items:
        assert store.read_tile(item.tile) == item.jpeg
        rec = store.get_record(item.tile)
        assert rec is not None
        assert rec.sha256 == hashlib.sha256(item.jpeg).hexdigest()
        assert rec.size_bytes == len(item.jpeg)
        assert rec.capture_date == date(2024, 3, 9) and rec.source == "unit"
        assert rec.bounds == pytest.approx(tile_bounds(item.tile), abs=1e-12)
        assert store.tile_path(item.tile).read_bytes() == item.jpeg
    assert store.backend.totals() == (6, sum(len(i.jpeg) for i in items))


def test_duplicate_with_identical_bytes_is_a_no_op(stores: StoreFactory) -> None:
    store = stores()
    item = new_tiles(block_of_tiles(1, 1))[0]
    store.put_many([item])
    st = os.stat(store.tile_path(item.tile))
    report = store.put_many([item])
    assert report.unchanged == (item.tile,) and not report.inserted
    st2 = os.stat(store.tile_path(item.tile))
    assert (st.st_ino, st.st_mtime_ns) == (st2.st_ino, st2.st_mtime_ns)


def test_duplicate_with_other_bytes_is_refused_and_original_stays_byte_identical(
        stores: StoreFactory) -> None:
    store = stores()
    tiles = block_of_tiles(2, 1)
    original = new_tiles(tiles[:1], seed0=1)[0]
    store.put_many([original])
    intruder = NewTile(original.tile, jpeg(99), date(2025, 1, 1), "other")
    fresh = NewTile(tiles[1], jpeg(2), date(2025, 1, 1), "other")
    with pytest.raises(DuplicateTileError, match=f"{original.tile.x}/{original.tile.y}"):
        store.put_many([fresh, intruder])
    assert store.read_tile(original.tile) == original.jpeg
    assert store.get_record(original.tile).source == "test"
    # the whole batch was refused: the other tile was not written either
    assert store.get_record(fresh.tile) is None
    assert not store.tile_path(fresh.tile).exists()
    assert store.backend.totals() == (1, len(original.jpeg))
    assert not any(store.staging_dir.iterdir())


def test_replace_swaps_content_and_skip_keeps_it(stores: StoreFactory) -> None:
    store = stores()
    t = block_of_tiles(1, 1)[0]
    store.put(t, jpeg(1), capture_date=date(2023, 1, 1), source="a")
    store.put(t, jpeg(2), capture_date=date(2024, 1, 1), source="b", on_conflict="skip")
    assert store.read_tile(t) == jpeg(1)
    report = store.put(t, jpeg(3), capture_date=date(2024, 1, 1), source="c",
                       on_conflict="replace")
    assert report.replaced == (t,)
    assert store.read_tile(t) == jpeg(3)
    assert store.get_record(t).source == "c"
    assert store.backend.totals() == (1, len(jpeg(3)))


@pytest.mark.parametrize("bad", [b"", b"not a jpeg", "truncated", "png", "250px"])
def test_invalid_tile_bytes_are_refused_before_anything_is_written(
        stores: StoreFactory, bad: bytes | str) -> None:
    import cv2

    store = stores()
    if bad == "truncated":
        bad = jpeg(1)[:-500]
    elif bad == "png":
        bad = cv2.imencode(".png", texture(1))[1].tobytes()
    elif bad == "250px":  # decodes, and even to 32x32 at 1/8 scale, but is not a tile
        bad = cv2.imencode(".jpg", texture(1)[:250, :250])[1].tobytes()
    t = block_of_tiles(1, 1)[0]
    with pytest.raises(InvalidTileError, match=f"{t.z}/{t.x}/{t.y}"):
        store.put(t, bad, capture_date=date(2024, 1, 1), source="x")
    assert store.get_record(t) is None and not store.tile_path(t).exists()
    # without the decode (bytes of our own encoder) the structural checks still refuse these
    with pytest.raises(InvalidTileError, match=f"{t.z}/{t.x}/{t.y}"):
        store.put_many([NewTile(t, bad, date(2024, 1, 1), "x")], decode_check=False)
    assert store.get_record(t) is None and not store.tile_path(t).exists()


def test_batches_prepared_on_other_threads_commit_or_discard_cleanly(
        stores: StoreFactory) -> None:
    """prepare_batch (checks, hashes, staging files) runs off the committing thread and writes
    no row; commit_batch lands a batch; a discarded one leaves no file behind."""
    from concurrent.futures import ThreadPoolExecutor

    store = stores()
    tiles = block_of_tiles(4, 2)
    items = new_tiles(tiles)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(store.prepare_batch, [items[:4], items[4:]])
    assert len(list(store.staging_dir.iterdir())) == 2
    assert all(store.get_record(t) is None and not store.tile_path(t).exists() for t in tiles)
    assert store.commit_batch(first).inserted == tuple(tiles[:4])
    second.discard()
    second.discard()  # idempotent
    assert store.commit_batch(second) == PutReport()
    assert list(store.staging_dir.iterdir()) == []
    assert [t for t in tiles if store.tile_path(t).exists()] == tiles[:4]
    assert store.summary().tile_count == 4 and store.reconcile().clean
    with pytest.raises(InvalidTileError):
        store.prepare_batch([items[0], items[0]])
    assert list(store.staging_dir.iterdir()) == []


@pytest.mark.parametrize("on_conflict", ["error", "replace"])
def test_writer_killed_between_file_placement_and_commit_leaves_no_orphan_or_half_tile(
        stores: StoreFactory, on_conflict: str) -> None:
    store = stores()
    tiles = block_of_tiles(3, 1)
    kept = new_tiles(tiles[:1], seed0=50)
    store.put_many(kept)
    store.close()
    before = _tree_digest(stores.root)
    # The worker writes a new tile and (in replace mode) a new version of the kept one, and is
    # SIGKILLed after the files are in place, before the commit.
    victims = tiles if on_conflict == "replace" else tiles[1:]
    proc = _worker(stores, action="put_then_die", seed=500, on_conflict=on_conflict,
                   tiles=[[t.z, t.x, t.y] for t in victims])
    assert proc.returncode == -9, proc.stderr
    staged = list((stores.root / "tiles" / ".staging").iterdir())
    assert staged, "the killed writer should have left a staging batch behind"
    assert any(stores.root.joinpath("tiles", str(t.z), str(t.x), f"{t.y}.jpg").exists()
               for t in tiles[1:]), "the new files were in place when the writer died"

    reopened = stores()
    assert reopened.reconcile_report.batches, "recovery should report the interrupted batch"
    assert _tree_digest(stores.root) == before  # no orphan, no half tile, original intact
    assert reopened.backend.totals() == (1, len(kept[0].jpeg))
    assert reopened.read_tile(kept[0].tile) == kept[0].jpeg
    for t in tiles[1:]:
        assert reopened.get_record(t) is None
    assert not list(reopened.staging_dir.iterdir())


def test_orphan_files_and_rows_are_reconciled_when_the_store_opens(stores: StoreFactory) -> None:
    store = stores()
    tiles = block_of_tiles(3, 1)
    store.put_many(new_tiles(tiles))
    orphan_file = store.tile_path(TileId(Z, tiles[0].x, tiles[0].y + 5))
    orphan_file.parent.mkdir(parents=True, exist_ok=True)
    orphan_file.write_bytes(jpeg(7))
    store.tile_path(tiles[1]).unlink()  # row without file
    store.close()

    ro = stores(read_only=True)
    assert str(orphan_file) in ro.reconcile_report.orphan_files
    assert ro.reconcile_report.orphan_rows == (tiles[1],)
    assert orphan_file.exists() and ro.get_record(tiles[1]) is not None  # read-only: untouched
    ro.close()

    rw = stores()
    assert rw.reconcile_report.fixed
    assert not orphan_file.exists()
    assert rw.get_record(tiles[1]) is None
    assert rw.read_tile(tiles[0]) and rw.read_tile(tiles[2])
    assert rw.backend.totals()[0] == 2
    assert stores().reconcile_report.clean


def test_read_only_store_refuses_every_write_and_changes_nothing(stores: StoreFactory) -> None:
    store = stores()
    tiles = block_of_tiles(2, 2)
    store.put_many(new_tiles(tiles))
    store.close()
    before = _tree_digest(stores.root)
    db = stores.root / "tiles.sqlite"
    db_before = db.read_bytes() if db.exists() else None

    ro = stores(read_only=True)
    t = tiles[0]
    access_before = ro.get_record(t).last_access_utc_s
    with pytest.raises(ReadOnlyStoreError):
        ro.put(TileId(Z, t.x + 10, t.y), jpeg(1), capture_date=date(2024, 1, 1), source="x")
    with pytest.raises(ReadOnlyStoreError):
        ro.delete([t])
    with pytest.raises(ReadOnlyStoreError):
        ro.protect_area("x", shapely.box(*tile_bounds(t)))
    with pytest.raises(ReadOnlyStoreError):
        ro.set_sectors(FreshnessPolicy())
    with pytest.raises(ReadOnlyStoreError):
        ro.backend.bulk_load([], 0.0)
    w, s, e, n = tile_bounds(t)
    for _ in range(3):
        ro.mosaic(w, s, e, n, Z)
        ro.read_tile(t)
    ro.close()
    assert _tree_digest(stores.root) == before
    if db_before is not None:
        assert db.read_bytes() == db_before
    again = stores(read_only=True)
    assert again.get_record(t).last_access_utc_s == access_before


def test_corrupted_jpeg_is_detected_quarantined_and_never_served(stores: StoreFactory) -> None:
    store = stores()
    tiles = block_of_tiles(2, 1)
    items = new_tiles(tiles)
    store.put_many(items)
    bad = tiles[0]
    path = store.tile_path(bad)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
    path.write_bytes(bytes(data))

    with pytest.raises(CorruptTileError, match=f"{bad.z}/{bad.x}/{bad.y}"):
        store.read_tile(bad)
    assert not path.exists()
    assert store.get_record(bad) is None
    entries = store.quarantined()
    assert [q.tile for q in entries] == [bad]
    assert entries[0].expected_sha256 == hashlib.sha256(items[0].jpeg).hexdigest()
    assert os.path.exists(entries[0].file_path)
    with pytest.raises(TileNotFoundError):
        store.read_tile(bad)
    # the healthy neighbour is still served; the mosaic shows the hole
    w, s, e, n = tile_bounds(tiles[0])
    e = tile_bounds(tiles[1])[2]
    m = store.mosaic(w + 1e-7, s + 1e-7, e - 1e-7, n - 1e-7, Z)
    assert m.missing == (bad,) and [u.tile for u in m.tiles] == [tiles[1]]
    assert not m.valid[:, :TILE_SIZE_PX].any() and m.valid[:, TILE_SIZE_PX:].all()
    assert store.summary().quarantined == 1


def test_corruption_found_by_a_mosaic_is_quarantined(stores: StoreFactory) -> None:
    store = stores()
    t = block_of_tiles(1, 1)[0]
    store.put_many(new_tiles([t]))
    store.tile_path(t).write_bytes(jpeg(1234))  # valid JPEG, wrong content
    m = store.mosaic(*tile_bounds(t), Z)
    assert m.corrupt == (t,) and not m.valid.any() and not m.image.any()
    assert store.get_record(t) is None and len(store.quarantined()) == 1


def test_read_only_store_withholds_a_corrupt_tile_without_moving_it(stores: StoreFactory) -> None:
    store = stores()
    t = block_of_tiles(1, 1)[0]
    store.put_many(new_tiles([t]))
    store.close()
    path = stores.root / "tiles" / str(t.z) / str(t.x) / f"{t.y}.jpg"
    path.write_bytes(jpeg(77))
    ro = stores(read_only=True)
    with pytest.raises(CorruptTileError, match="withheld"):
        ro.read_tile(t)
    with pytest.raises(CorruptTileError):
        ro.read_tile(t)
    assert path.read_bytes() == jpeg(77) and ro.get_record(t) is not None


@pytest.mark.slow
def test_readers_keep_working_while_another_process_writes(stores: StoreFactory) -> None:
    store = stores()
    base = block_of_tiles(4, 4)
    store.put_many(new_tiles(base))
    extra = block_of_tiles(8, 4, lon=-105.12)
    errors: list[BaseException] = []
    reads = [0]
    seen: set[str] = set()
    stop = threading.Event()
    w = min(tile_bounds(t)[0] for t in base)
    e = max(tile_bounds(t)[2] for t in base)
    s = min(tile_bounds(t)[1] for t in base)
    n = max(tile_bounds(t)[3] for t in base)

    def reader() -> None:
        try:
            while not stop.is_set():
                m = store.mosaic(w + 1e-7, s + 1e-7, e - 1e-7, n - 1e-7, Z)
                assert m.valid.all() and not m.corrupt, (m.missing, m.corrupt)
                seen.add(hashlib.sha256(m.image.tobytes()).hexdigest())
                store.tiles_intersecting(shapely.box(w, s, e, n))
                reads[0] += 1
                time.sleep(0.002)  # leave the writer some CPU on a 2-core machine
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    # The writer replaces the tiles being read (new content every batch) and adds others.
    proc = _worker(stores, action="write_batches", seed=900, batch=8,
                   tiles=[[t.z, t.x, t.y] for t in base + extra])
    stop.set()
    for th in threads:
        th.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not errors, errors[0]
    assert reads[0] > 0
    assert len(seen) >= 2  # the readers saw the map before and after the writer replaced it
    assert store.backend.totals()[0] == len(base) + len(extra)
    for i, t in enumerate(base):
        assert store.read_tile(t) == jpeg(900 + i)


# --- schema ------------------------------------------------------------------------------
def test_older_schema_is_refused_until_migrated_and_newer_is_refused(
        stores: StoreFactory) -> None:
    store = stores()
    store.close()
    # Build an older store explicitly: only migration 1 applied.
    if stores.kind == "sqlite":
        from terrafix.tiles.sqlite_backend import SqliteBackend

        for p in stores.root.glob("tiles.sqlite*"):
            p.unlink()
        sqlite3.connect(stores.root / "tiles.sqlite").close()  # an empty database file
        old = SqliteBackend(stores.root / "tiles.sqlite", check_schema=False)
    else:
        from terrafix.tiles.postgres_backend import PostgresBackend

        PostgresBackend(stores.dsn, schema=stores.schema).drop()
        old = PostgresBackend(stores.dsn, schema=stores.schema, create=False,
                              check_schema=False)
    old.migrate(target=1)
    assert old.schema_version() == 1
    old.close()
    with pytest.raises(SchemaVersionError, match="older"):
        stores()
    migrator = stores(check_schema=False, reconcile="none")
    assert migrator.backend.migrate() == 2
    migrator.close()
    ok = stores()
    assert ok.backend.schema_version() == 2
    with ok.backend.transaction() as tx:
        conn = tx._conn
        conn.execute("INSERT INTO schema_version VALUES (3)")
    ok.close()
    with pytest.raises(SchemaVersionError, match="newer"):
        stores()


# --- queries -----------------------------------------------------------------------------
def _grid_store(stores: StoreFactory, nx: int = 10, ny: int = 8):
    store = stores()
    tiles = block_of_tiles(nx, ny)
    # content is irrelevant for queries: one JPEG for all keeps the test fast
    data = jpeg(5)
    store.put_many([NewTile(t, data, date(2024, 1, 1), "grid") for t in tiles])
    return store, tiles


def test_tiles_intersecting_matches_a_brute_force_answer(stores: StoreFactory) -> None:
    store, tiles = _grid_store(stores)
    rng = np.random.default_rng(3)
    west = min(tile_bounds(t)[0] for t in tiles)
    north = max(tile_bounds(t)[3] for t in tiles)
    boxes = {t: shapely.box(*tile_bounds(t)) for t in tiles}
    for _ in range(25):
        # a rotated quadrilateral footprint somewhere over (and partly off) the grid
        cx = west + rng.uniform(-0.001, 0.013)
        cy = north - rng.uniform(-0.001, 0.009)
        ang = rng.uniform(0, np.pi)
        hw, hh = rng.uniform(0.0005, 0.004), rng.uniform(0.0005, 0.003)
        corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        poly = shapely.Polygon(corners @ rot.T + [cx, cy])
        expected = {t for t, b in boxes.items() if poly.intersects(b) and not poly.touches(b)}
        got = {r.tile for r in store.tiles_intersecting(poly, Z)}
        assert got == expected
    # a polygon exactly on a tile edge returns the tile, not its neighbours that only touch
    t = tiles[15]
    assert [r.tile for r in store.tiles_intersecting(boxes[t])] == [t]


def _footprints(tiles: list[TileId], n: int, seed: int) -> list[shapely.Polygon]:
    """Rotated quadrilaterals over (and partly off) a block of tiles, plus edge cases: a tile's
    own square (neighbours only touch it), a non-convex polygon and one missing everything."""
    rng = np.random.default_rng(seed)
    west = min(tile_bounds(t)[0] for t in tiles)
    north = max(tile_bounds(t)[3] for t in tiles)
    out = []
    for _ in range(n):
        cx = west + rng.uniform(-0.001, 0.013)
        cy = north - rng.uniform(-0.001, 0.009)
        ang = rng.uniform(0, np.pi)
        hw, hh = rng.uniform(0.0005, 0.004), rng.uniform(0.0005, 0.003)
        corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        out.append(shapely.Polygon(corners @ rot.T + [cx, cy]))
    w, s, e, n_ = tile_bounds(tiles[15])
    out.append(shapely.box(w, s, e, n_))
    # edges and vertices exactly on tile edges and corners (bit-exact touching decisions)
    w2, s2, e2, n2 = tile_bounds(tiles[37])
    out.append(shapely.box(w, s2, e2, n_))
    out.append(shapely.Polygon([(w, n_), (e2, s2), (w, s2)]))
    out.append(shapely.Polygon([(e, n_), (e2, (s2 + n2) / 2), (w2, s2), (w, (s + n_) / 2)]))
    out.append(shapely.Polygon([(w - 0.002, s - 0.002), (e + 0.003, s), (w, n_ + 0.002),
                                (w + 0.0004, s + 0.0002)]))  # non-convex: the shapely path
    out.append(shapely.box(w + 1.0, s + 1.0, e + 1.0, n_ + 1.0))
    return out


def test_columnar_hits_equal_the_record_answer(stores: StoreFactory) -> None:
    """`tile_hits` (numpy columns, the navigation's per-frame query) gives exactly the tiles,
    bounds and statuses of `tiles_intersecting`, and its lazily built records equal them."""
    store, tiles = _grid_store(stores)
    store.set_upload_state(tiles[3], VotingStatus.PENDING, 2)
    store.set_upload_state(tiles[4], VotingStatus.UPLOAD_GIVEUP, 5)
    nonempty = 0
    for poly in _footprints(tiles, 25, seed=4):
        for z in (Z, None):
            expected = store.tiles_intersecting(poly, z)
            hits = store.tile_hits(poly, z)
            assert len(hits) == len(expected)
            for col, dtype in ((hits.z, np.int64), (hits.x, np.int64), (hits.y, np.int64),
                               (hits.voting, np.int8), (hits.stored_freshness, np.int8)):
                assert col.dtype == dtype and col.shape == (len(expected),)
            assert hits.bounds.shape == (len(expected), 4) and hits.bounds.dtype == np.float64
            by_tile = {r.tile: r for r in expected}
            assert set(hits.tile_ids()) == set(by_tile)
            for i, t in enumerate(hits.tile_ids()):
                rec = by_tile[t]
                assert tuple(hits.bounds[i].tolist()) == rec.bounds  # bit-identical
                assert VOTING_CODES[hits.voting[i]] == rec.voting_status
                assert hits.voting_status(i) == rec.voting_status
                assert FRESHNESS_CODES[hits.stored_freshness[i]] == rec.freshness
            assert hits.records() == [by_tile[t] for t in hits.tile_ids()]
            nonempty += bool(expected)
    assert nonempty >= 20
    statuses = {hits.voting_status(i) for hits in [store.tile_hits(shapely.box(
        *store.summary().bounds))] for i in range(len(hits))}
    assert statuses == {VotingStatus.TRUSTED, VotingStatus.PENDING, VotingStatus.UPLOAD_GIVEUP}


def test_sqlite_spatial_queries_are_driven_by_the_rtree(tmp_path) -> None:
    """With a zoom term, a plain JOIN made SQLite walk the (z, x, y) index, i.e. every tile
    of that zoom, probing the R*Tree for each: seconds per query in a million-tile cache."""
    from terrafix.tiles import open_store
    from terrafix.tiles.sqlite_backend import _BBOX_WHERE, _HITS_SQL, _PREFIXED_COLUMNS

    store = open_store(tmp_path / "cache")
    conn = sqlite3.connect(store.root / "tiles.sqlite")
    for sql in (_HITS_SQL, f"SELECT {_PREFIXED_COLUMNS}{_BBOX_WHERE}"):
        for extra, args in (("", (0.0, 1.0, 0.0, 1.0)), (" AND t.z = ?", (0.0, 1.0, 0.0, 1.0, 19))):
            plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}{extra}", args)]
            assert plan[0].startswith("SCAN r VIRTUAL TABLE"), plan
            assert "INTEGER PRIMARY KEY" in plan[1], plan
    conn.close()
    store.close()


def test_columnar_box_hits_equal_records_in_box(stores: StoreFactory) -> None:
    store, tiles = _grid_store(stores)
    w, s, e, n = tile_bounds(tiles[15])
    for box in [(w, s, e, n), (w - 1e-3, s - 2e-3, e + 3e-3, n), (w + 1.0, s, e + 1.0, n)]:
        hits = store.hits_in_box(*box, Z)
        expected = store.records_in_box(*box, Z)
        assert sorted(hits.tile_ids()) == sorted(r.tile for r in expected)
        assert {r.tile: r for r in hits.records()} == {r.tile: r for r in expected}
    assert len(store.hits_in_box(w, s, e, n, Z)) == 9  # edges included: the neighbours too


def test_an_unknown_status_code_is_refused_not_misread() -> None:
    from terrafix.tiles import TileCacheError, TileHits

    one = np.array([1], np.int64)
    hits = TileHits(one * 18, one, one, np.zeros((1, 4)), np.array([-1], np.int8),
                    np.array([0], np.int8), lambda tiles: {})
    with pytest.raises(TileCacheError, match="18/1/1"):
        hits.voting_status(0)


def test_columnar_hits_records_follow_later_changes(stores: StoreFactory) -> None:
    store, tiles = _grid_store(stores, nx=3, ny=2)
    hits = store.tile_hits(shapely.box(*store.summary().bounds), Z)
    assert len(hits) == 6
    store.delete([tiles[0]])
    store.set_upload_state(tiles[1], VotingStatus.REJECTED, 1)
    recs = hits.records()  # built now: the deleted tile is left out, the change is seen
    assert [r.tile for r in recs] == [t for t in hits.tile_ids() if t != tiles[0]]
    assert {r.tile: r.voting_status for r in recs}[tiles[1]] == VotingStatus.REJECTED
    assert hits.records() is recs  # built once
    empty = store.tile_hits(shapely.box(0.0, 0.0, 0.001, 0.001))
    assert len(empty) == 0 and empty.records() == [] and empty.bounds.shape == (0, 4)


def test_tiles_within_a_radius_matches_geodesic_distances(stores: StoreFactory) -> None:
    store, tiles = _grid_store(stores)
    b = np.array([tile_bounds(t) for t in tiles])
    lat, lon = (b[:, 1].min() + b[:, 3].max()) / 2, (b[:, 0].min() + b[:, 2].max()) / 2
    for radius in (30.0, 150.0, 400.0):
        got = store.tiles_within(lat, lon, radius, Z)
        near_lon = np.clip(lon, b[:, 0], b[:, 2])
        near_lat = np.clip(lat, b[:, 1], b[:, 3])
        d = distance_m(np.full(len(b), lat), np.full(len(b), lon), near_lat, near_lon)
        expected = {t for t, di in zip(tiles, d, strict=True) if di <= radius}
        assert {r.tile for r in got} == expected
        dists = [float(distance_m(lat, lon, np.clip(lat, r.bounds[1], r.bounds[3]),
                                  np.clip(lon, r.bounds[0], r.bounds[2]))) for r in got]
        assert dists == sorted(dists)


def test_mosaic_places_every_tile_at_its_global_pixel_position(stores: StoreFactory) -> None:
    store = stores()
    tiles = block_of_tiles(3, 3)
    items = new_tiles(tiles)
    store.put_many(items[:-1])  # the last (south-east) tile is missing
    decoded = {i.tile: store.read_image(i.tile) for i in items[:-1]}
    w = tile_bounds(tiles[0])[0]
    n = tile_bounds(tiles[0])[3]
    e = tile_bounds(tiles[-1])[2]
    s = tile_bounds(tiles[-1])[1]
    # a box that starts and ends inside tiles
    dw, dh = (e - w) * 0.1, (n - s) * 0.1
    m = store.mosaic(w + dw, s + dh, e - dw, n - dh, Z)
    fx, fy = lonlat_to_global_px(w + dw, n - dh, Z)
    assert (m.px_x0, m.px_y0) == (int(np.floor(fx)), int(np.floor(fy)))
    fx1, fy1 = lonlat_to_global_px(e - dw, s + dh, Z)
    assert m.image.shape == (int(np.ceil(fy1)) - m.px_y0, int(np.ceil(fx1)) - m.px_x0)
    assert m.missing == (tiles[-1],)
    for t, img in decoded.items():
        gx0, gy0 = t.x * TILE_SIZE_PX, t.y * TILE_SIZE_PX
        c0, r0 = max(gx0, m.px_x0), max(gy0, m.px_y0)
        c1 = min(gx0 + TILE_SIZE_PX, m.px_x0 + m.image.shape[1])
        r1 = min(gy0 + TILE_SIZE_PX, m.px_y0 + m.image.shape[0])
        np.testing.assert_array_equal(
            m.image[r0 - m.px_y0:r1 - m.px_y0, c0 - m.px_x0:c1 - m.px_x0],
            img[r0 - gy0:r1 - gy0, c0 - gx0:c1 - gx0])
        assert m.valid[r0 - m.px_y0:r1 - m.px_y0, c0 - m.px_x0:c1 - m.px_x0].all()
    t = tiles[-1]
    assert not m.valid[t.y * 256 - m.px_y0:, t.x * 256 - m.px_x0:].any()
    # georeferencing helpers agree with the geo package
    lon, lat = m.pixel_to_lonlat(0, 0)
    col, row = m.lonlat_to_pixel(lon, lat)
    assert (col, row) == pytest.approx((0.0, 0.0), abs=1e-6)


def test_freshness_rejects_old_conflict_imagery_and_downgrades_old_rear_imagery(
        stores: StoreFactory) -> None:
    tiles = block_of_tiles(2, 1)
    conflict = shapely.box(*tile_bounds(tiles[0])).buffer(-1e-6)
    rear = shapely.box(*tile_bounds(tiles[1])).buffer(-1e-6)
    policy = FreshnessPolicy.from_geojson({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": shapely.geometry.mapping(conflict),
         "properties": {"name": "front", "classification": "active_conflict"}},
        {"type": "Feature", "geometry": shapely.geometry.mapping(rear),
         "properties": {"name": "rear", "classification": "stable_rear"}}]})
    store = stores(today=date(2025, 6, 1))
    store.put_many(new_tiles(tiles, capture=date(2024, 1, 15)))
    changed = store.set_sectors(policy)
    assert changed == 2
    assert store.get_record(tiles[0]).freshness == FreshnessLabel.REJECTED
    w, s = tile_bounds(tiles[0])[:2]
    e, n = tile_bounds(tiles[1])[2:]
    m = store.mosaic(w + 1e-7, s + 1e-7, e - 1e-7, n - 1e-7, Z)
    assert m.rejected == (tiles[0],)
    assert [(u.tile, u.freshness) for u in m.tiles] == [(tiles[1], FreshnessLabel.DOWNGRADED)]
    assert not m.valid[:, :256].any()
    hits = store.tile_hits(shapely.box(w, s, e, n), Z)  # the stored labels, as codes
    assert {t: FRESHNESS_CODES[c] for t, c in zip(hits.tile_ids(), hits.stored_freshness,
                                                  strict=True)} == {
        tiles[0]: FreshnessLabel.REJECTED, tiles[1]: FreshnessLabel.DOWNGRADED}
    # the sectors persist with the cache, and a flight date within 6 months serves the tile
    store.close()
    recent = stores(today=date(2024, 7, 15), read_only=True)
    assert [s.name for s in recent.freshness.sectors] == ["front", "rear"]
    labels = {u.tile: u.freshness for u in recent.mosaic(w + 1e-7, s + 1e-7, e - 1e-7,
                                                          n - 1e-7, Z).tiles}
    assert labels == {tiles[0]: FreshnessLabel.FRESH, tiles[1]: FreshnessLabel.FRESH}


def test_reads_update_last_access_only_in_a_writable_store(stores: StoreFactory) -> None:
    store = stores()
    tiles = block_of_tiles(2, 1)
    store.put_many(new_tiles(tiles))
    t0 = store.get_record(tiles[0]).last_access_utc_s
    store.read_tile(tiles[0])
    store.flush_access_times()
    t1 = store.get_record(tiles[0]).last_access_utc_s
    assert t1 > t0
    assert [r.tile for r in store.backend.iter_lru()] == [tiles[1], tiles[0]]


def test_summary_and_disk_usage(stores: StoreFactory) -> None:
    store = stores()
    a = block_of_tiles(2, 2)
    b = block_of_tiles(1, 1, z=17)
    store.put_many(new_tiles(a, capture=date(2024, 1, 1)) + new_tiles(b, capture=date(2023, 1, 1)))
    (store.features_dir / "sift").mkdir(parents=True)
    (store.features_dir / "sift" / "f.npy").write_bytes(b"x" * 1000)
    s = store.summary()
    assert s.tile_count == 5 and s.zooms == {17: 1, 18: 4}
    assert s.capture_dates == {date(2023, 1, 1): 1, date(2024, 1, 1): 4}
    bounds = np.array([tile_bounds(t) for t in a + b])
    assert s.bounds == pytest.approx((bounds[:, 0].min(), bounds[:, 1].min(),
                                      bounds[:, 2].max(), bounds[:, 3].max()))
    usage = store.disk_usage()
    assert usage["tiles"] == s.total_bytes and usage["features"] == 1000
