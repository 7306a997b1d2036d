"""`TileStore`: JPEG tile files under a cache root plus their metadata rows (T1-T4).

Layout of a cache root (vision keeps its own products next to the tiles):
```
<root>/tiles/{z}/{x}/{y}.jpg      the tiles (256x256 grayscale JPEG)
<root>/tiles/.staging/            batches being written (see `journal`)
<root>/tiles.sqlite               metadata (SQLite backend; PostgreSQL lives on a server)
<root>/quarantine/                tiles that failed their hash or decode check
<root>/sectors.geojson            freshness sectors in force
<root>/features/, <root>/retrieval/   map features and retrieval index (vision)
```
The store owns everything that is about files (atomic placement, hashes, quarantine,
reconciliation, mosaics); the backend only keeps rows, so SQLite and PostgreSQL share all of it.
Every read checks the SHA-256 of the bytes against the row: a mismatch quarantines the tile and
raises `CorruptTileError` naming it, so a corrupt tile is never served. A read-only store (the
in-flight mode) never writes: reconciliation only reports, last-access times are not updated,
and every write method raises `ReadOnlyStoreError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from hashlib import sha256
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from terrafix.geo.geodesic import distance_m
from terrafix.geo.tiles import (
    TILE_SIZE_PX,
    TileId,
    check_zoom,
    lonlat_to_global_px,
    tile_bounds,
)
from terrafix.tiles.backend import MetadataBackend, MetadataTransaction, record_from_row
from terrafix.tiles.budget import DEFAULT_BUDGET_BYTES, plan_eviction
from terrafix.tiles.errors import (
    BudgetExceededError,
    CorruptTileError,
    DuplicateTileError,
    InvalidTileError,
    ReadOnlyStoreError,
    StoreConfigError,
    TileCacheError,
    TileNotFoundError,
)
from terrafix.tiles.freshness import FreshnessDecision, FreshnessPolicy, SectorClass
from terrafix.tiles.geometry import SeparatingAxes, circle_polygon, interiors_overlap
from terrafix.tiles.journal import Intent, WriteBatch, recover
from terrafix.tiles.jpeg import check_tile_jpeg
from terrafix.tiles.reconcile import ReconcileReport, scan_tile_files
from terrafix.tiles.records import (
    FreshnessLabel,
    Mosaic,
    MosaicTile,
    NewTile,
    PutReport,
    QuarantineEntry,
    StoreSummary,
    TileHits,
    TileRecord,
    VotingStatus,
)

log = logging.getLogger(__name__)

OnConflict = Literal["error", "skip", "replace"]
ReconcileMode = Literal["full", "journal", "none"]
UPLOADABLE: tuple[VotingStatus, ...] = (VotingStatus.PENDING, VotingStatus.LOW_TRUST)
"""Statuses of in-flight tiles still waiting for their upload."""
SECTORS_FILE = "sectors.geojson"
MAX_MOSAIC_PIXELS = 16384 * 16384
_TOUCH_FLUSH_COUNT = 512
_BBOX_PAD_DEG = 1e-9  # pads mosaic box queries against rounding at tile edges
_SNAP_PX = 1e-6
_PARALLEL_MIN_TILES = 8
# Worker threads shared by every store (mosaic decodes, JPEG checks, provisioning blocks).
DECODE_WORKERS = min(4, os.cpu_count() or 1)
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _decode_pool() -> ThreadPoolExecutor:
    """Threads shared by every store's mosaics (created on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=DECODE_WORKERS,
                                       thread_name_prefix="tile-decode")
        return _POOL


def _now_utc_s() -> float:
    return time.time()


def _check_item(item: NewTile, decode: bool = True) -> None:
    t = item.tile
    check_tile_jpeg(item.jpeg, f"tile {t.z}/{t.x}/{t.y}", decode=decode)


def decode_pool() -> ThreadPoolExecutor:
    """The shared worker threads for JPEG work (provisioning uses them to encode)."""
    return _decode_pool()


class PreparedBatch:
    """Tiles checked, hashed and staged by `TileStore.prepare_batch`, not yet committed.

    records: the rows to write (one per tile, in batch order); staging: the batch's staging
    folder (None once committed or discarded, or for an empty batch).
    """

    __slots__ = ("created_utc_s", "records", "staging")

    def __init__(self, records: list[TileRecord], created_utc_s: float,
                 staging: WriteBatch | None) -> None:
        self.records = records
        self.created_utc_s = created_utc_s
        self.staging = staging

    def discard(self) -> None:
        """Remove the staged files without committing anything (idempotent)."""
        if self.staging is not None:
            self.staging.discard()
            self.staging = None


