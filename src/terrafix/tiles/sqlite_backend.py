"""Embedded metadata store: one SQLite file, R*Tree spatial index, WAL for concurrent readers.

Nothing to start and nothing to administer, so it is the default on the aircraft. WAL mode
lets any number of readers (the navigation threads, the provider server) run while one writer
commits. Each thread gets its own connection because sqlite3 connections must not be shared
between threads mid-statement. A read-only store opens the file with `mode=ro` and
`query_only`, so the database itself refuses writes as a second line of defence.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np

from terrafix.geo.tiles import TileId
from terrafix.tiles.backend import RECORD_COLUMNS, hit_array, hit_columns, record_from_row
from terrafix.tiles.errors import ReadOnlyStoreError, StoreConfigError
from terrafix.tiles.geometry import SeparatingAxes
from terrafix.tiles.migrations import check_version, latest_version, migrations
from terrafix.tiles.records import (
    FreshnessLabel,
    QuarantineEntry,
    StoreSummary,
    TileRecord,
    VotingStatus,
)

DIALECT = "sqlite"
_PREFIXED_COLUMNS = ", ".join(f"t.{c.strip()}" for c in RECORD_COLUMNS.split(","))
# The R*Tree drives the search and each hit joins its row by rowid (EXPLAIN: "SCAN r VIRTUAL
# TABLE INDEX 2:D1B0D3B2", "SEARCH t USING INTEGER PRIMARY KEY"). CROSS JOIN fixes that order:
# with a plain JOIN and a zoom term the planner prefers the (z, x, y) index, i.e. it walks every
# tile of that zoom (a million in a large cache) and probes the R*Tree for each.
_BBOX_WHERE = (" FROM tiles_rtree r CROSS JOIN tiles t ON t.id = r.id"
               " WHERE r.max_lon >= ? AND r.min_lon <= ? AND r.max_lat >= ? AND r.min_lat <= ?")
_HITS_SQL = f"SELECT {hit_columns('t.')}{_BBOX_WHERE}"
_GET_MANY_CHUNK = 500  # tiles per query (3 parameters each, well under SQLite's limit)


class SqliteTransaction:
    """Writes on one connection inside BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def existing(self, tiles: Sequence[TileId]) -> dict[TileId, TileRecord]:
        out: dict[TileId, TileRecord] = {}
        sql = f"SELECT {RECORD_COLUMNS} FROM tiles WHERE z = ? AND x = ? AND y = ?"
        for t in tiles:
            row = self._conn.execute(sql, (t.z, t.x, t.y)).fetchone()
            if row is not None:
                out[t] = record_from_row(row)
        return out

    def upsert(self, records: Sequence[TileRecord], created_utc_s: float) -> None:
        # Delete-then-insert (not ON CONFLICT UPDATE) keeps the R*Tree and totals triggers
        # simple: every row change is one delete and/or one insert.
        self._conn.executemany("DELETE FROM tiles WHERE z = ? AND x = ? AND y = ?",
                               [(r.tile.z, r.tile.x, r.tile.y) for r in records])
        self._conn.executemany(_INSERT_SQL, [_row(r, created_utc_s) for r in records])

    def delete(self, tiles: Sequence[TileId]) -> None:
        self._conn.executemany("DELETE FROM tiles WHERE z = ? AND x = ? AND y = ?",
                               [(t.z, t.x, t.y) for t in tiles])

    def add_quarantine(self, entry: QuarantineEntry) -> None:
        t = entry.tile
        self._conn.execute(
            "INSERT INTO quarantine (z, x, y, expected_sha256, found_sha256, reason, file_path,"
            " quarantined_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (t.z, t.x, t.y, entry.expected_sha256, entry.found_sha256, entry.reason,
             entry.file_path, entry.quarantined_utc_s))

    def touch(self, accesses: Sequence[tuple[TileId, float]]) -> None:
        self._conn.executemany(
            "UPDATE tiles SET last_access_utc = max(last_access_utc, ?)"
            " WHERE z = ? AND x = ? AND y = ?",
            [(ts, t.z, t.x, t.y) for t, ts in accesses])

    def classify(self, updates: Sequence[tuple[TileId, str, FreshnessLabel]]) -> None:
        self._conn.executemany(
            "UPDATE tiles SET sector_class = ?, freshness = ? WHERE z = ? AND x = ? AND y = ?",
            [(cls, str(label), t.z, t.x, t.y) for t, cls, label in updates])

    def set_upload_state(self, tile: TileId, status: VotingStatus, upload_attempts: int) -> None:
        self._conn.execute(
            "UPDATE tiles SET voting_status = ?, upload_attempts = ?"
            " WHERE z = ? AND x = ? AND y = ?",
            (str(status), upload_attempts, tile.z, tile.x, tile.y))

    def count_upload_rejection(self, tile: TileId, give_up_at: int,
                               live: Sequence[VotingStatus]) -> tuple[int, VotingStatus] | None:
        marks = ", ".join("?" for _ in live)
        row = self._conn.execute(
            "UPDATE tiles SET upload_attempts = upload_attempts + 1, voting_status = CASE WHEN"
            " upload_attempts + 1 >= ? THEN ? ELSE voting_status END"
            f" WHERE z = ? AND x = ? AND y = ? AND voting_status IN ({marks})"
            " RETURNING upload_attempts, voting_status",
            (give_up_at, str(VotingStatus.UPLOAD_GIVEUP), tile.z, tile.x, tile.y,
             *[str(v) for v in live])).fetchone()
        return None if row is None else (int(row[0]), VotingStatus(row[1]))

    def set_protected_area(self, name: str, wkt: str, created_utc_s: float) -> None:
        self._conn.execute("INSERT OR REPLACE INTO protected_areas VALUES (?, ?, ?)",
                           (name, wkt, created_utc_s))

    def remove_protected_area(self, name: str) -> None:
        self._conn.execute("DELETE FROM protected_areas WHERE name = ?", (name,))


