"""Plain data of the tile cache: tile records, statuses, freshness labels and mosaics.

Times stored with a tile (last access, creation) are UTC seconds since the epoch: they must
survive reboots and be compared across machines, which monotonic clocks cannot do. They only
order tiles for eviction, never feed the navigation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import numpy as np

from terrafix.geo.tiles import TileId, global_px_to_lonlat, lonlat_to_global_px
from terrafix.tiles.errors import TileCacheError


class VotingStatus(StrEnum):
    """Trust of a tile's content (REQUIREMENTS T1, U1-U3).

    Satellite imagery from the provider is TRUSTED; tiles made in flight start PENDING
    (LOW_TRUST when the pose sigma was 3-5 m), become UPLOADED after landing, UPLOAD_GIVEUP
    when their attempt budget is spent, and TRUSTED or REJECTED by the ground-side vote.
    """

    PENDING = "PENDING"
    LOW_TRUST = "LOW_TRUST"
    UPLOADED = "UPLOADED"
    UPLOAD_GIVEUP = "UPLOAD_GIVEUP"
    TRUSTED = "TRUSTED"
    REJECTED = "REJECTED"


class FreshnessLabel(StrEnum):
    """What the freshness rules say about serving a tile (REQUIREMENTS T3)."""

    FRESH = "fresh"
    DOWNGRADED = "downgraded"  # stale but served, labelled
    REJECTED = "rejected"  # never served


@dataclass(frozen=True, slots=True)
class TileRecord:
    """Metadata row of one stored tile.

    bounds: (west, south, east, north) WGS84 degrees of the tile square.
    sha256: hex digest of the JPEG file bytes. size_bytes: length of those bytes.
    sector_class: classification of the strictest freshness sector the tile touches
    ("unclassified" outside every sector). freshness: the label computed when the tile was
    written or last classified; readers recompute it for the current date.
    last_access_utc_s: UTC epoch seconds of the last read (LRU eviction order).
    """

    tile: TileId
    bounds: tuple[float, float, float, float]
    capture_date: date
    source: str
    sha256: str
    size_bytes: int
    sector_class: str
    freshness: FreshnessLabel
    voting_status: VotingStatus
    last_access_utc_s: float
    upload_attempts: int


# Integer codes of the statuses in columnar query results (`TileHits`): index into these.
VOTING_CODES: tuple[VotingStatus, ...] = tuple(VotingStatus)
FRESHNESS_CODES: tuple[FreshnessLabel, ...] = tuple(FreshnessLabel)

RecordLoader = Callable[[Sequence[TileId]], dict[TileId, TileRecord]]


class TileHits:
    """Tiles found by a spatial query, as parallel numpy columns (the navigation hot path).

    A 500 m camera footprint at z19 touches ~100 tiles; building ~100 `TileRecord`s (dates,
    enums, hex digests) per query costs several times what the index search does, and the
    navigation only needs ids, bounds and statuses to choose the tiles it loads. So the query
    returns columns, and full records are built only on demand (`records()`, one more query).

    Columns, all of length N, in the same (unspecified) order:
      z, x, y: (N,) int64 tile ids.
      bounds: (N, 4) float64 (west, south, east, north) WGS84 degrees, as stored.
      voting: (N,) int8 voting status, an index into `VOTING_CODES`.
      stored_freshness: (N,) int8 freshness label stored when the tile was written or last
        classified, an index into `FRESHNESS_CODES`. It is not today's decision (stale imagery
        ages): `TileStore.freshness_of(record)` and mosaics decide for the current date.
      A code of -1 is a value this version does not know (a newer writer's status); never
      index the code tuples with it (Python would take the last entry): `voting_status(i)`
      raises instead.
    """

    __slots__ = ("_load", "_records", "bounds", "stored_freshness", "voting", "x", "y", "z")

    def __init__(self, z: np.ndarray, x: np.ndarray, y: np.ndarray, bounds: np.ndarray,
                 voting: np.ndarray, stored_freshness: np.ndarray, load: RecordLoader) -> None:
        self.z = z
        self.x = x
        self.y = y
        self.bounds = bounds
        self.voting = voting
        self.stored_freshness = stored_freshness
        self._load = load
        self._records: list[TileRecord] | None = None

    @classmethod
    def empty(cls, load: RecordLoader) -> TileHits:
        i64 = np.zeros(0, np.int64)
        i8 = np.zeros(0, np.int8)
        return cls(i64, i64, i64, np.zeros((0, 4)), i8, i8, load)

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return f"TileHits({len(self)} tiles)"

    def tile_ids(self) -> list[TileId]:
        """The tiles as `TileId`s, in column order."""
        return [TileId(z, x, y) for z, x, y in
                zip(self.z.tolist(), self.x.tolist(), self.y.tolist(), strict=True)]

    def voting_status(self, i: int) -> VotingStatus:
        """The voting status of the i-th tile."""
        code = int(self.voting[i])
        if not 0 <= code < len(VOTING_CODES):
            raise TileCacheError(f"tile {self.z[i]}/{self.x[i]}/{self.y[i]} has a voting status "
                             f"this version does not know (see records())")
        return VOTING_CODES[code]

    def records(self) -> list[TileRecord]:
        """Full records in column order, read from the store on the first call.

        A tile deleted between the query and this call (only possible while a writer is at
        work; never in flight, where the store is read-only) is left out; a replaced tile
        comes back with its new metadata.
        """
        if self._records is None:
            tiles = self.tile_ids()
            found = self._load(tiles) if tiles else {}
            self._records = [found[t] for t in tiles if t in found]
        return self._records


@dataclass(frozen=True, slots=True)
class NewTile:
    """A tile offered for storage: its id, JPEG bytes and provenance."""

    tile: TileId
    jpeg: bytes
    capture_date: date
    source: str
    voting_status: VotingStatus = VotingStatus.TRUSTED


@dataclass(frozen=True, slots=True)
class PutReport:
    """Outcome of a batch write: tiles inserted, replaced, or left as they were."""

    inserted: tuple[TileId, ...] = ()
    replaced: tuple[TileId, ...] = ()
    unchanged: tuple[TileId, ...] = ()
    evicted: tuple[TileId, ...] = ()


@dataclass(frozen=True, slots=True)
class MosaicTile:
    """A tile used in a mosaic, with the freshness decision taken for it."""

    tile: TileId
    capture_date: date
    sector_class: str
    freshness: FreshnessLabel


@dataclass(frozen=True, slots=True)
class Mosaic:
    """A north-up map image of some bounds at one zoom, assembled from cached tiles.

    image: (H, W) uint8 grayscale. valid: (H, W) bool, True where a served tile supplied
    the pixel (missing, rejected and corrupt tiles leave zeros and False).
    Pixel (col i, row j) covers global pixels [px_x0 + i, px_x0 + i + 1) x
    [px_y0 + j, px_y0 + j + 1) at zoom z (Web-Mercator, x east, y south), so
    `terrafix.geo.tiles.global_px_to_lonlat(px_x0 + i, px_y0 + j, z)` is its north-west corner.
    tiles: the tiles served, with freshness labels (DOWNGRADED ones are stale but usable).
    missing: tiles the store does not hold; rejected: held but refused by the freshness rules;
    corrupt: held but failing their hash or decode check (quarantined, never served).
    """

    image: np.ndarray
    valid: np.ndarray
    z: int
    px_x0: int
    px_y0: int
    tiles: tuple[MosaicTile, ...]
    missing: tuple[TileId, ...]
    rejected: tuple[TileId, ...]
    corrupt: tuple[TileId, ...]

    def pixel_to_lonlat(self, col: float | np.ndarray, row: float | np.ndarray):
        """Image pixel coordinates (col right, row down; 0,0 = top-left corner) -> (lon, lat)."""
        return global_px_to_lonlat(self.px_x0 + np.asarray(col, float),
                                   self.px_y0 + np.asarray(row, float), self.z)

    def lonlat_to_pixel(self, lon_deg: float | np.ndarray, lat_deg: float | np.ndarray):
        """WGS84 degrees -> image pixel coordinates (col, row), fractional."""
        px, py = lonlat_to_global_px(lon_deg, lat_deg, self.z)
        return px - self.px_x0, py - self.px_y0


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """A tile taken out of service because its bytes did not match its record."""

    tile: TileId
    expected_sha256: str
    found_sha256: str
    reason: str
    file_path: str
    quarantined_utc_s: float


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """Counts and extents of the metadata (what `terrafix tiles info` prints).

    bounds: (west, south, east, north) WGS84 degrees over all tiles, None when empty.
    zooms: tile count per zoom. capture_dates: tile count per capture date.
    """

    tile_count: int
    total_bytes: int
    zooms: dict[int, int]
    bounds: tuple[float, float, float, float] | None
    capture_dates: dict[date, int]
    quarantined: int
