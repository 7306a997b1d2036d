"""Start-up reconciliation of tile files against metadata rows (T2).

Besides replaying interrupted batches (see `journal`), a full scan compares every row with the
files on disk: a file without a row (left by an eviction or a crash after a delete) is removed,
a row without a file is removed, and a file whose size differs from its row is quarantined.
Hashes are not recomputed here (that would read the whole cache at every start); every read
checks the hash instead. A read-only store reports what it finds and changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from terrafix.geo.tiles import TileId


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What reconciliation found; `fixed` says whether it also repaired it."""

    fixed: bool
    batches: tuple[str, ...] = ()
    orphan_files: tuple[str, ...] = ()
    orphan_rows: tuple[TileId, ...] = ()
    size_mismatches: tuple[TileId, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def clean(self) -> bool:
        return not (self.batches or self.orphan_files or self.orphan_rows
                    or self.size_mismatches)

    def lines(self) -> list[str]:
        verb = "fixed" if self.fixed else "found (read-only, not fixed)"
        out = list(self.batches)
        out += [f"orphan file {p} ({'removed' if self.fixed else verb})" for p in self.orphan_files]
        out += [f"row without file {t.z}/{t.x}/{t.y} ({'removed' if self.fixed else verb})"
                for t in self.orphan_rows]
        out += [f"size mismatch {t.z}/{t.x}/{t.y} ({'quarantined' if self.fixed else verb})"
                for t in self.size_mismatches]
        return out + list(self.notes)


def scan_tile_files(tiles_dir: Path) -> tuple[dict[TileId, int], list[Path]]:
    """Files under tiles/{z}/{x}/{y}.jpg with their sizes, and every other file found there
    (the staging folder excluded)."""
    found: dict[TileId, int] = {}
    strays: list[Path] = []
    if not tiles_dir.is_dir():
        return found, strays
    for z_entry in os.scandir(tiles_dir):
        if z_entry.name.startswith(".staging"):
            continue
        if not (z_entry.is_dir() and z_entry.name.isdigit()):
            strays.append(Path(z_entry.path))
            continue
        for x_entry in os.scandir(z_entry.path):
            if not (x_entry.is_dir() and x_entry.name.isdigit()):
                strays.append(Path(x_entry.path))
                continue
            for f in os.scandir(x_entry.path):
                stem, dot, ext = f.name.partition(".")
                if ext == "jpg" and dot and stem.isdigit() and f.is_file():
                    try:
                        found[TileId(int(z_entry.name), int(x_entry.name), int(stem))] = \
                            f.stat().st_size
                    except ValueError:
                        strays.append(Path(f.path))
                else:
                    strays.append(Path(f.path))
    return found, strays