_INSERT_SQL = (
    "INSERT INTO tiles (z, x, y, west, south, east, north, capture_date, source, sha256,"
    " size_bytes, sector_class, freshness, voting_status, last_access_utc, upload_attempts,"
    " created_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _row(r: TileRecord, created_utc_s: float) -> tuple:
    w, s, e, n = r.bounds
    return (r.tile.z, r.tile.x, r.tile.y, w, s, e, n, r.capture_date.isoformat(), r.source,
            r.sha256, r.size_bytes, r.sector_class, str(r.freshness), str(r.voting_status),
            r.last_access_utc_s, r.upload_attempts, created_utc_s)


class SqliteBackend:
    """Tile metadata in `<root>/tiles.sqlite` (see module docstring)."""

    dialect = DIALECT

    def __init__(self, path: str | Path, *, read_only: bool = False,
                 create: bool = True, check_schema: bool = True) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.location = str(self.path)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        if not self.path.exists():
            if read_only or not create:
                raise StoreConfigError(f"no tile metadata database at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate_fresh()
        if check_schema:
            check_version(self.schema_version(), DIALECT, self.location)

    # --- connections ---------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            mode = "ro" if self.read_only else "rwc"
            try:
                conn = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True,
                                       isolation_level=None, check_same_thread=False,
                                       timeout=30.0)
            except sqlite3.OperationalError as exc:
                raise StoreConfigError(f"cannot open {self.path} ({mode}): {exc}") from exc
            conn.execute("PRAGMA busy_timeout = 30000")
            # A larger page cache and memory-mapped reads keep the R*Tree of a big cache in
            # memory instead of a read() per page (64 MiB cache, up to 1 GiB mapped).
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("PRAGMA mmap_size = 1073741824")
            if self.read_only:
                conn.execute("PRAGMA query_only = ON")
            else:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    # --- schema --------------------------------------------------------------------------
    def schema_version(self) -> int:
        conn = self._conn()
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if not has_table:
            return 0
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate_fresh(self) -> None:
        self.migrate(target=None)

    def migrate(self, target: int | None = None) -> int:
        """Apply pending migrations up to `target` (default: latest); returns the version."""
        if self.read_only:
            raise ReadOnlyStoreError(f"cannot migrate {self.path}: store opened read-only")
        conn = self._conn()
        target = latest_version(DIALECT) if target is None else target
        current = self.schema_version()
        for mig in migrations(DIALECT):
            if current < mig.version <= target:
                # executescript commits implicitly, so the DDL and the version bump are wrapped
                # in one explicit transaction inside the script.
                conn.executescript(
                    "BEGIN IMMEDIATE;\n"
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);\n"
                    f"{mig.sql}\n"
                    f"INSERT INTO schema_version VALUES ({mig.version});\n"
                    "COMMIT;")
                current = mig.version
        return current

    # --- writes --------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[SqliteTransaction]:
        if self.read_only:
            raise ReadOnlyStoreError(f"tile store {self.path} is read-only; refusing to write")
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTransaction(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def bulk_load(self, records: Iterable[TileRecord], created_utc_s: float) -> int:
        if self.read_only:
            raise ReadOnlyStoreError(f"tile store {self.path} is read-only; refusing to write")
        conn = self._conn()
        n = 0
        batch: list[tuple] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for r in records:
                batch.append(_row(r, created_utc_s))
                if len(batch) >= 50_000:
                    conn.executemany(_INSERT_SQL, batch)
                    n += len(batch)
                    batch.clear()
            conn.executemany(_INSERT_SQL, batch)
            n += len(batch)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return n

    # --- reads ---------------------------------------------------------------------------
    def get(self, tile: TileId) -> TileRecord | None:
        row = self._conn().execute(
            f"SELECT {RECORD_COLUMNS} FROM tiles WHERE z = ? AND x = ? AND y = ?",
            (tile.z, tile.x, tile.y)).fetchone()
        return None if row is None else record_from_row(row)

    def get_many(self, tiles: Sequence[TileId]) -> dict[TileId, TileRecord]:
        conn = self._conn()
        out: dict[TileId, TileRecord] = {}
        for i in range(0, len(tiles), _GET_MANY_CHUNK):
            chunk = tiles[i:i + _GET_MANY_CHUNK]
            keys = ", ".join(["(?, ?, ?)"] * len(chunk))
            args = [v for t in chunk for v in (t.z, t.x, t.y)]
            rows = conn.execute(
                f"WITH k(z, x, y) AS (VALUES {keys}) SELECT {_PREFIXED_COLUMNS} FROM k"
                " JOIN tiles t ON t.z = k.z AND t.x = k.x AND t.y = k.y", args).fetchall()
            for row in rows:
                rec = record_from_row(row)
                out[rec.tile] = rec
        return out

    def bbox_rows(self, west: float, south: float, east: float, north: float,
                  z: int | None) -> list[tuple]:
        # R*Tree coordinates are 32-bit floats rounded outwards: the box test is a superset.
        sql = f"SELECT {_PREFIXED_COLUMNS}{_BBOX_WHERE}"
        args: tuple = (west, east, south, north)
        if z is not None:
            sql += " AND t.z = ?"
            args += (z,)
        return self._conn().execute(sql, args).fetchall()

    def bbox_hits(self, west: float, south: float, east: float, north: float,
                  z: int | None, axes: SeparatingAxes | None = None) -> np.ndarray:
        sql = _HITS_SQL
        args: tuple = (west, east, south, north)
        if z is not None:
            sql += " AND t.z = ?"
            args += (z,)
        cols = hit_array(self._conn().execute(sql, args).fetchall())
        # The exact test runs in numpy: in SQL (separating_axes_sql) it costs SQLite's VM more
        # than the Python objects of the extra ~50 candidate rows it saves.
        return cols if axes is None else cols[axes.overlaps(cols[:, 3:7])]

    def iter_records(self, batch: int = 10_000) -> Iterator[TileRecord]:
        last = -1
        conn = self._conn()
        while True:
            rows = conn.execute(
                f"SELECT id, {RECORD_COLUMNS} FROM tiles WHERE id > ? ORDER BY id LIMIT ?",
                (last, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield record_from_row(row[1:])
            last = rows[-1][0]

    def iter_lru(self, batch: int = 1000) -> Iterator[TileRecord]:
        last = (-1.0, -1)
        conn = self._conn()
        while True:
            rows = conn.execute(
                f"SELECT last_access_utc, id, {RECORD_COLUMNS} FROM tiles"
                " WHERE (last_access_utc, id) > (?, ?) ORDER BY last_access_utc, id LIMIT ?",
                (*last, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield record_from_row(row[2:])
            last = (rows[-1][0], rows[-1][1])

    def totals(self) -> tuple[int, int]:
        row = self._conn().execute("SELECT tile_count, total_bytes FROM store_totals").fetchone()
        return int(row[0]), int(row[1])

    def summary(self) -> StoreSummary:
        conn = self._conn()
        count, total = self.totals()
        zooms = {int(z): int(n) for z, n in
                 conn.execute("SELECT z, count(*) FROM tiles GROUP BY z ORDER BY z")}
        b = conn.execute(
            "SELECT min(west), min(south), max(east), max(north) FROM tiles").fetchone()
        bounds = None if b[0] is None else (b[0], b[1], b[2], b[3])
        dates = Counter({date.fromisoformat(d): int(n) for d, n in conn.execute(
            "SELECT capture_date, count(*) FROM tiles GROUP BY capture_date")})
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        return StoreSummary(count, total, zooms, bounds, dict(sorted(dates.items())),
                            int(quarantined))

    def quarantine_entries(self) -> list[QuarantineEntry]:
        rows = self._conn().execute(
            "SELECT z, x, y, expected_sha256, found_sha256, reason, file_path, quarantined_utc"
            " FROM quarantine ORDER BY id").fetchall()
        return [QuarantineEntry(TileId(r[0], r[1], r[2]), r[3], r[4], r[5], r[6], r[7])
                for r in rows]

    def protected_areas(self) -> dict[str, str]:
        return dict(self._conn().execute("SELECT name, wkt FROM protected_areas ORDER BY name"))
