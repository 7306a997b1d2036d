"""Disk budget: least-recently-used eviction that never touches the flight's corridor (T4).

The cache persists between flights, so old areas are evicted to make room for new ones, in
order of last access. Tiles overlapping a protected area (the corridor of the flight being
prepared, registered by the manifest step) are never evicted: losing them would turn a planned
route into a refused take-off. When the evictable tiles cannot free enough room, the write is
refused with the numbers, rather than silently dropping the corridor.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import shapely
from shapely.geometry.base import BaseGeometry

from terrafix.geo.tiles import TileId
from terrafix.tiles.records import TileRecord

DEFAULT_BUDGET_BYTES = 10 * 1000**3  # 10 GB


@dataclass(frozen=True, slots=True)
class EvictionPlan:
    """Tiles to evict (oldest access first) and whether they free enough room."""

    victims: tuple[TileRecord, ...]
    freed_bytes: int
    needed_bytes: int

    @property
    def sufficient(self) -> bool:
        return self.freed_bytes >= self.needed_bytes


def plan_eviction(lru_records: Iterable[TileRecord], needed_bytes: int,
                  protected: BaseGeometry | None, keep: Collection[TileId] = ()) -> EvictionPlan:
    """Walk tiles in LRU order, skipping protected ones, until `needed_bytes` are freed."""
    if protected is not None:
        shapely.prepare(protected)
    victims: list[TileRecord] = []
    freed = 0
    for rec in lru_records:
        if freed >= needed_bytes:
            break
        if rec.tile in keep:
            continue
        if protected is not None:
            b = shapely.box(*rec.bounds)
            if protected.intersects(b) and not protected.touches(b):
                continue
        victims.append(rec)
        freed += rec.size_bytes
    return EvictionPlan(tuple(victims), freed, needed_bytes)
