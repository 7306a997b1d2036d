"""The flight store: where in-flight tiles live until they are uploaded (REQUIREMENTS U1, R3).

The map cache stays read-only in the air; tiles made in flight go to a separate store, the
same `TileStore` code (atomic row + file writes, journal, reconciliation at open: crash-safe
like the cache) with its own root per flight, `<flight_tiles_dir>/<flight_id>/`, and a disk
budget equal to the per-flight cap (default 64 MiB). When a new tile does not fit, the oldest
tiles are dropped (the store's LRU order is the write order here: nothing reads them in the
air) and each drop is recorded. Rows carry source `flight:<flight_id>`, the capture date and
the voting status (PENDING, or LOW_TRUST for 3-5 m poses); the rest of the provenance is in the
JPEG (`provenance`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terrafix.geo.tiles import TileId
from terrafix.mapping.provenance import TileProvenance, embed
from terrafix.tiles.errors import BudgetExceededError
from terrafix.tiles.jpeg import encode_gray
from terrafix.tiles.records import NewTile, VotingStatus
from terrafix.tiles.sqlite_backend import SqliteBackend
from terrafix.tiles.store import TileStore

log = logging.getLogger(__name__)

DEFAULT_FLIGHT_CAP_BYTES = 64 * 1024 * 1024
FLIGHT_SOURCE_PREFIX = "flight:"
JPEG_QUALITY = 88


def flight_store_root(flight_tiles_dir: Path, flight_id: str) -> Path:
    if not flight_id or "/" in flight_id or flight_id.startswith("."):
        raise ValueError(f"flight id {flight_id!r} cannot name a folder")
    return Path(flight_tiles_dir) / flight_id


def open_flight_store(root: Path, *, cap_bytes: int = DEFAULT_FLIGHT_CAP_BYTES,
                      read_only: bool = False) -> TileStore:
    """The flight store at `root` (SQLite metadata in it; created when absent)."""
    root = Path(root)
    backend = SqliteBackend(root / "tiles.sqlite", read_only=read_only, create=not read_only)
    return TileStore(root, backend, budget_bytes=cap_bytes, fsync_files=True)


@dataclass(frozen=True, slots=True)
class StoredFlightTile:
    """What `put_flight_tile` did: the tile, its hash and size, what was dropped for it."""

    tile: TileId
    sha256: str
    size_bytes: int
    stored: bool
    dropped: tuple[TileId, ...]


def put_flight_tile(store: TileStore, tile: TileId, image: np.ndarray,
                    prov: TileProvenance,
                    on_record: Callable[[str, dict[str, Any]], None] | None = None
                    ) -> StoredFlightTile:
    """Encode and store one flight tile; records the tile (never its pixels) and each tile
    dropped for room. A tile already stored for this z/x/y in this flight is kept (first
    complete view wins; `stored` False)."""
    jpeg = embed(encode_gray(image, JPEG_QUALITY), prov)
    status = VotingStatus.PENDING if prov.trust == "normal" else VotingStatus.LOW_TRUST
    record = on_record or (lambda _t, _d: None)
    try:
        rep = store.put_many([NewTile(tile, jpeg, prov.captured_utc.date(),
                                      FLIGHT_SOURCE_PREFIX + prov.flight_id, status)],
                             on_conflict="skip", decode_check=False)
    except BudgetExceededError as exc:
        log.error("flight store %s full: tile %d/%d/%d not stored: %s", store.root, tile.z,
                  tile.x, tile.y, exc)
        record("mapping/tile_dropped", {"tile": f"{tile.z}/{tile.x}/{tile.y}",
                                        "reason": "flight store cap"})
        return StoredFlightTile(tile, "", len(jpeg), False, ())
    for t in rep.evicted:
        log.warning("flight store cap %d bytes: oldest tile %d/%d/%d dropped", store.budget_bytes,
                    t.z, t.x, t.y)
        record("mapping/tile_dropped", {"tile": f"{t.z}/{t.x}/{t.y}",
                                        "reason": f"flight cap {store.budget_bytes} bytes"})
    stored = tile in rep.inserted
    rec = store.get_record(tile)
    sha = rec.sha256 if rec is not None else ""
    if stored:
        record("mapping/tile", {"tile": f"{tile.z}/{tile.x}/{tile.y}", "sha256": sha,
                                "size": len(jpeg), "status": str(status), **prov.to_dict()})
    return StoredFlightTile(tile, sha, len(jpeg), stored, rep.evicted)
