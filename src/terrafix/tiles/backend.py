"""The metadata-database interface shared by the SQLite and PostgreSQL stores.

`TileStore` owns the files, hashes, journal and mosaics; the backend only keeps the rows. Both
backends satisfy the same Protocol and the same contract tests, so everything above this line
is written once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Protocol

import numpy as np

from terrafix.geo.tiles import TileId
from terrafix.tiles.geometry import SeparatingAxes
from terrafix.tiles.records import (
    FRESHNESS_CODES,
    VOTING_CODES,
    FreshnessLabel,
    QuarantineEntry,
    StoreSummary,
    TileRecord,
    VotingStatus,
)

# Column order of every SELECT that builds a TileRecord.
RECORD_COLUMNS = ("z, x, y, west, south, east, north, capture_date, source, sha256, size_bytes, "
                  "sector_class, freshness, voting_status, last_access_utc, upload_attempts")



def _code_case(column: str, values: Sequence[str]) -> str:
    """SQL mapping a status column to its small-integer code (-1 for an unknown value).

    The values are enum members (constants of this package), never user input."""
    whens = " ".join(f"WHEN '{v}' THEN {i}" for i, v in enumerate(values))
    return f"CASE {column} {whens} ELSE -1 END"


def hit_columns(prefix: str = "") -> str:
    """Select list of the columnar query (`TileHits`): z, x, y, west, south, east, north,
    voting code, stored freshness code. The codes are computed by the database, so every
    value reaching Python is a number (small integers are shared objects: no allocation)."""
    p = prefix
    return (f"{p}z, {p}x, {p}y, {p}west, {p}south, {p}east, {p}north, "
            f"{_code_case(p + 'voting_status', [v.value for v in VOTING_CODES])}, "
            f"{_code_case(p + 'freshness', [v.value for v in FRESHNESS_CODES])}")


HIT_WIDTH = 9  # values per row of hit_columns()


def hit_array(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """Rows of `hit_columns()` -> (M, 9) float64 (tile ids < 2**53 are exact in float64).

    fromiter over the flattened rows is ~2x faster than np.array on a list of tuples."""
    return np.fromiter(itertools.chain.from_iterable(rows), np.float64,
                       HIT_WIDTH * len(rows)).reshape(-1, HIT_WIDTH)


def separating_axes_sql(axes: SeparatingAxes, placeholder: str, least: str, greatest: str,
                        prefix: str = "") -> tuple[str, tuple[float, ...]]:
    """WHERE terms (" AND ...") and parameters of `SeparatingAxes` on the bounds columns.

    The database evaluates the exact footprint test next to its spatial index, so only the
    ~100 tiles that overlap (not the ~150 candidates of the bounding box) reach Python. Each
    term is the same chain of double operations as `SeparatingAxes.overlaps`, so the answer
    is bit-identical to the numpy test. least/greatest: the two-argument min/max functions
    of the dialect.
    """
    p, ph = prefix, placeholder
    x0, y0, x1, y1 = axes.bbox
    terms = [f"{p}east > {ph} AND {p}west < {ph} AND {p}north > {ph} AND {p}south < {ph}"]
    params: list[float] = [x0, x1, y0, y1]
    for ax, ay, lo, hi in axes.normals:
        terms.append(
            f"{least}({ph} * {p}west, {ph} * {p}east) + {least}({ph} * {p}south, {ph} * {p}north)"
            f" < {ph} AND {greatest}({ph} * {p}west, {ph} * {p}east)"
            f" + {greatest}({ph} * {p}south, {ph} * {p}north) > {ph}")
        params += [ax, ax, ay, ay, hi, ax, ax, ay, ay, lo]
    return "".join(f" AND {t}" for t in terms), tuple(params)


_LABELS = {v.value: v for v in FreshnessLabel}
_STATUSES = {v.value: v for v in VotingStatus}
_new = object.__new__
_set = object.__setattr__


def trusted_tile_id(z: int, x: int, y: int) -> TileId:
    """A TileId from a database row, without re-validating it.

    Rows were validated when they were written (a TileId is needed to write one), and
    building ids is the largest cost of a spatial query that returns ~100 tiles, so reads skip
    the range checks (about half the construction time)."""
    t = _new(TileId)
    _set(t, "z", z)
    _set(t, "x", x)
    _set(t, "y", y)
    return t


def record_from_row(row: Sequence) -> TileRecord:
    """Build a TileRecord from a row in RECORD_COLUMNS order (date as ISO text or date)."""
    cap = row[7]
    return TileRecord(
        tile=trusted_tile_id(row[0], row[1], row[2]),
        bounds=(row[3], row[4], row[5], row[6]),
        capture_date=cap if isinstance(cap, date) else date.fromisoformat(cap),
        source=row[8],
        sha256=row[9],
        size_bytes=row[10],
        sector_class=row[11],
        freshness=_LABELS[row[12]],
        voting_status=_STATUSES[row[13]],
        last_access_utc_s=row[14],
        upload_attempts=row[15],
    )


class MetadataTransaction(Protocol):
    """Writes inside one database transaction (committed when the context exits cleanly)."""

    def existing(self, tiles: Sequence[TileId]) -> dict[TileId, TileRecord]:
        """Rows already present for these tiles (locked against concurrent writers)."""
        ...

    def upsert(self, records: Sequence[TileRecord], created_utc_s: float) -> None:
        """Insert rows, replacing any row with the same z/x/y."""
        ...

    def delete(self, tiles: Sequence[TileId]) -> None: ...

    def add_quarantine(self, entry: QuarantineEntry) -> None: ...

    def touch(self, accesses: Sequence[tuple[TileId, float]]) -> None:
        """Set last-access times (UTC epoch seconds)."""
        ...

    def classify(self, updates: Sequence[tuple[TileId, str, FreshnessLabel]]) -> None:
        """Set sector class and freshness label of existing rows."""
        ...

    def set_upload_state(self, tile: TileId, status: VotingStatus, upload_attempts: int) -> None:
        ...

    def count_upload_rejection(self, tile: TileId, give_up_at: int,
                               live: Sequence[VotingStatus]) -> tuple[int, VotingStatus] | None:
        """One statement: upload_attempts + 1, and UPLOAD_GIVEUP once it reaches give_up_at,
        only while the status is one of `live`; the new (attempts, status), or None when the
        tile is absent or not live."""
        ...

    def set_protected_area(self, name: str, wkt: str, created_utc_s: float) -> None: ...

    def remove_protected_area(self, name: str) -> None: ...


class MetadataBackend(Protocol):
    """Tile metadata rows in a database; thread-safe for readers."""

    dialect: str
    read_only: bool
    location: str  # where the rows live, for messages (file path or DSN without password)

    def close(self) -> None: ...

    def schema_version(self) -> int: ...

    def transaction(self) -> AbstractContextManager[MetadataTransaction]: ...

    def get(self, tile: TileId) -> TileRecord | None: ...

    def get_many(self, tiles: Sequence[TileId]) -> dict[TileId, TileRecord]:
        """Records of those tiles that exist, in one query (outside any transaction)."""
        ...

    def bbox_rows(self, west: float, south: float, east: float, north: float,
                  z: int | None) -> list[Sequence]:
        """Raw rows (RECORD_COLUMNS order) whose bounds overlap the box, from the spatial
        index; a superset of the exact answer is allowed (the store filters exactly)."""
        ...

    def bbox_hits(self, west: float, south: float, east: float, north: float,
                  z: int | None, axes: SeparatingAxes | None = None) -> np.ndarray:
        """(M, 9) float64 columns of `hit_columns()` (see `hit_array`) for the rows whose
        bounds overlap the box, from the spatial index (the columnar query). With axes,
        exactly the rows whose box overlaps that convex polygon's interior; each backend
        applies the test where it is cheapest (PostgreSQL: on the server, in SQL; SQLite: in
        numpy, which beats evaluating it row by row in SQLite's VM)."""
        ...

    def iter_records(self, batch: int = 10_000) -> Iterator[TileRecord]: ...

    def iter_lru(self, batch: int = 1000) -> Iterator[TileRecord]:
        """Rows in least-recently-used order."""
        ...

    def totals(self) -> tuple[int, int]:
        """(tile count, total bytes)."""
        ...

    def summary(self) -> StoreSummary: ...

    def quarantine_entries(self) -> list[QuarantineEntry]: ...

    def protected_areas(self) -> dict[str, str]:
        """Protected area name -> WKT polygon (WGS84)."""
        ...

    def bulk_load(self, records: Iterable[TileRecord], created_utc_s: float) -> int:
        """Fast insert of many new rows (no files): benchmarks and metadata imports."""
        ...
