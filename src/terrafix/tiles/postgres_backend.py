"""Production metadata store: PostgreSQL 15 + PostGIS through psycopg 3 and a connection pool.

Used where several processes share a large cache (ground segment, provisioning servers). The
tile footprint is a PostGIS polygon generated from the bounds and GiST-indexed, so spatial
queries use its `&&` index test and the store applies the exact interior test, the same code
for both backends. A store lives in one PostgreSQL schema, so a server can hold
several stores (the tests use one schema per test). Writers of one store serialise on a
transaction-scoped advisory lock, which gives the same one-writer semantics as SQLite and makes
"check the existing row, then write" race-free. Read-only stores set
`default_transaction_read_only`, so the server refuses writes as a second line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from terrafix.geo.tiles import TileId
from terrafix.tiles.backend import (
    RECORD_COLUMNS,
    hit_array,
    hit_columns,
    record_from_row,
    separating_axes_sql,
)
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

DIALECT = "postgres"
DEFAULT_SCHEMA = "terrafix_tiles"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_WRITER_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(current_schema()))"
# Spatial reads: `&&` is the GiST bounding-box test (a superset; the exact interior test runs
# in the store, the same code for both backends and cheaper than ST_Intersects per row on the
# server). They run as prepared statements with binary results: no re-planning per query and
# no text parsing of numbers on the client.
_BBOX_WHERE = " FROM tiles WHERE geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"
_ROWS_SQL = f"SELECT {RECORD_COLUMNS}{_BBOX_WHERE}"
_HITS_SQL = f"SELECT {hit_columns()}{_BBOX_WHERE}"
_GET_MANY_SQL = (f"SELECT {RECORD_COLUMNS} FROM tiles WHERE (z, x, y) IN"
                 " (SELECT * FROM unnest(%s::smallint[], %s::int[], %s::int[]))")

_INSERT_COLUMNS = ("z, x, y, west, south, east, north, capture_date, source, sha256, size_bytes,"
                   " sector_class, freshness, voting_status, last_access_utc, upload_attempts,"
                   " created_utc")
_UPSERT_SQL = (
    f"INSERT INTO tiles ({_INSERT_COLUMNS}) VALUES"
    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (z, x, y) DO UPDATE SET west = excluded.west, south = excluded.south,"
    " east = excluded.east, north = excluded.north, capture_date = excluded.capture_date,"
    " source = excluded.source, sha256 = excluded.sha256, size_bytes = excluded.size_bytes,"
    " sector_class = excluded.sector_class, freshness = excluded.freshness,"
    " voting_status = excluded.voting_status, last_access_utc = excluded.last_access_utc,"
    " upload_attempts = excluded.upload_attempts, created_utc = excluded.created_utc"
)


def _row(r: TileRecord, created_utc_s: float) -> tuple:
    w, s, e, n = r.bounds
    return (r.tile.z, r.tile.x, r.tile.y, w, s, e, n, r.capture_date, r.source, r.sha256,
            r.size_bytes, r.sector_class, str(r.freshness), str(r.voting_status),
            r.last_access_utc_s, r.upload_attempts, created_utc_s)


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    params.pop("password", None)
    return make_conninfo(**params)


class PostgresTransaction:
    """Writes on one pooled connection inside a transaction holding the writer lock."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def existing(self, tiles: Sequence[TileId]) -> dict[TileId, TileRecord]:
        if not tiles:
            return {}
        rows = self._conn.execute(
            f"SELECT {RECORD_COLUMNS} FROM tiles WHERE (z, x, y) IN"
            " (SELECT * FROM unnest(%s::smallint[], %s::int[], %s::int[])) FOR UPDATE",
            ([t.z for t in tiles], [t.x for t in tiles], [t.y for t in tiles])).fetchall()
        return {rec.tile: rec for rec in map(record_from_row, rows)}

    def upsert(self, records: Sequence[TileRecord], created_utc_s: float) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_UPSERT_SQL, [_row(r, created_utc_s) for r in records])

    def delete(self, tiles: Sequence[TileId]) -> None:
        if tiles:
            self._conn.execute(
                "DELETE FROM tiles WHERE (z, x, y) IN"
                " (SELECT * FROM unnest(%s::smallint[], %s::int[], %s::int[]))",
                ([t.z for t in tiles], [t.x for t in tiles], [t.y for t in tiles]))

    def add_quarantine(self, entry: QuarantineEntry) -> None:
        t = entry.tile
        self._conn.execute(
            "INSERT INTO quarantine (z, x, y, expected_sha256, found_sha256, reason, file_path,"
            " quarantined_utc) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (t.z, t.x, t.y, entry.expected_sha256, entry.found_sha256, entry.reason,
             entry.file_path, entry.quarantined_utc_s))

    def touch(self, accesses: Sequence[tuple[TileId, float]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                "UPDATE tiles SET last_access_utc = greatest(last_access_utc, %s)"
                " WHERE z = %s AND x = %s AND y = %s",
                [(ts, t.z, t.x, t.y) for t, ts in accesses])

    def classify(self, updates: Sequence[tuple[TileId, str, FreshnessLabel]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                "UPDATE tiles SET sector_class = %s, freshness = %s"
                " WHERE z = %s AND x = %s AND y = %s",
                [(cls, str(label), t.z, t.x, t.y) for t, cls, label in updates])

    def set_upload_state(self, tile: TileId, status: VotingStatus, upload_attempts: int) -> None:
        self._conn.execute(
            "UPDATE tiles SET voting_status = %s, upload_attempts = %s"
            " WHERE z = %s AND x = %s AND y = %s",
            (str(status), upload_attempts, tile.z, tile.x, tile.y))

    def count_upload_rejection(self, tile: TileId, give_up_at: int,
                               live: Sequence[VotingStatus]) -> tuple[int, VotingStatus] | None:
        row = self._conn.execute(
            "UPDATE tiles SET upload_attempts = upload_attempts + 1, voting_status = CASE WHEN"
            " upload_attempts + 1 >= %s THEN %s ELSE voting_status END"
            " WHERE z = %s AND x = %s AND y = %s AND voting_status = ANY(%s)"
            " RETURNING upload_attempts, voting_status",
            (give_up_at, str(VotingStatus.UPLOAD_GIVEUP), tile.z, tile.x, tile.y,
             [str(v) for v in live])).fetchone()
        return None if row is None else (int(row[0]), VotingStatus(row[1]))

    def set_protected_area(self, name: str, wkt: str, created_utc_s: float) -> None:
        self._conn.execute(
            "INSERT INTO protected_areas VALUES (%s, ST_GeomFromText(%s, 4326), %s)"
            " ON CONFLICT (name) DO UPDATE SET geom = excluded.geom,"
            " created_utc = excluded.created_utc", (name, wkt, created_utc_s))

    def remove_protected_area(self, name: str) -> None:
        self._conn.execute("DELETE FROM protected_areas WHERE name = %s", (name,))


class PostgresBackend:
    """Tile metadata in a PostgreSQL schema (see module docstring)."""

    dialect = DIALECT

    def __init__(self, dsn: str, *, schema: str = DEFAULT_SCHEMA, read_only: bool = False,
                 create: bool = True, check_schema: bool = True, max_connections: int = 8) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise StoreConfigError(f"PostgreSQL schema name must match {_SCHEMA_NAME.pattern}, "
                                   f"got {schema!r}")
        self.schema = schema
        self.read_only = read_only
        self.location = f"{redact_dsn(dsn)} schema={schema}"
        options = f"-c search_path={schema},public"
        if read_only:
            options += " -c default_transaction_read_only=on"
        try:
            self._pool = ConnectionPool(
                dsn, min_size=1, max_size=max_connections, open=True, timeout=30.0,
                kwargs={"autocommit": True, "options": options}, name=f"tiles-{schema}")
            self._pool.wait(timeout=30.0)
        except Exception as exc:  # psycopg_pool.PoolTimeout, OperationalError
            raise StoreConfigError(
                f"cannot connect to PostgreSQL at {self.location}: {exc}") from exc
        try:
            if self.schema_version() == 0:
                if create and not read_only:
                    self.migrate()
                elif check_schema:  # maintenance opens (check_schema=False) may find nothing
                    raise StoreConfigError(f"no tile store in PostgreSQL at {self.location}")
            if check_schema:
                check_version(self.schema_version(), DIALECT, self.location)
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        self._pool.close()

    # --- schema --------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self._pool.connection() as conn:
            exists = conn.execute("SELECT to_regclass(%s)",
                                  (f"{self.schema}.schema_version",)).fetchone()[0]
            if exists is None:
                return 0
            row = conn.execute(
                sql.SQL("SELECT max(version) FROM {}.schema_version").format(
                    sql.Identifier(self.schema))).fetchone()
            return int(row[0] or 0)

    def migrate(self, target: int | None = None) -> int:
        """Apply pending migrations up to `target` (default: latest); returns the version."""
        if self.read_only:
            raise ReadOnlyStoreError(f"cannot migrate {self.location}: store opened read-only")
        target = latest_version(DIALECT) if target is None else target
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"migrate:{self.schema}",))
            has_postgis = conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone()
            if not has_postgis:
                try:
                    with conn.transaction():
                        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
                except psycopg.Error as exc:
                    raise StoreConfigError(
                        f"PostGIS is not installed in the database at {self.location} and "
                        f"could not be created ({exc}); run CREATE EXTENSION postgis as a "
                        f"superuser") from exc
            ident = sql.Identifier(self.schema)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.schema_version"
                                 " (version INTEGER NOT NULL)").format(ident))
            current = int(conn.execute(sql.SQL("SELECT coalesce(max(version), 0) FROM"
                                               " {}.schema_version").format(ident)).fetchone()[0])
            for mig in migrations(DIALECT):
                if current < mig.version <= target:
                    conn.execute(mig.sql.encode())
                    conn.execute(sql.SQL("INSERT INTO {}.schema_version VALUES (%s)").format(
                        ident), (mig.version,))
                    current = mig.version
        return current

    # --- writes --------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        if self.read_only:
            raise ReadOnlyStoreError(f"tile store {self.location} is read-only; refusing to write")
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(_WRITER_LOCK_SQL)
            yield PostgresTransaction(conn)

    def bulk_load(self, records: Iterable[TileRecord], created_utc_s: float) -> int:
        if self.read_only:
            raise ReadOnlyStoreError(f"tile store {self.location} is read-only; refusing to write")
        n = 0
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(_WRITER_LOCK_SQL)
            with conn.cursor().copy(f"COPY tiles ({_INSERT_COLUMNS}) FROM STDIN") as copy:
                for r in records:
                    copy.write_row(_row(r, created_utc_s))
                    n += 1
        with self._pool.connection() as conn:
            conn.execute("ANALYZE tiles")
        return n

    # --- reads ---------------------------------------------------------------------------
    def get(self, tile: TileId) -> TileRecord | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM tiles WHERE z = %s AND x = %s AND y = %s",
                (tile.z, tile.x, tile.y)).fetchone()
        return None if row is None else record_from_row(row)

    def get_many(self, tiles: Sequence[TileId]) -> dict[TileId, TileRecord]:
        if not tiles:
            return {}
        with self._pool.connection() as conn:
            rows = conn.cursor(binary=True).execute(
                _GET_MANY_SQL,
                ([t.z for t in tiles], [t.x for t in tiles], [t.y for t in tiles])).fetchall()
        return {rec.tile: rec for rec in map(record_from_row, rows)}

    def _bbox_query(self, select: str, west: float, south: float, east: float, north: float,
                    z: int | None, axes: SeparatingAxes | None = None) -> list[tuple]:
        q = select
        args: tuple = (west, south, east, north)
        if z is not None:
            q += " AND z = %s"
            args += (z,)
        if axes is not None:  # GiST finds candidates, the row terms decide exactly
            terms, params = separating_axes_sql(axes, "%s", "LEAST", "GREATEST")
            q += terms
            args += params
        with self._pool.connection() as conn:
            return conn.cursor(binary=True).execute(q, args, prepare=True).fetchall()

    def bbox_rows(self, west: float, south: float, east: float, north: float,
                  z: int | None) -> list[tuple]:
        return self._bbox_query(_ROWS_SQL, west, south, east, north, z)

    def bbox_hits(self, west: float, south: float, east: float, north: float,
                  z: int | None, axes: SeparatingAxes | None = None) -> np.ndarray:
        # The exact test runs on the server (separating_axes_sql): fewer rows to send and
        # convert, and the work leaves the caller's core.
        return hit_array(self._bbox_query(_HITS_SQL, west, south, east, north, z, axes))

    def iter_records(self, batch: int = 10_000) -> Iterator[TileRecord]:
        last = -1
        while True:
            with self._pool.connection() as conn:
                rows = conn.execute(
                    f"SELECT id, {RECORD_COLUMNS} FROM tiles WHERE id > %s ORDER BY id LIMIT %s",
                    (last, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield record_from_row(row[1:])
            last = rows[-1][0]

    def iter_lru(self, batch: int = 1000) -> Iterator[TileRecord]:
        last: tuple[float, int] = (-1.0, -1)
        while True:
            with self._pool.connection() as conn:
                rows = conn.execute(
                    f"SELECT last_access_utc, id, {RECORD_COLUMNS} FROM tiles"
                    " WHERE (last_access_utc, id) > (%s, %s) ORDER BY last_access_utc, id"
                    " LIMIT %s", (*last, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield record_from_row(row[2:])
            last = (rows[-1][0], rows[-1][1])

    def totals(self) -> tuple[int, int]:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT tile_count, total_bytes FROM store_totals").fetchone()
        return int(row[0]), int(row[1])

    def summary(self) -> StoreSummary:
        count, total = self.totals()
        with self._pool.connection() as conn:
            zooms = {int(z): int(n) for z, n in conn.execute(
                "SELECT z, count(*) FROM tiles GROUP BY z ORDER BY z")}
            b = conn.execute(
                "SELECT min(west), min(south), max(east), max(north) FROM tiles").fetchone()
            dates: dict[date, int] = {d: int(n) for d, n in conn.execute(
                "SELECT capture_date, count(*) FROM tiles GROUP BY capture_date"
                " ORDER BY capture_date")}
            quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        bounds = None if b[0] is None else (b[0], b[1], b[2], b[3])
        return StoreSummary(count, total, zooms, bounds, dates, int(quarantined))

    def quarantine_entries(self) -> list[QuarantineEntry]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT z, x, y, expected_sha256, found_sha256, reason, file_path,"
                " quarantined_utc FROM quarantine ORDER BY id").fetchall()
        return [QuarantineEntry(TileId(r[0], r[1], r[2]), r[3], r[4], r[5], r[6], r[7])
                for r in rows]

    def protected_areas(self) -> dict[str, str]:
        with self._pool.connection() as conn:
            return dict(conn.execute(
                "SELECT name, ST_AsText(geom) FROM protected_areas ORDER BY name").fetchall())

    def drop(self) -> None:
        """Delete the whole store schema (tests and benchmarks clean up with this)."""
        if self.read_only:
            raise ReadOnlyStoreError(f"cannot drop {self.location}: store opened read-only")
        with self._pool.connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(self.schema)))
