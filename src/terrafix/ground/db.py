"""Ground metadata in SQLite (embedded default) or PostgreSQL + PostGIS (production).

One class, `GroundDb`, holds every query; the two dialects differ only in how a connection is
obtained and held (`_SqliteConnector`: a connection per thread, WAL, BEGIN IMMEDIATE so
writers serialise; `_PostgresConnector`: a psycopg pool, one PostgreSQL schema per database,
the PostGIS footprint of each voted tile) and in the parameter marker, which the queries write
as `?` and the PostgreSQL connector rewrites to `%s`. Both run the same tests.

Exactly-once ingest rests on the primary key of `candidates` (the content hash): concurrent
inserts of one hash are resolved by the database (`ON CONFLICT DO NOTHING RETURNING`), so
each batch learns which of its tiles it actually stored.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from terrafix.geo.tiles import TileId, tile_bounds
from terrafix.ground.errors import GroundConfigError
from terrafix.ground.migrations import check_version, migrations
from terrafix.ground.records import (
    CandidateRecord,
    DeviceRecord,
    SessionRecord,
    VoteRecord,
    VoteStatus,
)

SQLITE_FILE = "ground.sqlite"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_DEVICE_COLS = "fingerprint, public_key, name, registered_utc, revoked_utc, revoked_reason"
_SESSION_COLS = ("session_id, device_fp, flight_id, session_key, certificate, not_before_utc,"
                 " expires_utc, created_utc, closed_utc, accepted, duplicate, rejected")
_CAND_COLS = ("sha256, z, x, y, session_id, device_fp, flight_id, captured_utc, sigma_m, trust,"
              " size_bytes, change_score, batch_seq, received_utc")
_VOTE_COLS = ("z, x, y, status, trusted_sha256, trusted_capture_utc, flights, devices,"
              " evidence, evaluated_utc, dirty_seq, evaluated_seq, served_sha256")


def _candidate(row: Sequence[Any]) -> CandidateRecord:
    return CandidateRecord(row[0], TileId(int(row[1]), int(row[2]), int(row[3])), row[4],
                           row[5], row[6], float(row[7]), float(row[8]), row[9], int(row[10]),
                           None if row[11] is None else float(row[11]), int(row[12]),
                           float(row[13]))


def _vote(row: Sequence[Any]) -> VoteRecord:
    return VoteRecord(TileId(int(row[0]), int(row[1]), int(row[2])), VoteStatus(row[3]),
                      row[4], row[5], int(row[6]), int(row[7]), row[8], row[9], int(row[10]),
                      int(row[11]), row[12])


class _Cursor:
    """The operations the queries need, on one connection inside one transaction."""

    def __init__(self, conn: Any, marker: str) -> None:
        self._conn = conn
        self._marker = marker

    def _sql(self, text: str) -> str:
        return text if self._marker == "?" else text.replace("?", "%s")

    def execute(self, text: str, args: Sequence[Any] = ()) -> list[tuple]:
        cur = self._conn.execute(self._sql(text), tuple(args))
        return list(cur.fetchall()) if cur.description is not None else []

    def executemany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._marker == "?":
            self._conn.executemany(text, rows)
        else:
            with self._conn.cursor() as cur:
                cur.executemany(self._sql(text), rows)


class _SqliteConnector:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False, timeout=30.0)
            except sqlite3.OperationalError as exc:
                raise GroundConfigError(f"cannot open {self.path}: {exc}") from exc
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a committed transaction survives a process crash (kill -9);
            # only a power cut can lose the last commits, never corrupt the file.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, write: bool) -> Iterator[_Cursor]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield _Cursor(conn, "?")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def schema_version(self) -> int:
        conn = self._conn()
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                            " AND name = 'schema_version'").fetchone():
            return 0
        return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)

    def migrate(self) -> int:
        current = self.schema_version()
        for version, text in migrations(self.dialect):
            if version > current:
                self._conn().executescript(
                    "BEGIN IMMEDIATE;\nCREATE TABLE IF NOT EXISTS schema_version"
                    " (version INTEGER NOT NULL);\n"
                    f"{text}\nINSERT INTO schema_version VALUES ({version});\nCOMMIT;")
                current = version
        return current

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class _PostgresConnector:
    dialect = "postgres"

    def __init__(self, dsn: str, schema: str, max_connections: int) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise GroundConfigError(f"PostgreSQL schema name must match "
                                    f"{_SCHEMA_NAME.pattern}, got {schema!r}")
        from terrafix.tiles.postgres_backend import redact_dsn

        self.schema = schema
        self.location = f"{redact_dsn(dsn)} schema={schema}"
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(schema)))
        except psycopg.Error as exc:
            raise GroundConfigError(f"cannot connect to {self.location}: {exc}") from exc
        self._pool = ConnectionPool(
            dsn, min_size=1, max_size=max_connections, open=True, timeout=30.0,
            kwargs={"autocommit": True, "options": f"-c search_path={schema},public"},
            name=f"ground-{schema}")

    @contextmanager
    def transaction(self, write: bool) -> Iterator[_Cursor]:
        with self._pool.connection() as conn, conn.transaction():
            yield _Cursor(conn, "%s")

    def schema_version(self) -> int:
        with self._pool.connection() as conn:
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                                  (f"{self.schema}.schema_version",)).fetchone()[0]
            if not exists:
                return 0
            row = conn.execute(sql.SQL("SELECT max(version) FROM {}.schema_version").format(
                sql.Identifier(self.schema))).fetchone()
            return int(row[0] or 0)

    def migrate(self) -> int:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                         (f"ground-migrate:{self.schema}",))
            ident = sql.Identifier(self.schema)
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.schema_version"
                                 " (version INTEGER NOT NULL)").format(ident))
            current = int(conn.execute(sql.SQL("SELECT coalesce(max(version), 0) FROM"
                                               " {}.schema_version").format(ident)).fetchone()[0])
            for version, text in migrations(self.dialect):
                if version > current:
                    conn.execute(text)  # type: ignore[arg-type]
                    conn.execute(sql.SQL("INSERT INTO {}.schema_version VALUES (%s)").format(
                        ident), (version,))
                    current = version
            return current

    def close(self) -> None:
        self._pool.close()


class GroundDb:
    """Every query of the ground service (see module docstring)."""

    def __init__(self, connector: _SqliteConnector | _PostgresConnector, *,
                 create: bool = True, check_schema: bool = True) -> None:
        self._c = connector
        self.dialect = connector.dialect
        self.location = connector.location
        if create and connector.schema_version() == 0:
            connector.migrate()
        if check_schema:
            check_version(connector.schema_version(), self.dialect, self.location)

    @classmethod
    def open(cls, root: str | Path, *, dsn: str | None = None,
             schema: str = "terrafix_ground", max_connections: int = 16,
             create: bool = True, check_schema: bool = True) -> GroundDb:
        """The database of a ground root (SQLite file) or of a PostgreSQL schema (dsn).
        check_schema=False only for `migrate`."""
        if dsn:
            return cls(_PostgresConnector(dsn, schema, max_connections), create=create,
                       check_schema=check_schema)
        root = Path(root)
        if not create and not (root / SQLITE_FILE).exists():
            raise GroundConfigError(f"no ground database at {root / SQLITE_FILE}")
        root.mkdir(parents=True, exist_ok=True)
        return cls(_SqliteConnector(root / SQLITE_FILE), create=create,
                   check_schema=check_schema)

    def migrate(self) -> int:
        return self._c.migrate()

    def close(self) -> None:
        self._c.close()

    def _tx(self, write: bool = False):
        return self._c.transaction(write)

    # --- devices -------------------------------------------------------------------------
    def add_device(self, fingerprint: str, public_key_b64: str, name: str, now_s: float
                   ) -> bool:
        """Register a device key; False when that key is already registered."""
        with self._tx(True) as cur:
            rows = cur.execute(
                f"INSERT INTO devices ({_DEVICE_COLS}) VALUES (?, ?, ?, ?, NULL, NULL)"
                " ON CONFLICT (fingerprint) DO NOTHING RETURNING fingerprint",
                (fingerprint, public_key_b64, name, now_s))
        return bool(rows)

    def get_device(self, fingerprint: str) -> DeviceRecord | None:
        with self._tx() as cur:
            rows = cur.execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE fingerprint = ?",
                               (fingerprint,))
        return DeviceRecord(*rows[0]) if rows else None

    def list_devices(self) -> list[DeviceRecord]:
        with self._tx() as cur:
            rows = cur.execute(f"SELECT {_DEVICE_COLS} FROM devices ORDER BY registered_utc")
        return [DeviceRecord(*r) for r in rows]

    def revoke_device(self, fingerprint: str, reason: str, now_s: float) -> bool:
        """Revoke a device (its sessions stop at once); False when no such unrevoked device."""
        with self._tx(True) as cur:
            rows = cur.execute(
                "UPDATE devices SET revoked_utc = ?, revoked_reason = ?"
                " WHERE fingerprint = ? AND revoked_utc IS NULL RETURNING fingerprint",
                (now_s, reason, fingerprint))
        return bool(rows)

    # --- sessions ------------------------------------------------------------------------
    def insert_session(self, s: SessionRecord) -> SessionRecord:
        """Store a session unless its id exists; returns the stored one either way."""
        with self._tx(True) as cur:
            cur.execute(
                f"INSERT INTO sessions ({_SESSION_COLS}) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, 0, 0) ON CONFLICT (session_id) DO NOTHING",
                (s.session_id, s.device_fp, s.flight_id, s.session_key_b64, s.certificate_json,
                 s.not_before_utc_s, s.expires_utc_s, s.created_utc_s))
            rows = cur.execute(f"SELECT {_SESSION_COLS} FROM sessions WHERE session_id = ?",
                               (s.session_id,))
        return SessionRecord(*rows[0])

    def get_session(self, session_id: str) -> SessionRecord | None:
        with self._tx() as cur:
            rows = cur.execute(f"SELECT {_SESSION_COLS} FROM sessions WHERE session_id = ?",
                               (session_id,))
        return SessionRecord(*rows[0]) if rows else None

    def session_count(self) -> int:
        with self._tx() as cur:
            return int(cur.execute("SELECT count(*) FROM sessions")[0][0])

    def close_session(self, session_id: str, now_s: float) -> None:
        with self._tx(True) as cur:
            cur.execute("UPDATE sessions SET closed_utc = ? WHERE session_id = ?"
                        " AND closed_utc IS NULL", (now_s, session_id))

    def count_batch(self, session_id: str, duplicate: int, rejected: int) -> None:
        """Count a batch that stored nothing on its session."""
        if duplicate or rejected:
            with self._tx(True) as cur:
                cur.execute("UPDATE sessions SET duplicate = duplicate + ?,"
                            " rejected = rejected + ? WHERE session_id = ?",
                            (duplicate, rejected, session_id))

    # --- candidates ----------------------------------------------------------------------
    def known_hashes(self, hashes: Sequence[str]) -> set[str]:
        if not hashes:
            return set()
        marks = ", ".join("?" * len(hashes))
        with self._tx() as cur:
            rows = cur.execute(f"SELECT sha256 FROM candidates WHERE sha256 IN ({marks})",
                               tuple(hashes))
        return {r[0] for r in rows}

    def commit_candidates(self, session_id: str, cands: Sequence[CandidateRecord],
                          rejected: int, known_duplicates: int = 0) -> set[str]:
        """Insert candidates (a hash already stored is skipped), mark their votes for
        re-evaluation and count the batch on its session, in one transaction. Returns the
        hashes this call inserted."""
        inserted: set[str] = set()
        with self._tx(True) as cur:
            for c in cands:
                rows = cur.execute(
                    f"INSERT INTO candidates ({_CAND_COLS}) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (sha256) DO NOTHING RETURNING sha256",
                    (c.sha256, c.tile.z, c.tile.x, c.tile.y, c.session_id, c.device_fp,
                     c.flight_id, c.captured_utc_s, c.sigma_m, c.trust, c.size_bytes,
                     c.change_score, c.batch_seq, c.received_utc_s))
                if rows:
                    inserted.add(c.sha256)
            tiles = sorted({c.tile for c in cands if c.sha256 in inserted},
                           key=lambda t: (t.z, t.x, t.y))
            self._mark_dirty(cur, tiles)
            cur.execute("UPDATE sessions SET accepted = accepted + ?, duplicate = duplicate + ?,"
                        " rejected = rejected + ? WHERE session_id = ?",
                        (len(inserted), len(cands) - len(inserted) + known_duplicates, rejected,
                         session_id))
        return inserted

    def _mark_dirty(self, cur: _Cursor, tiles: Sequence[TileId]) -> None:
        if self.dialect == "postgres":
            cur.executemany(
                "INSERT INTO votes (z, x, y, dirty_seq, geom) VALUES"
                " (?, ?, ?, 1, ST_MakeEnvelope(?, ?, ?, ?, 4326))"
                " ON CONFLICT (z, x, y) DO UPDATE SET dirty_seq = votes.dirty_seq + 1",
                [(t.z, t.x, t.y, *tile_bounds(t)) for t in tiles])
        else:
            cur.executemany(
                "INSERT INTO votes (z, x, y, dirty_seq) VALUES (?, ?, ?, 1)"
                " ON CONFLICT (z, x, y) DO UPDATE SET dirty_seq = votes.dirty_seq + 1",
                [(t.z, t.x, t.y) for t in tiles])

    def mark_dirty(self, tiles: Sequence[TileId]) -> None:
        """Ask for a re-evaluation of these tiles' votes (`terrafix ground vote`)."""
        with self._tx(True) as cur:
            self._mark_dirty(cur, tiles)

    def candidates_at(self, tile: TileId) -> list[CandidateRecord]:
        with self._tx() as cur:
            rows = cur.execute(f"SELECT {_CAND_COLS} FROM candidates WHERE z = ? AND x = ?"
                               " AND y = ? ORDER BY captured_utc, sha256",
                               (tile.z, tile.x, tile.y))
        return [_candidate(r) for r in rows]

    def get_candidate(self, sha256: str) -> CandidateRecord | None:
        with self._tx() as cur:
            rows = cur.execute(f"SELECT {_CAND_COLS} FROM candidates WHERE sha256 = ?",
                               (sha256,))
        return _candidate(rows[0]) if rows else None

    def iter_candidate_hashes(self) -> Iterator[str]:
        last = ""
        while True:
            with self._tx() as cur:
                rows = cur.execute("SELECT sha256 FROM candidates WHERE sha256 > ?"
                                   " ORDER BY sha256 LIMIT 5000", (last,))
            if not rows:
                return
            for r in rows:
                yield r[0]
            last = rows[-1][0]

    def delete_candidates(self, hashes: Sequence[str]) -> None:
        with self._tx(True) as cur:
            tiles = []
            for h in hashes:
                rows = cur.execute("DELETE FROM candidates WHERE sha256 = ? RETURNING z, x, y",
                                   (h,))
                tiles.extend(TileId(int(r[0]), int(r[1]), int(r[2])) for r in rows)
            self._mark_dirty(cur, tiles)

    def candidate_count(self) -> int:
        with self._tx() as cur:
            return int(cur.execute("SELECT count(*) FROM candidates")[0][0])

    def candidate_tiles_in(self, z: int, x0: int, x1: int, y0: int, y1: int) -> list[TileId]:
        """Distinct z/x/y with candidates in an inclusive tile-index box."""
        with self._tx() as cur:
            rows = cur.execute("SELECT DISTINCT z, x, y FROM candidates WHERE z = ? AND"
                               " x BETWEEN ? AND ? AND y BETWEEN ? AND ?", (z, x0, x1, y0, y1))
        return [TileId(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    # --- votes ---------------------------------------------------------------------------
    def dirty_votes(self, limit: int = 256) -> list[tuple[TileId, int]]:
        with self._tx() as cur:
            rows = cur.execute("SELECT z, x, y, dirty_seq FROM votes WHERE dirty_seq >"
                               " evaluated_seq ORDER BY z, x, y LIMIT ?", (limit,))
        return [(TileId(int(r[0]), int(r[1]), int(r[2])), int(r[3])) for r in rows]

    def save_vote(self, v: VoteRecord, seen_seq: int) -> None:
        """Store an evaluation made from the candidates present at `seen_seq`; a later
        arrival (dirty_seq > seen_seq) keeps the tile dirty for the next round."""
        with self._tx(True) as cur:
            cur.execute(
                "UPDATE votes SET status = ?, trusted_sha256 = ?, trusted_capture_utc = ?,"
                " flights = ?, devices = ?, evidence = ?, evaluated_utc = ?,"
                " evaluated_seq = ?, served_sha256 = ? WHERE z = ? AND x = ? AND y = ?",
                (str(v.status), v.trusted_sha256, v.trusted_capture_utc_s, v.flights,
                 v.devices, v.evidence_json, v.evaluated_utc_s, seen_seq, v.served_sha256,
                 v.tile.z, v.tile.x, v.tile.y))

    def get_vote(self, tile: TileId) -> VoteRecord | None:
        with self._tx() as cur:
            rows = cur.execute(f"SELECT {_VOTE_COLS} FROM votes WHERE z = ? AND x = ? AND y = ?",
                               (tile.z, tile.x, tile.y))
        return _vote(rows[0]) if rows else None

    def votes(self) -> list[VoteRecord]:
        with self._tx() as cur:
            rows = cur.execute(f"SELECT {_VOTE_COLS} FROM votes ORDER BY z, x, y")
        return [_vote(r) for r in rows]

    def vote_counts(self) -> Counter[str]:
        with self._tx() as cur:
            rows = cur.execute("SELECT status, count(*) FROM votes GROUP BY status")
        counts: Counter[str] = Counter({str(s): 0 for s in VoteStatus})
        counts.update({r[0]: int(r[1]) for r in rows})
        return counts

    def pending_evaluations(self) -> int:
        with self._tx() as cur:
            return int(cur.execute("SELECT count(*) FROM votes WHERE dirty_seq >"
                                   " evaluated_seq")[0][0])

