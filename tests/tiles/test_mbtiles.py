"""MBTiles export (what QGIS/GDAL read) and import, with provenance round trip."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from terrafix.geo.tiles import TileId
from terrafix.tiles import TileCacheError, open_store
from terrafix.tiles.errors import ProvisioningError
from terrafix.tiles.provision.mbtiles import export_mbtiles, import_mbtiles
from tests.tiles.conftest import block_of_tiles, new_tiles, texture


@pytest.fixture
def filled(tmp_path: Path):
    store = open_store(tmp_path / "a")
    tiles = block_of_tiles(3, 2)
    items = new_tiles(tiles[:4], capture=date(2022, 2, 2), source="sat-A") + \
        new_tiles(tiles[4:], seed0=10, capture=date(2023, 3, 3), source="sat-B")
    store.put_many(items)
    return store, items


def test_export_writes_a_standard_mbtiles_with_tms_rows(filled, tmp_path: Path) -> None:
    store, items = filled
    out = tmp_path / "cache.mbtiles"
    rep = export_mbtiles(store, out)
    assert rep.tiles_written == len(items)
    conn = sqlite3.connect(out)
    meta = dict(conn.execute("SELECT name, value FROM metadata"))
    assert meta["format"] == "jpg" and meta["minzoom"] == meta["maxzoom"] == "18"
    w, s, e, n = (float(v) for v in meta["bounds"].split(","))
    sb = store.summary().bounds
    assert (w, s, e, n) == pytest.approx(sb, abs=1e-6)
    for item in items:
        t = item.tile
        row = conn.execute("SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ?"
                           " AND tile_row = ?", (t.z, t.x, (1 << t.z) - 1 - t.y)).fetchone()
        assert row is not None and bytes(row[0]) == item.jpeg
    conn.close()
    # GDAL's MBTiles driver (what QGIS uses) opens it and finds the right place
    with rasterio.open(out) as ds:
        assert ds.driver == "MBTiles"
        gb = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        assert gb[0] == pytest.approx(sb[0], abs=1e-4) and gb[3] == pytest.approx(sb[3], abs=1e-4)


def test_export_then_import_keeps_bytes_dates_and_sources(filled, tmp_path: Path) -> None:
    store, items = filled
    out = export_mbtiles(store, tmp_path / "x.mbtiles").path
    other = open_store(tmp_path / "b")
    rep = import_mbtiles(other, out)
    assert rep.tiles_written == len(items) and rep.tiles_converted == 0
    for item in items:
        rec = other.get_record(item.tile)
        assert other.read_tile(item.tile) == item.jpeg
        assert (rec.capture_date, rec.source) == (item.capture_date, item.source)
    again = import_mbtiles(other, out)  # resumable: nothing left to do
    assert again.tiles_written == 0 and again.tiles_skipped == len(items)
    with pytest.raises(TileCacheError, match="exists"):
        export_mbtiles(store, out)


def test_foreign_colour_png_mbtiles_is_converted_and_needs_a_date(tmp_path: Path) -> None:
    path = tmp_path / "foreign.mbtiles"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE metadata (name TEXT, value TEXT);"
                       "CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER,"
                       " tile_row INTEGER, tile_data BLOB);")
    t = TileId(15, 6814, 12388)
    colour = np.dstack([texture(1), texture(2), texture(3)])
    png = cv2.imencode(".png", colour)[1].tobytes()
    conn.execute("INSERT INTO tiles VALUES (?, ?, ?, ?)", (t.z, t.x, (1 << t.z) - 1 - t.y, png))
    conn.commit()
    conn.close()
    store = open_store(tmp_path / "c")
    with pytest.raises(ProvisioningError, match="capture date"):
        import_mbtiles(store, path)
    rep = import_mbtiles(store, path, capture_date=date(2021, 1, 1))
    assert rep.tiles_converted == 1 and rep.tiles_written == 1
    img = store.read_image(t)
    expected = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    assert np.abs(img.astype(int) - expected).mean() < 3
    assert store.get_record(t).source == "mbtiles:foreign.mbtiles"


def test_a_file_that_is_not_mbtiles_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mbtiles"
    bad.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ProvisioningError, match="not an MBTiles"):
        import_mbtiles(open_store(tmp_path / "d"), bad)
