"""MBTiles 1.3 import and export (one SQLite file of tiles: QGIS, GDAL and most map tools read it).

MBTiles rows are in TMS order (row 0 at the south), so y is flipped against XYZ. Export writes
the standard `metadata` and `tiles` tables (JPEG, with the unique index the spec recommends)
plus a `terrafix_tiles` table with each tile's capture date, source and SHA-256, which map tools
ignore and which makes an export -> import round trip keep the provenance. Import takes capture
dates from that table when present, else from the `--capture-date` given; tiles that are not
256x256 grayscale JPEG (PNG, colour) are converted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from terrafix.geo.tiles import TILE_SIZE_PX, TileId
from terrafix.tiles.errors import (
    CorruptTileError,
    InvalidTileError,
    ProvisioningError,
    TileCacheError,
)
from terrafix.tiles.jpeg import encode_gray
from terrafix.tiles.records import NewTile, VotingStatus
from terrafix.tiles.store import TileStore

Progress = Callable[[int, int], None]
_BATCH = 256


_MAX_ZOOM = 30


def _tms_row(z: int, y: int) -> int:
    return (1 << z) - 1 - y


@dataclass(frozen=True, slots=True)
class MbtilesReport:
    path: str
    tiles_written: int
    tiles_skipped: int
    tiles_converted: int
    tiles_total: int


def _as_gray_jpeg(data: bytes, what: str) -> tuple[bytes, bool]:
    """The tile as a 256x256 grayscale JPEG; True when it had to be converted."""
    arr = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ProvisioningError(f"{what}: tile data is not a decodable image")
    if img.shape[:2] != (TILE_SIZE_PX, TILE_SIZE_PX):
        raise ProvisioningError(f"{what}: tile is {img.shape[1]}x{img.shape[0]} px, expected "
                                f"{TILE_SIZE_PX}x{TILE_SIZE_PX}")
    if data[:3] == b"\xff\xd8\xff" and img.ndim == 2:
        return data, False
    if img.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        img = cv2.cvtColor(img, code)
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return encode_gray(img), True


def import_mbtiles(store: TileStore, path: str | Path, *, capture_date: date | None = None,
                   source: str | None = None, replace: bool = False,
                   on_progress: Progress | None = None) -> MbtilesReport:
    """Copy every tile of an MBTiles file into the store (resumable: present tiles are skipped)."""
    p = Path(path)
    if not p.is_file():
        raise ProvisioningError(f"no MBTiles file at {p}")
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        total = conn.execute("SELECT count(*) FROM tiles").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise ProvisioningError(f"{p} is not an MBTiles file: {exc}") from exc
    try:
        provenance: dict[tuple[int, int, int], tuple[str, str]] = {}
        has_ext = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND"
                               " name = 'terrafix_tiles'").fetchone()
        if has_ext:
            for z, x, y, cap, src in conn.execute(
                    "SELECT z, x, y, capture_date, source FROM terrafix_tiles"):
                provenance[(z, x, y)] = (cap, src)
        if not provenance and capture_date is None:
            raise ProvisioningError(f"{p}: no per-tile capture dates inside; give one "
                                    f"(--capture-date YYYY-MM-DD)")
        default_source = source or f"mbtiles:{p.name}"
        written = skipped = converted = done = 0
        batch: list[NewTile] = []

        def flush() -> None:
            nonlocal written, skipped
            if batch:
                try:
                    rep = store.put_many(batch, on_conflict="replace" if replace else "skip")
                except InvalidTileError as exc:  # the store's own check: name the source file
                    raise ProvisioningError(f"{p}: {exc}") from exc
                written += len(rep.inserted) + len(rep.replaced)
                skipped += len(rep.unchanged)
                batch.clear()

        for z, col, row, data in conn.execute(
                "SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles"
                " ORDER BY zoom_level, tile_column, tile_row"):
            done += 1
            if not all(isinstance(v, int) for v in (z, col, row)) or \
                    not isinstance(data, bytes):
                # SQLite columns are untyped: bytes(10**12) from an integer tile_data would
                # allocate a terabyte, a text zoom would fail far from here
                raise ProvisioningError(
                    f"{p}: tile row has zoom_level={z!r}, tile_column={col!r}, tile_row={row!r}"
                    f" and tile_data of type {type(data).__name__}; expected integers and a "
                    "blob")
            if not 0 <= z <= _MAX_ZOOM:  # before 1 << z: a zoom of 10**9 is gigabytes
                raise ProvisioningError(f"{p}: tile zoom_level {z} outside 0..{_MAX_ZOOM}")
            y = _tms_row(z, row)
            try:
                t = TileId(z, col, y)
            except ValueError as exc:
                raise ProvisioningError(f"{p}: bad tile address z={z} column={col} row={row}: "
                                        f"{exc}") from exc
            if not replace and store.get_record(t) is not None:
                skipped += 1
            else:
                jpeg, was_converted = _as_gray_jpeg(bytes(data), f"{p} tile {z}/{col}/{y}")
                converted += was_converted
                cap_s, src = provenance.get((z, col, y), (None, default_source))
                try:
                    cap = date.fromisoformat(cap_s) if cap_s else capture_date
                except ValueError as exc:
                    raise ProvisioningError(f"{p}: tile {z}/{col}/{y} capture date {cap_s!r} is "
                                            f"not YYYY-MM-DD") from exc
                if cap is None:
                    raise ProvisioningError(f"{p}: tile {z}/{col}/{y} has no capture date; give "
                                            f"one (--capture-date YYYY-MM-DD)")
                batch.append(NewTile(t, jpeg, cap, src if source is None else source,
                                     VotingStatus.TRUSTED))
                if len(batch) >= _BATCH:
                    flush()
            if on_progress and done % _BATCH == 0:
                on_progress(done, total)
        flush()
        if on_progress:
            on_progress(done, total)
    except sqlite3.DatabaseError as exc:  # a page past the first is corrupt
        raise ProvisioningError(f"{p}: unreadable MBTiles file: {exc}") from exc
    finally:
        conn.close()
    return MbtilesReport(str(p), written, skipped, converted, total)


def export_mbtiles(store: TileStore, path: str | Path, *, zooms: Sequence[int] | None = None,
                   name: str | None = None, overwrite: bool = False,
                   on_progress: Progress | None = None) -> MbtilesReport:
    """Write the store's tiles (verified; corrupt ones are skipped and reported) to MBTiles."""
    p = Path(path)
    if p.exists():
        if not overwrite:
            raise TileCacheError(f"{p} already exists (pass overwrite to replace it)")
        p.unlink()
    summary = store.summary()
    if summary.tile_count == 0:
        raise TileCacheError(f"tile store {store.root} is empty; nothing to export")
    wanted = set(zooms) if zooms else set(summary.zooms)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    written = skipped = done = 0
    sources: set[str] = set()
    dates: set[date] = set()
    try:
        conn.executescript("""
            CREATE TABLE metadata (name TEXT, value TEXT);
            CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER,
                                tile_data BLOB);
            CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);
            CREATE TABLE terrafix_tiles (z INTEGER, x INTEGER, y INTEGER, capture_date TEXT,
                                         source TEXT, sha256 TEXT, PRIMARY KEY (z, x, y));
        """)
        total = sum(n for z, n in summary.zooms.items() if z in wanted)
        rows: list[tuple] = []
        ext: list[tuple] = []
        for rec in store.backend.iter_records():
            t = rec.tile
            if t.z not in wanted:
                continue
            done += 1
            try:
                data = store.read_tile(t, allow_rejected=True)
            except CorruptTileError:
                skipped += 1
                continue
            rows.append((t.z, t.x, _tms_row(t.z, t.y), data))
            ext.append((t.z, t.x, t.y, rec.capture_date.isoformat(), rec.source, rec.sha256))
            sources.add(rec.source)
            dates.add(rec.capture_date)
            written += 1
            if len(rows) >= _BATCH:
                conn.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", rows)
                conn.executemany("INSERT INTO terrafix_tiles VALUES (?, ?, ?, ?, ?, ?)", ext)
                rows.clear()
                ext.clear()
                if on_progress:
                    on_progress(done, total)
        conn.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO terrafix_tiles VALUES (?, ?, ?, ?, ?, ?)", ext)
        w, s, e, n = summary.bounds or (0.0, 0.0, 0.0, 0.0)
        zs = sorted(wanted & set(summary.zooms))
        meta = {
            "name": name or store.root.name or "terrafix",
            "format": "jpg",
            "type": "baselayer",
            "version": "1.3",
            "description": "terrafix satellite tile cache export (grayscale)",
            "bounds": f"{w:.7f},{s:.7f},{e:.7f},{n:.7f}",
            "center": f"{(w + e) / 2:.7f},{(s + n) / 2:.7f},{zs[-1] if zs else 0}",
            "minzoom": str(zs[0] if zs else 0),
            "maxzoom": str(zs[-1] if zs else 0),
            "attribution": ", ".join(sorted(sources)),
            "terrafix:capture_dates": ", ".join(d.isoformat() for d in sorted(dates)),
        }
        conn.executemany("INSERT INTO metadata VALUES (?, ?)", list(meta.items()))
        conn.commit()
    finally:
        conn.close()
    tmp.replace(p)
    if on_progress:
        on_progress(done, done)
    return MbtilesReport(str(p), written, skipped, 0, done)
