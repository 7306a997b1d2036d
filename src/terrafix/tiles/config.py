"""Opening the store of a cache folder: SQLite by default, PostgreSQL when a DSN is configured.

A cache root may hold `store.toml`:
```toml
[store]
backend = "postgres"              # or "sqlite" (default)
dsn = "host=/run/postgresql dbname=tiles"
schema = "terrafix_tiles"
budget_bytes = 10_000_000_000
```
The environment variable TERRAFIX_TILES_DSN, when set, selects PostgreSQL with that DSN (and
wins over the file), so a ground machine can point every tool at its server without editing
caches. Everything else needs no configuration: `open_store(root)` creates an empty SQLite store.
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from terrafix.tiles.budget import DEFAULT_BUDGET_BYTES
from terrafix.tiles.errors import StoreConfigError
from terrafix.tiles.freshness import FreshnessPolicy
from terrafix.tiles.postgres_backend import DEFAULT_SCHEMA, PostgresBackend
from terrafix.tiles.sqlite_backend import SqliteBackend
from terrafix.tiles.store import ReconcileMode, TileStore

CONFIG_FILE = "store.toml"
SQLITE_FILE = "tiles.sqlite"
DSN_ENV = "TERRAFIX_TILES_DSN"


class StoreSettings(BaseModel):
    """The `[store]` table of `<root>/store.toml`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    backend: Literal["sqlite", "postgres"] = "sqlite"
    dsn: str | None = None
    schema_name: str = Field(DEFAULT_SCHEMA, alias="schema")
    budget_bytes: int = Field(DEFAULT_BUDGET_BYTES, gt=0)


def load_settings(root: str | Path) -> StoreSettings:
    path = Path(root) / CONFIG_FILE
    data: dict = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text("utf-8")).get("store", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise StoreConfigError(f"cannot read {path}: {exc}") from exc
    env_dsn = os.environ.get(DSN_ENV)
    if env_dsn:
        data = {**data, "backend": "postgres", "dsn": env_dsn}
    try:
        settings = StoreSettings.model_validate(data)
    except ValidationError as exc:
        raise StoreConfigError(f"invalid [store] settings in {path}: {exc}") from exc
    if settings.backend == "postgres" and not settings.dsn:
        raise StoreConfigError(f"{path}: backend 'postgres' needs a dsn (or set {DSN_ENV})")
    return settings


def open_store(root: str | Path, *, read_only: bool = False, dsn: str | None = None,
               schema: str | None = None, budget_bytes: int | None = None,
               reconcile: ReconcileMode = "full", today: date | None = None,
               freshness: FreshnessPolicy | None = None, create: bool = True,
               check_schema: bool = True, fsync_files: bool = False) -> TileStore:
    """The tile store of a cache root (see module docstring for how the backend is chosen).

    read_only: the in-flight mode (nothing is ever written). reconcile: "full" compares rows
    and files at open, "journal" only replays interrupted batches, "none" skips both.
    today: the date freshness is judged at (default: UTC today).
    """
    root = Path(root)
    settings = load_settings(root)
    if dsn is not None:
        settings = settings.model_copy(update={"backend": "postgres", "dsn": dsn})
    if read_only and not root.is_dir():
        raise StoreConfigError(f"cache root {root} does not exist (cannot open it read-only)")
    if settings.backend == "postgres":
        assert settings.dsn is not None
        backend: SqliteBackend | PostgresBackend = PostgresBackend(
            settings.dsn, schema=schema or settings.schema_name, read_only=read_only,
            create=create, check_schema=check_schema)
    else:
        if not read_only:
            root.mkdir(parents=True, exist_ok=True)
        backend = SqliteBackend(root / SQLITE_FILE, read_only=read_only, create=create,
                                check_schema=check_schema)
    try:
        return TileStore(root, backend, budget_bytes=budget_bytes or settings.budget_bytes,
                         freshness=freshness, today=today, reconcile=reconcile,
                         fsync_files=fsync_files)
    except BaseException:
        backend.close()
        raise
