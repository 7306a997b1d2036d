"""Disk budget: LRU eviction that spares protected corridors; a clear error when it cannot."""

from __future__ import annotations

import time
from datetime import date

import pytest
import shapely

from terrafix.geo.tiles import TileId, tile_bounds
from terrafix.tiles import BudgetExceededError, NewTile
from tests.tiles.conftest import StoreFactory, block_of_tiles, jpeg


def new_tiles(tiles: list[TileId]) -> list[NewTile]:
    """Tiles of identical size (same bytes), so budgets count whole tiles."""
    return [NewTile(t, jpeg(1), date(2024, 1, 1), "budget") for t in tiles]


def test_writes_beyond_the_budget_evict_least_recently_used_tiles(stores: StoreFactory) -> None:
    tiles = block_of_tiles(6, 1)
    items = new_tiles(tiles)
    sizes = [len(i.jpeg) for i in items]
    store = stores(budget_bytes=sum(sizes[:4]))
    for item in items[:4]:  # oldest access first: tiles[0]
        store.put_many([item])
        time.sleep(0.002)
    store.read_tile(tiles[0])  # now tiles[1] is the least recently used
    store.flush_access_times()
    report = store.put_many(items[4:5])
    assert report.evicted == (tiles[1],)
    assert store.get_record(tiles[1]) is None and not store.tile_path(tiles[1]).exists()
    assert store.backend.totals()[1] <= store.budget_bytes
    assert {r.tile for r in store.backend.iter_records()} == {tiles[0], tiles[2], tiles[3],
                                                              tiles[4]}


def test_eviction_never_touches_the_protected_corridor(stores: StoreFactory) -> None:
    tiles = block_of_tiles(5, 1)
    items = new_tiles(tiles)
    store = stores(budget_bytes=sum(len(i.jpeg) for i in items[:3]) + 10)
    store.put_many(items[:3])
    corridor = shapely.box(*tile_bounds(tiles[0])).union(shapely.box(*tile_bounds(tiles[1])))
    store.protect_area("flight:F1", corridor.buffer(-1e-7))
    report = store.put_many(items[3:4])
    assert report.evicted == (tiles[2],)
    # now only protected tiles and the new one remain: the next write must evict tiles[3]
    report = store.put_many(items[4:5])
    assert report.evicted == (tiles[3],)
    assert store.get_record(tiles[0]) and store.get_record(tiles[1])


def test_running_out_of_budget_is_a_clear_error_and_evicts_nothing(stores: StoreFactory) -> None:
    tiles = block_of_tiles(3, 1)
    items = new_tiles(tiles)
    store = stores(budget_bytes=len(items[0].jpeg) + len(items[1].jpeg) + 10)
    store.put_many(items[:2])
    store.protect_area("flight:F2", shapely.box(*tile_bounds(tiles[0])).union(
        shapely.box(*tile_bounds(tiles[1]))).buffer(-1e-7))
    with pytest.raises(BudgetExceededError, match=r"flight:F2") as info:
        store.put_many(items[2:])
    assert "budget" in str(info.value)
    assert store.backend.totals()[0] == 2
    assert store.get_record(tiles[2]) is None
    store.unprotect_area("flight:F2")
    assert store.put_many(items[2:]).evicted  # without protection the write makes room
