"""What the provider API serves: a tile store holding, per z/x/y, the newest trusted imagery.

It is a `terrafix.tiles` store (same backends, atomic writes, hash-checked reads) under
`<root>/serving` (SQLite) or the PostgreSQL schema `<schema>_serving`. The operator seeds it
with the base (satellite) imagery; the voter publishes a promoted candidate into it when the
candidate is at least as recent as what is there, with source `ground-vote` and the
candidate's capture date, so provisioning applies the usual freshness rules. Candidates that
are not TRUSTED never enter it, and a published tile is served only while its vote stays
TRUSTED: what a publication replaces (the base imagery, or the tile's previous trusted
version) is kept in a second store, `<root>/superseded` (PostgreSQL `<schema>_superseded`),
and when a later vote turns to CONFLICT (an independent flight disagrees) or PENDING, the
voter withdraws the published tile and serves that earlier version again, or nothing where
there was none; the vote's evidence says what is served and what was withdrawn.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
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


def open_superseded_store(root: str | Path, dsn: str | None, schema: str, *,
                          reconcile: bool = True) -> TileStore:
    """Per z/x/y, what the current publication replaced in the serving store (see module)."""
    mode = "full" if reconcile else "none"
    if dsn:
        return open_store(Path(root) / "superseded", dsn=dsn, schema=f"{schema}_superseded",
                          budget_bytes=_NO_EVICTION_BYTES, reconcile=mode)
    return open_store(Path(root) / "superseded", budget_bytes=_NO_EVICTION_BYTES,
                      reconcile=mode)


@dataclass(frozen=True, slots=True)
class Served:
    """What the serving store holds for a tile (None fields: nothing is served)."""

    source: str | None
    sha256: str | None
    capture_date: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"source": self.source, "sha256": self.sha256, "capture_date": self.capture_date}


def served(store: TileStore, tile: TileId) -> Served:
    rec = store.get_record(tile)
    if rec is None:
        return Served(None, None, None)
    return Served(rec.source, rec.sha256, rec.capture_date.isoformat())


def publish(store: TileStore, tile: TileId, jpeg: bytes, captured_utc_s: float,
            superseded: TileStore | None = None) -> bool:
    """Serve `jpeg` for `tile` unless newer imagery is already served; True if written.
    What it replaces is kept first in `superseded`, so a withdrawal can serve it again."""
    captured = datetime.fromtimestamp(captured_utc_s, UTC).date()
    current = store.get_record(tile)
    if current is not None and current.capture_date > captured:
        log.info("tile %s: keeping %s imagery of %s over the vote's of %s", tile.path(),
                 current.source, current.capture_date, captured)
        return False
    if superseded is not None and current is not None \
            and current.sha256 != hashlib.sha256(jpeg).hexdigest():
        superseded.put_many([NewTile(tile, store.read_tile(tile, allow_rejected=True),
                                     current.capture_date, current.source,
                                     VotingStatus.TRUSTED)], on_conflict="replace")
    store.put_many([NewTile(tile, jpeg, captured, SOURCE, VotingStatus.TRUSTED)],
                   on_conflict="replace")
    return True


def withdraw(store: TileStore, superseded: TileStore, tile: TileId, published_sha256: str
             ) -> Served:
    """Stop serving the vote's publication `published_sha256` of `tile`: serve again what it
    replaced (kept in `superseded`), or nothing. A tile served now that is not that
    publication (newer base imagery loaded since) is left alone. Returns what is served."""
    current = store.get_record(tile)
    if current is None or current.sha256 != published_sha256:
        return served(store, tile)
    before = superseded.get_record(tile)
    if before is None:
        store.delete([tile])
        log.warning("tile %s: vote publication %s withdrawn; nothing served (there was no "
                    "imagery before it)", tile.path(), published_sha256[:16])
    else:
        store.put_many([NewTile(tile, superseded.read_tile(tile, allow_rejected=True),
                                before.capture_date, before.source, VotingStatus.TRUSTED)],
                       on_conflict="replace")
        log.warning("tile %s: vote publication %s withdrawn; serving again the %s imagery of "
                    "%s", tile.path(), published_sha256[:16], before.source,
                    before.capture_date)
    return served(store, tile)


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
