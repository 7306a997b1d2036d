"""What the provider API serves: a tile store holding, per z/x/y, the newest trusted imagery.

It is a `terrafix.tiles` store (same backends, atomic writes, hash-checked reads) under
`<root>/serving` (SQLite) or the PostgreSQL schema `<schema>_serving`. The operator seeds it
with the base (satellite) imagery; the voter publishes a promoted candidate into it when the
candidate is at least as recent as what is there, with source `ground-vote` and the
candidate's capture date, so provisioning applies the usual freshness rules. Candidates that
are not TRUSTED never enter it. A tile published once stays served if a later vote turns to
CONFLICT (the base bytes it replaced are not kept); the conflict is visible in the votes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from terrafix.geo.tiles import TileId
from terrafix.tiles import NewTile, TileStore, VotingStatus, open_store

log = logging.getLogger(__name__)

SOURCE = "ground-vote"


# The serving store is the ground's own copy of the map, not a cache: nothing may be evicted
# from it (the tile store's LRU budget is set out of reach; the disk is the operator's limit).
_NO_EVICTION_BYTES = 1 << 60


def open_serving_store(root: str | Path, dsn: str | None, schema: str, *,
                       reconcile: bool = True) -> TileStore:
    """The serving store; reconcile=False for a process opened beside a running service
    (a start-up repair must not race the service's own writes)."""
    mode = "full" if reconcile else "none"
    if dsn:
        return open_store(Path(root) / "serving", dsn=dsn, schema=f"{schema}_serving",
                          budget_bytes=_NO_EVICTION_BYTES, reconcile=mode)
    return open_store(Path(root) / "serving", budget_bytes=_NO_EVICTION_BYTES, reconcile=mode)


def publish(store: TileStore, tile: TileId, jpeg: bytes, captured_utc_s: float) -> bool:
    """Serve `jpeg` for `tile` unless newer imagery is already served; True if written."""
    captured = datetime.fromtimestamp(captured_utc_s, UTC).date()
    current = store.get_record(tile)
    if current is not None and current.capture_date > captured:
        log.info("tile %s: keeping %s imagery of %s over the vote's of %s", tile.path(),
                 current.source, current.capture_date, captured)
        return False
    store.put_many([NewTile(tile, jpeg, captured, SOURCE, VotingStatus.TRUSTED)],
                   on_conflict="replace")
    return True


def seed_base(store: TileStore, tiles: Iterable[NewTile]) -> int:
    """Load base imagery (tiles already served are kept); returns how many were written."""
    batch: list[NewTile] = []
    written = 0
    for t in tiles:
        batch.append(t)
        if len(batch) >= 256:
            rep = store.put_many(batch, on_conflict="skip")
            written += len(rep.inserted)
            batch.clear()
    if batch:
        written += len(store.put_many(batch, on_conflict="skip").inserted)
    return written


def copy_from_store(source: TileStore) -> Iterable[NewTile]:
    """Every tile of another store (e.g. a provisioned cache) as base imagery."""
    for rec in source.backend.iter_records():
        yield NewTile(rec.tile, source.read_tile(rec.tile, allow_rejected=True),
                      rec.capture_date, rec.source, VotingStatus.TRUSTED)