class TileStore:
    """Tiles of one cache root and their metadata (see module docstring)."""

    def __init__(self, root: str | Path, backend: MetadataBackend, *,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 freshness: FreshnessPolicy | None = None, today: date | None = None,
                 reconcile: ReconcileMode = "full", fsync_files: bool = False) -> None:
        self.root = Path(root)
        self.backend = backend
        self.read_only = backend.read_only
        self.budget_bytes = int(budget_bytes)
        self.tiles_dir = self.root / "tiles"
        self._tiles_prefix = f"{self.tiles_dir}{os.sep}"
        self.staging_dir = self.tiles_dir / ".staging"
        self.quarantine_dir = self.root / "quarantine"
        self._fsync_files = fsync_files
        self._today = today
        self._touches: dict[TileId, float] = {}
        self._touch_lock = threading.Lock()
        self._corrupt: dict[TileId, str] = {}  # read-only stores remember instead of moving
        # Fault-injection point for crash tests: called after the files of a batch are in
        # place and before the transaction commits.
        self.before_commit: Callable[[], None] | None = None
        if not self.read_only:
            self.tiles_dir.mkdir(parents=True, exist_ok=True)
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise StoreConfigError(f"cache root {self.root} does not exist")
        sectors_path = self.root / SECTORS_FILE
        if freshness is not None:
            self.freshness = freshness
        elif sectors_path.exists():
            self.freshness = FreshnessPolicy.load(sectors_path)
        else:
            self.freshness = FreshnessPolicy()
        self.reconcile_report = self.reconcile(full=reconcile == "full") \
            if reconcile != "none" else ReconcileReport(fixed=False)

    # --- paths and lifecycle -------------------------------------------------------------
    @property
    def features_dir(self) -> Path:
        """Where vision keeps precomputed map features for this cache."""
        return self.root / "features"

    @property
    def retrieval_dir(self) -> Path:
        """Where vision keeps the retrieval chunks and index for this cache."""
        return self.root / "retrieval"

    @property
    def today(self) -> date:
        """The date freshness is judged at (the flight date; UTC today unless set)."""
        return self._today or datetime.now(UTC).date()

    @today.setter
    def today(self, value: date | None) -> None:
        self._today = value

    def tile_path(self, tile: TileId) -> Path:
        return Path(self._tile_file(tile))

    def _tile_file(self, tile: TileId) -> str:
        """tile_path as a str: hot paths (reads, batch writes) skip building a Path."""
        return f"{self._tiles_prefix}{tile.z}/{tile.x}/{tile.y}.jpg"

    def close(self) -> None:
        if not self.read_only:
            self.flush_access_times()
        self.backend.close()

    def __enter__(self) -> TileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_writable(self, what: str) -> None:
        if self.read_only:
            raise ReadOnlyStoreError(f"cannot {what}: tile store {self.root} is open read-only "
                                     f"(the in-flight mode)")

    # --- writes --------------------------------------------------------------------------
    def put(self, tile: TileId, jpeg: bytes, *, capture_date: date, source: str,
            voting_status: VotingStatus = VotingStatus.TRUSTED,
            on_conflict: OnConflict = "error") -> PutReport:
        """Store one tile (see `put_many`)."""
        return self.put_many([NewTile(tile, jpeg, capture_date, source, voting_status)],
                             on_conflict=on_conflict)

    def put_many(self, items: Sequence[NewTile], *, on_conflict: OnConflict = "error",
                 decode_check: bool = True) -> PutReport:
        """Store tiles atomically as one batch: all rows and files land, or none.

        A tile already stored with identical bytes is left alone (`unchanged`). One stored with
        different bytes raises `DuplicateTileError` (on_conflict="error", nothing of the batch
        is written), is kept as it is ("skip"), or is replaced ("replace"). The disk budget is
        enforced first, evicting least-recently-used tiles outside protected areas.
        Every tile's JPEG structure is checked (SOI, EOI, a 256x256 frame header); with
        decode_check (the default) its data is also decoded at 1/8 scale. Pass False only for
        bytes just encoded by this process (`jpeg.encode_gray`, raster provisioning).
        Same as `commit_batch(prepare_batch(items))`.
        """
        self._check_conflict_mode(on_conflict)
        return self.commit_batch(self.prepare_batch(items, decode_check=decode_check),
                                 on_conflict=on_conflict)

    def prepare_batch(self, items: Sequence[NewTile], *,
                      decode_check: bool = True) -> PreparedBatch:
        """The first half of `put_many`, which touches no database row: check the JPEGs, hash
        and classify the tiles and write them into a staging folder of their own.

        Safe to call from any thread, so a producer (raster provisioning) can prepare the next
        batches while one thread commits the previous ones: creating a file costs ~0.2-1 ms on
        a busy ext4 disk, the largest single cost of storing a tile. Pass the result to
        `commit_batch`, or `discard()` it.
        """
        self._require_writable("store tiles")
        seen: set[TileId] = set()
        now = _now_utc_s()
        prepared: list[tuple[NewTile, TileRecord]] = []
        if decode_check and len(items) >= _PARALLEL_MIN_TILES:  # the decodes release the GIL
            list(_decode_pool().map(_check_item, items))
        else:
            for item in items:
                _check_item(item, decode_check)
        today = self.today
        labels: dict[tuple[SectorClass, date], FreshnessLabel] = {}  # one decision per pair
        for item in items:
            t = item.tile
            if t in seen:
                raise InvalidTileError(f"tile {t.z}/{t.x}/{t.y} appears twice in one batch")
            seen.add(t)
            if not item.source:
                raise InvalidTileError(f"tile {t.z}/{t.x}/{t.y}: source must not be empty")
            bounds = tile_bounds(t)
            sector_class = self.freshness.class_for_bounds(bounds)
            key = (sector_class, item.capture_date)
            label = labels.get(key)
            if label is None:
                label = labels[key] = self.freshness.decide(sector_class, item.capture_date,
                                                            today).label
            prepared.append((item, TileRecord(
                tile=t, bounds=bounds, capture_date=item.capture_date, source=item.source,
                sha256=sha256(item.jpeg).hexdigest(), size_bytes=len(item.jpeg),
                sector_class=sector_class.value, freshness=label,
                voting_status=VotingStatus(item.voting_status), last_access_utc_s=now,
                upload_attempts=0)))
        if not prepared:
            return PreparedBatch([], now, None)
        batch = WriteBatch(self.staging_dir, self._tile_file, self._fsync_files)
        try:
            for item, _rec in prepared:
                batch.stage(item.tile, item.jpeg)
        except BaseException:
            batch.discard()
            raise
        return PreparedBatch([rec for _item, rec in prepared], now, batch)

    @staticmethod
    def _check_conflict_mode(on_conflict: str) -> None:
        if on_conflict not in ("error", "skip", "replace"):
            raise TileCacheError(f"on_conflict must be error, skip or replace, got {on_conflict!r}")

    def commit_batch(self, prepared: PreparedBatch, *,
                     on_conflict: OnConflict = "error") -> PutReport:
        """The second half of `put_many`: make room in the budget, then place the staged
        files and write the rows in one transaction (see `journal`). Consumes the batch."""
        self._require_writable("store tiles")
        self._check_conflict_mode(on_conflict)
        batch = prepared.staging
        if batch is None:
            return PutReport()
        prepared.staging = None
        inserted: list[TileId] = []
        replaced: list[TileId] = []
        unchanged: list[TileId] = []
        try:
            records = prepared.records
            evicted = self.make_room(self._incoming_bytes(records),
                                     keep={rec.tile for rec in records})
            with self.backend.transaction() as tx:
                existing = tx.existing([rec.tile for rec in records])
                to_write: list[TileRecord] = []
                intents: list[Intent] = []
                for rec in records:
                    old = existing.get(rec.tile)
                    if old is not None and old.sha256 == rec.sha256:
                        unchanged.append(rec.tile)
                        continue
                    if old is not None:
                        if on_conflict == "error":
                            t = rec.tile
                            raise DuplicateTileError(
                                f"tile {t.z}/{t.x}/{t.y} is already stored with sha256 "
                                f"{old.sha256[:16]}… (captured {old.capture_date}, source "
                                f"{old.source!r}); refusing to overwrite it with "
                                f"{rec.sha256[:16]}… (pass on_conflict='replace' to replace)")
                        if on_conflict == "skip":
                            unchanged.append(rec.tile)
                            continue
                        replaced.append(rec.tile)
                    else:
                        inserted.append(rec.tile)
                    to_write.append(rec)
                    intents.append(Intent(rec.tile, rec.sha256, old is not None))
                if to_write:
                    batch.write_intent(intents)
                    tx.upsert(to_write, prepared.created_utc_s)
                    for intent in intents:
                        batch.place(intent)
                    if self.before_commit is not None:
                        self.before_commit()
        except BaseException:
            batch.undo()
            batch.discard()
            raise
        batch.discard()
        return PutReport(tuple(inserted), tuple(replaced), tuple(unchanged),
                         tuple(r.tile for r in evicted))

    def delete(self, tiles: Iterable[TileId]) -> int:
        """Remove tiles (rows first, then files: a crash in between leaves orphan files, which
        the next open removes). Returns how many rows existed."""
        self._require_writable("delete tiles")
        tiles = list(tiles)
        with self.backend.transaction() as tx:
            present = list(tx.existing(tiles))
            tx.delete(present)
        for t in present:
            self.tile_path(t).unlink(missing_ok=True)
        return len(present)

    def set_upload_state(self, tile: TileId, status: VotingStatus, upload_attempts: int) -> None:
        """Record the voting status and upload attempts of a tile (upload/ground side).

        UPLOAD_GIVEUP is forward only: a given-up tile never goes back to PENDING or
        LOW_TRUST (InvalidTileError), so a later upload cannot pick it up again."""
        self._require_writable("update upload state")
        with self.backend.transaction() as tx:
            old = tx.existing([tile]).get(tile)
            if old is None:
                raise TileNotFoundError(f"no tile {tile.z}/{tile.x}/{tile.y} in {self.root}")
            if old.voting_status == VotingStatus.UPLOAD_GIVEUP and status in UPLOADABLE:
                raise InvalidTileError(
                    f"tile {tile.z}/{tile.x}/{tile.y} was given up after {old.upload_attempts} "
                    f"upload attempts; UPLOAD_GIVEUP is final, refusing to set {status}")
            tx.set_upload_state(tile, status, upload_attempts)

    def count_upload_rejection(self, tile: TileId,
                               max_attempts: int) -> tuple[int, VotingStatus] | None:
        """Add one rejected upload attempt to a PENDING/LOW_TRUST tile, atomically (one UPDATE
        in the database, so two uploaders cannot lose a count), moving it to UPLOAD_GIVEUP when
        the count reaches `max_attempts`. Returns (attempts, status) after the update, or None
        when the tile is absent or no longer uploadable (already UPLOADED or given up)."""
        self._require_writable("count an upload rejection")
        if max_attempts < 1:
            raise TileCacheError(f"max_attempts must be >= 1, got {max_attempts}")
        with self.backend.transaction() as tx:
            return tx.count_upload_rejection(tile, int(max_attempts), UPLOADABLE)

    def mark_uploaded(self, tiles: Sequence[TileId]) -> int:
        """Set UPLOADED on those tiles that are still PENDING/LOW_TRUST, in one transaction
        (a given-up or already uploaded tile keeps its status); returns how many changed."""
        self._require_writable("mark tiles uploaded")
        changed = 0
        with self.backend.transaction() as tx:
            for tile, rec in tx.existing(list(tiles)).items():
                if rec.voting_status in UPLOADABLE:
                    tx.set_upload_state(tile, VotingStatus.UPLOADED, rec.upload_attempts)
                    changed += 1
        return changed

    def uploadable_records(self) -> list[TileRecord]:
        """Tiles waiting for upload (PENDING or LOW_TRUST), oldest row first."""
        return [r for r in self.backend.iter_lru() if r.voting_status in UPLOADABLE]

    # --- budget --------------------------------------------------------------------------
    def protect_area(self, name: str, polygon: BaseGeometry) -> None:
        """Never evict tiles overlapping `polygon` (a flight corridor) until unprotected."""
        self._require_writable("protect an area")
        with self.backend.transaction() as tx:
            tx.set_protected_area(name, polygon.wkt, _now_utc_s())

    def unprotect_area(self, name: str) -> None:
        self._require_writable("unprotect an area")
        with self.backend.transaction() as tx:
            tx.remove_protected_area(name)

    def protected_areas(self) -> dict[str, BaseGeometry]:
        return {k: shapely.from_wkt(v) for k, v in self.backend.protected_areas().items()}

    def _incoming_bytes(self, prepared: Sequence[TileRecord]) -> int:
        """Bytes a batch adds to the cache (new tiles, and growth of replaced ones)."""
        upper = sum(rec.size_bytes for rec in prepared)
        if self.backend.totals()[1] + upper <= self.budget_bytes:
            return upper  # fits even if every tile were new: no need to look them up
        incoming = 0
        stored = self.backend.get_many([rec.tile for rec in prepared])
        for rec in prepared:
            old = stored.get(rec.tile)
            if old is None:
                incoming += rec.size_bytes
            elif old.sha256 != rec.sha256:
                incoming += max(rec.size_bytes - old.size_bytes, 0)
        return incoming

    def make_room(self, incoming_bytes: int,
                  keep: Collection[TileId] = ()) -> tuple[TileRecord, ...]:
        """Evict least-recently-used tiles outside protected areas (and outside `keep`) until
        `incoming_bytes` more fit in the budget; returns the evicted records.

        Raises BudgetExceededError, evicting nothing, when even that cannot make enough room.
        """
        self._require_writable("evict tiles")
        count, used = self.backend.totals()
        if used + incoming_bytes <= self.budget_bytes:
            return ()
        areas = self.protected_areas()
        protected = shapely.union_all(list(areas.values())) if areas else None
        plan = plan_eviction(self.backend.iter_lru(),
                             used + incoming_bytes - self.budget_bytes, protected, keep)
        if not plan.sufficient:
            raise BudgetExceededError(
                f"disk budget of {self.budget_bytes} bytes cannot take {incoming_bytes} more "
                f"bytes: {used} bytes in {count} tiles are used and only {plan.freed_bytes} "
                f"bytes are evictable outside the protected areas {sorted(areas)}; raise the "
                f"budget or shrink the area")
        victims = [r.tile for r in plan.victims]
        log.info("budget: evicting %d least-recently-used tiles (%d bytes)", len(victims),
                 plan.freed_bytes)
        self.delete(victims)
        return plan.victims

    # --- reads ---------------------------------------------------------------------------
    def get_record(self, tile: TileId) -> TileRecord | None:
        return self.backend.get(tile)

    def freshness_of(self, record: TileRecord) -> FreshnessDecision:
        return self.freshness.decide(record.sector_class, record.capture_date, self.today)

    def read_tile(self, tile: TileId, *, allow_rejected: bool = False) -> bytes:
        """The verified JPEG bytes of a tile.

        Raises TileNotFoundError, CorruptTileError (hash mismatch or missing file: the tile is
        quarantined), or TileCacheError when the freshness rules reject the tile (unless
        allow_rejected, which the provider server and exports use: they serve the archive,
        not a flight).
        """
        rec = self.backend.get(tile)
        if rec is None:
            raise TileNotFoundError(f"no tile {tile.z}/{tile.x}/{tile.y} in {self.root}")
        if not allow_rejected:
            decision = self.freshness_of(rec)
            if decision.label == FreshnessLabel.REJECTED:
                raise TileCacheError(f"tile {tile.z}/{tile.x}/{tile.y} not served: "
                                     f"{decision.reason}")
        return self._read_verified(rec)

    def read_image(self, tile: TileId, *, allow_rejected: bool = False) -> np.ndarray:
        """The tile decoded to a (256, 256) uint8 grayscale image (checked like read_tile)."""
        rec = self.backend.get(tile)
        if rec is None:
            raise TileNotFoundError(f"no tile {tile.z}/{tile.x}/{tile.y} in {self.root}")
        if not allow_rejected and self.freshness_of(rec).label == FreshnessLabel.REJECTED:
            raise TileCacheError(f"tile {tile.z}/{tile.x}/{tile.y} not served: "
                                 f"{self.freshness_of(rec).reason}")
        return self._decode_verified(rec)

    def _read_verified(self, rec: TileRecord, retried: bool = False) -> bytes:
        t = rec.tile
        if t in self._corrupt:
            raise CorruptTileError(self._corrupt[t])
        # A str path and a plain open(): pathlib costs as much as the read itself, and mosaics
        # read tens of tiles per call.
        try:
            with open(self._tile_file(t), "rb") as f:
                data: bytes | None = f.read()
        except FileNotFoundError:
            data = None
        found = "file missing" if data is None else sha256(data).hexdigest()
        if found == rec.sha256:
            self._note_access(t)
            return data  # type: ignore[return-value]
        # A writer replacing this tile may have renamed its file in and not yet committed its
        # row: wait for that writer (quarantine takes the writer lock) or, read-only, poll the
        # row briefly; a changed row means "replaced", not "corrupt".
        if not retried:
            newer = self._newer_record(rec)
            if newer is not None:
                return self._read_verified(newer, retried=True)
        reason = "file missing" if data is None else "content hash mismatch"
        msg, newer = self._quarantine(rec, found, reason)
        if newer is not None and not retried:
            return self._read_verified(newer, retried=True)
        raise CorruptTileError(msg)

    def _newer_record(self, rec: TileRecord) -> TileRecord | None:
        polls = 3 if self.read_only else 1
        for i in range(polls):
            if i:
                time.sleep(0.05)
            fresh = self.backend.get(rec.tile)
            if fresh is not None and fresh.sha256 != rec.sha256:
                return fresh
        return None

    def _decode_verified(self, rec: TileRecord) -> np.ndarray:
        data = self._read_verified(rec)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None or img.shape != (TILE_SIZE_PX, TILE_SIZE_PX):
            raise CorruptTileError(self._quarantine(rec, rec.sha256, "undecodable JPEG")[0])
        return img

    def _quarantine(self, rec: TileRecord, found: str,
                    reason: str) -> tuple[str, TileRecord | None]:
        """Take a failing tile out of service; returns the message and, when the tile turned
        out to have been replaced meanwhile (nothing quarantined), its new record."""
        t = rec.tile
        path = self.tile_path(t)
        msg = (f"corrupt tile {t.z}/{t.x}/{t.y} ({path}): {reason}; expected sha256 "
               f"{rec.sha256}, found {found}")
        if self.read_only:
            msg += "; withheld (store is read-only, quarantine it on the ground)"
            self._corrupt[t] = msg
            log.error("%s", msg)
            return msg, None
        dest = self.quarantine_dir / f"{t.z}-{t.x}-{t.y}-{time.time_ns()}.jpg"
        with self.backend.transaction() as tx:
            current = tx.existing([t]).get(t)
            if current is None or current.sha256 != rec.sha256:
                return msg + "; the tile was replaced or removed meanwhile", current
            if path.exists():
                self.quarantine_dir.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
            tx.delete([t])
            tx.add_quarantine(QuarantineEntry(t, rec.sha256, found, reason, str(dest),
                                              _now_utc_s()))
        msg += f"; quarantined to {dest}"
        log.error("%s", msg)
        return msg, None

    def quarantined(self) -> list[QuarantineEntry]:
        return self.backend.quarantine_entries()

    def _note_access(self, tile: TileId) -> None:
        if self.read_only:
            return
        with self._touch_lock:
            self._touches[tile] = _now_utc_s()
            full = len(self._touches) >= _TOUCH_FLUSH_COUNT
        if full:
            self.flush_access_times()

    def flush_access_times(self) -> None:
        """Write buffered last-access times (reads are batched into one transaction)."""
        self._require_writable("record access times")
        with self._touch_lock:
            touches, self._touches = list(self._touches.items()), {}
        if touches:
            with self.backend.transaction() as tx:
                tx.touch(touches)

    # --- spatial queries -----------------------------------------------------------------
    def tile_hits(self, polygon_wgs84: BaseGeometry, z: int | None = None) -> TileHits:
        """Tiles whose interior overlaps a lon/lat polygon, as columns (see `TileHits`).

        The same answer as `tiles_intersecting`, without building a record per tile: this is
        the per-frame query of the navigation (a camera footprint), where records would cost
        several times the index search.
        """
        if z is not None:
            check_zoom(z)
        if polygon_wgs84.is_empty:
            return TileHits.empty(self.backend.get_many)
        axes = SeparatingAxes.of(polygon_wgs84)
        if axes is None:  # not convex: candidates from the index, the shapely test here
            cols = self.backend.bbox_hits(*polygon_wgs84.bounds, z)
            return self._hits(cols[interiors_overlap(polygon_wgs84, cols[:, 3:7])])
        # convex (camera footprints): the backend applies the exact test (see bbox_hits)
        return self._hits(self.backend.bbox_hits(*polygon_wgs84.bounds, z, axes))

    def hits_in_box(self, west: float, south: float, east: float, north: float,
                    z: int | None = None) -> TileHits:
        """Columnar `records_in_box`: tiles whose bounds overlap a box (edges included)."""
        if z is not None:
            check_zoom(z)
        return self._hits(self.backend.bbox_hits(west, south, east, north, z))

    def _hits(self, cols: np.ndarray) -> TileHits:
        """TileHits from (M, 9) float64 columns of `backend.hit_columns`."""
        ids = cols[:, :3].astype(np.int64)
        codes = cols[:, 7:].astype(np.int8)
        return TileHits(ids[:, 0], ids[:, 1], ids[:, 2], cols[:, 3:7], codes[:, 0], codes[:, 1],
                        self.backend.get_many)

    def tiles_intersecting(self, polygon_wgs84: BaseGeometry,
                           z: int | None = None) -> list[TileRecord]:
        """Tiles whose interior overlaps a lon/lat polygon (e.g. a camera footprint)."""
        if z is not None:
            check_zoom(z)
        if polygon_wgs84.is_empty:
            return []
        rows = self.backend.bbox_rows(*polygon_wgs84.bounds, z)
        if not rows:
            return []
        keep = interiors_overlap(polygon_wgs84, np.array([r[3:7] for r in rows]))
        return [record_from_row(r) for r, k in zip(rows, keep.tolist(), strict=True) if k]

    def records_in_box(self, west: float, south: float, east: float, north: float,
                       z: int | None = None) -> list[TileRecord]:
        """Tiles whose bounds overlap a box (edges included: a superset for exact tests)."""
        return [record_from_row(r) for r in self.backend.bbox_rows(west, south, east, north, z)]

    def tiles_within(self, lat_deg: float, lon_deg: float, radius_m: float,
                     z: int | None = None) -> list[TileRecord]:
        """Tiles with any point within `radius_m` (geodesic) of a point, nearest first."""
        candidates = self.tiles_intersecting(circle_polygon(lat_deg, lon_deg, radius_m), z)
        if not candidates:
            return []
        b = np.array([r.bounds for r in candidates])
        near_lon = np.clip(lon_deg, b[:, 0], b[:, 2])
        near_lat = np.clip(lat_deg, b[:, 1], b[:, 3])
        d = np.asarray(distance_m(np.full(len(b), lat_deg), np.full(len(b), lon_deg),
                                  near_lat, near_lon), dtype=float)
        order = np.argsort(d, kind="stable")
        return [candidates[i] for i in order if d[i] <= radius_m]

    def mosaic(self, west: float, south: float, east: float, north: float, z: int) -> Mosaic:
        """North-up image of a WGS84 box at zoom z, georeferenced in global pixels.

        The image covers every global pixel the box touches. Tiles that are missing, rejected
        by the freshness rules or corrupt leave zeros and `valid` False and are listed.
        """
        check_zoom(z)
        if not (west < east and south < north):
            raise TileCacheError(f"mosaic bounds must satisfy west < east and south < north, "
                                 f"got ({west}, {south}, {east}, {north})")
        fx0, fy0 = lonlat_to_global_px(west, north, z)
        fx1, fy1 = lonlat_to_global_px(east, south, z)
        # Bounds taken from tile edges come back from the lon/lat round trip a hair off the
        # integer pixel; snap those so the mosaic does not grow a 1-px sliver of a neighbour.
        px_x0, px_y0 = math.floor(fx0 + _SNAP_PX), math.floor(fy0 + _SNAP_PX)
        px_x1, px_y1 = math.ceil(fx1 - _SNAP_PX), math.ceil(fy1 - _SNAP_PX)
        width, height = px_x1 - px_x0, px_y1 - px_y0
        if width * height > MAX_MOSAIC_PIXELS:
            raise TileCacheError(f"mosaic of {width}x{height} px at z{z} exceeds the limit of "
                                 f"{MAX_MOSAIC_PIXELS} px; use a smaller box or a lower zoom")
        image = np.zeros((height, width), np.uint8)
        valid = np.zeros((height, width), bool)
        records = {r.tile: r for r in self.records_in_box(
            west - _BBOX_PAD_DEG, south - _BBOX_PAD_DEG, east + _BBOX_PAD_DEG,
            north + _BBOX_PAD_DEG, z)}
        used: list[MosaicTile] = []
        missing: list[TileId] = []
        rejected: list[TileId] = []
        corrupt: list[TileId] = []
        today = self.today
        decisions: dict[tuple[str, date], FreshnessDecision] = {}
        todo: list[tuple[TileRecord, FreshnessDecision]] = []
        for ty in range(px_y0 // TILE_SIZE_PX, (px_y1 - 1) // TILE_SIZE_PX + 1):
            for tx in range(px_x0 // TILE_SIZE_PX, (px_x1 - 1) // TILE_SIZE_PX + 1):
                t = TileId(z, tx, ty)
                rec = records.get(t)
                if rec is None:
                    missing.append(t)
                    continue
                key = (rec.sector_class, rec.capture_date)
                decision = decisions.get(key)
                if decision is None:
                    decision = decisions[key] = self.freshness.decide(*key, today)
                if decision.label == FreshnessLabel.REJECTED:
                    rejected.append(t)
                    continue
                todo.append((rec, decision))
        # Reading, hashing and decoding dominate (decoding: ~0.3-0.4 ms of a core per tile);
        # OpenCV, hashlib and numpy copies release the GIL, so the shared worker threads each
        # take whole tiles and paste them straight into the output (disjoint regions).
        def paste(rec: TileRecord) -> bool:
            tile_img = self._decode_or_none(rec)
            if tile_img is None:
                return False
            t = rec.tile
            gx0, gy0 = t.x * TILE_SIZE_PX, t.y * TILE_SIZE_PX
            cx0, cy0 = max(gx0, px_x0), max(gy0, px_y0)
            cx1, cy1 = min(gx0 + TILE_SIZE_PX, px_x1), min(gy0 + TILE_SIZE_PX, px_y1)
            image[cy0 - px_y0:cy1 - px_y0, cx0 - px_x0:cx1 - px_x0] = \
                tile_img[cy0 - gy0:cy1 - gy0, cx0 - gx0:cx1 - gx0]
            valid[cy0 - px_y0:cy1 - px_y0, cx0 - px_x0:cx1 - px_x0] = True
            return True

        if len(todo) >= _PARALLEL_MIN_TILES:
            pasted = list(_decode_pool().map(paste, (r for r, _ in todo)))
        else:
            pasted = [paste(r) for r, _ in todo]
        for (rec, decision), ok in zip(todo, pasted, strict=True):
            if ok:
                used.append(MosaicTile(rec.tile, rec.capture_date, rec.sector_class,
                                       decision.label))
            else:
                corrupt.append(rec.tile)
        return Mosaic(image, valid, z, px_x0, px_y0, tuple(used), tuple(missing),
                      tuple(rejected), tuple(corrupt))

    def _decode_or_none(self, rec: TileRecord) -> np.ndarray | None:
        try:
            return self._decode_verified(rec)
        except CorruptTileError:
            return None

    # --- sectors -------------------------------------------------------------------------
    def set_sectors(self, policy: FreshnessPolicy) -> int:
        """Adopt freshness sectors: save them in the root and reclassify every tile.

        Returns how many tiles changed class or label.
        """
        self._require_writable("set sectors")
        tmp = self.root / f".{SECTORS_FILE}.tmp"
        tmp.write_text(json.dumps(policy.to_geojson()), "utf-8")
        os.replace(tmp, self.root / SECTORS_FILE)
        self.freshness = policy
        today = self.today
        changes = []
        for rec in self.backend.iter_records():
            cls = policy.class_for_bounds(rec.bounds)
            label = policy.decide(cls, rec.capture_date, today).label
            if cls.value != rec.sector_class or label != rec.freshness:
                changes.append((rec.tile, cls.value, label))
        for i in range(0, len(changes), 5000):
            with self.backend.transaction() as tx:
                tx.classify(changes[i:i + 5000])
        return len(changes)

    # --- overview ------------------------------------------------------------------------
    def summary(self) -> StoreSummary:
        return self.backend.summary()

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk per part of the cache root (tiles, features, retrieval, ...)."""
        def du(path: Path) -> int:
            if path.is_file():
                return path.stat().st_size
            total = 0
            for dirpath, _dirs, files in os.walk(path):
                for f in files:
                    with contextlib.suppress(FileNotFoundError):
                        total += os.stat(os.path.join(dirpath, f)).st_size
            return total

        out = {"tiles": du(self.tiles_dir), "features": du(self.features_dir),
               "retrieval": du(self.retrieval_dir), "quarantine": du(self.quarantine_dir)}
        db = [p for p in self.root.glob("tiles.sqlite*") if p.is_file()]
        if db:
            out["metadata_db"] = sum(p.stat().st_size for p in db)
        return out

    # --- reconciliation ------------------------------------------------------------------
    def reconcile(self, full: bool = True) -> ReconcileReport:
        """Replay interrupted batches and (full) compare rows with files; see `reconcile`."""

        def committed_sha(tile: TileId) -> str | None:
            rec = self.backend.get(tile)
            return None if rec is None else rec.sha256

        if self.read_only:
            report = self._scan(full, committed_sha, None)
        else:
            # Under the writer lock no other batch is between placing its files and
            # committing, so the rows and files the scan compares are consistent.
            with self.backend.transaction() as tx:
                report = self._scan(full, committed_sha, tx)
            for tile in report.size_mismatches:
                rec = self.backend.get(tile)
                if rec is not None:
                    with contextlib.suppress(CorruptTileError):
                        self._read_verified(rec)
        if not report.clean:
            for line in report.lines():
                log.warning("tile store %s: %s", self.root, line)
        return report

    def _scan(self, full: bool, committed_sha: Callable[[TileId], str | None],
              tx: MetadataTransaction | None) -> ReconcileReport:
        batches = tuple(recover(self.staging_dir, self.tile_path, committed_sha,
                                fix=tx is not None))
        if not full:
            return ReconcileReport(fixed=tx is not None, batches=batches)
        rows = {r.tile: r.size_bytes for r in self.backend.iter_records()}
        files, strays = scan_tile_files(self.tiles_dir)
        orphan_files = sorted(self.tile_path(t) for t in files.keys() - rows.keys()) + strays
        orphan_rows = sorted(rows.keys() - files.keys())
        mismatched = sorted(t for t in rows.keys() & files.keys() if rows[t] != files[t])
        if tx is not None:
            for p in orphan_files:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            tx.delete(orphan_rows)
        return ReconcileReport(fixed=tx is not None, batches=batches,
                               orphan_files=tuple(str(p) for p in orphan_files),
                               orphan_rows=tuple(orphan_rows),
                               size_mismatches=tuple(mismatched))
