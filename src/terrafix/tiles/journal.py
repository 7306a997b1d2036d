"""Atomic batch writes of tile files next to a database transaction.

A file system and a database cannot commit together, so every batch goes through a staging
folder `<root>/tiles/.staging/<batch>/`:

1. the new JPEGs are written there (`<z>-<x>-<y>.new`);
2. inside the open database transaction, an `intent.json` listing every tile and its new hash
   is written and fsync'ed, then each replaced file is moved aside (`.old`) and each new file is
   renamed into `tiles/{z}/{x}/{y}.jpg` (a rename is atomic: readers see the old or the new
   file, never half of one);
3. the transaction commits, and the staging folder is removed.

If the process dies anywhere in between, the next writable open replays the intent: a tile
whose row carries the new hash was committed (leftovers are deleted); otherwise the new file is
removed and the moved-aside original put back. A folder without an intent placed nothing and is
simply removed. So after a crash either the row and the file both changed, or neither did.

A live batch holds an exclusive `flock` on `<batch>/.lock` for its whole life (the kernel drops
it when the process dies), so a second process opening the store skips batches that are still
being written instead of "recovering" them; steps 2-3 also run under the database writer lock,
which a full reconcile takes too.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from terrafix.geo.tiles import TileId

log = logging.getLogger(__name__)

INTENT_FILE = "intent.json"
LOCK_FILE = ".lock"


def _stem(tile: TileId) -> str:
    return f"{tile.z}-{tile.x}-{tile.y}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str | None:
    try:
        return sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


@dataclass(frozen=True, slots=True)
class Intent:
    """One tile of a batch: where it goes, its new hash, whether it replaces a file."""

    tile: TileId
    sha256: str
    replaces: bool


class WriteBatch:
    """The staging folder of one batch (see module docstring).

    Provisioning writes thousands of tiles per minute through here, so the per-tile steps use
    str paths and plain os calls (pathlib objects and buffered files cost more than the
    system calls themselves), and each tile folder is created once per batch.
    """

    def __init__(self, staging_root: Path, tile_path: Callable[[TileId], str | Path],
                 fsync_files: bool = False) -> None:
        self.dir = staging_root / uuid.uuid4().hex
        self.dir.mkdir(parents=True)
        self._dir = os.fspath(self.dir)
        self._lock_fd = os.open(self.dir / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._tile_path = tile_path
        self._fsync = fsync_files
        self._placed: list[Intent] = []
        self._made_dirs: set[str] = set()

    def stage(self, tile: TileId, data: bytes) -> None:
        fd = os.open(f"{self._dir}/{_stem(tile)}.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def write_intent(self, intents: list[Intent]) -> None:
        doc = [{"z": i.tile.z, "x": i.tile.x, "y": i.tile.y, "sha256": i.sha256,
                "replaces": i.replaces} for i in intents]
        path = self.dir / INTENT_FILE
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.dir)

    def place(self, intent: Intent) -> None:
        """Move the staged file into place (the original, if any, aside)."""
        final = os.fspath(self._tile_path(intent.tile))
        stem = _stem(intent.tile)
        if intent.replaces and os.path.exists(final):
            os.replace(final, f"{self._dir}/{stem}.old")
        parent = os.path.dirname(final)
        if parent not in self._made_dirs:
            os.makedirs(parent, exist_ok=True)
            self._made_dirs.add(parent)
        os.replace(f"{self._dir}/{stem}.new", final)
        self._placed.append(intent)

    def undo(self) -> None:
        """Put every placed tile back as it was (after a rolled-back transaction)."""
        for intent in reversed(self._placed):
            _restore(intent, self.dir, Path(self._tile_path(intent.tile)))
        self._placed.clear()

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _restore(intent: Intent, batch_dir: Path, final: Path) -> None:
    if file_sha256(final) == intent.sha256:
        final.unlink()
    old = batch_dir / f"{_stem(intent.tile)}.old"
    if old.exists():
        os.replace(old, final)


def _is_live(batch_dir: Path) -> bool:
    """True when a running process still holds the batch's lock."""
    try:
        fd = os.open(batch_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def pending_batches(staging_root: Path) -> list[Path]:
    """Staging folders of batches that are not being written by a live process."""
    if not staging_root.is_dir():
        return []
    return sorted(p for p in staging_root.iterdir() if p.is_dir() and not _is_live(p))


def recover(staging_root: Path, tile_path: Callable[[TileId], Path],
            committed_sha: Callable[[TileId], str | None], fix: bool) -> list[str]:
    """Finish or undo interrupted batches; returns one line per batch found.

    With fix=False (read-only stores) nothing is touched and the lines describe what a
    writable open would do.
    """
    lines = []
    for batch_dir in pending_batches(staging_root):
        intent_path = batch_dir / INTENT_FILE
        if not intent_path.exists():
            lines.append(f"interrupted write batch {batch_dir.name}: nothing placed, staging "
                         f"files {'removed' if fix else 'left (read-only)'}")
            if fix:
                shutil.rmtree(batch_dir, ignore_errors=True)
            continue
        try:
            entries = json.loads(intent_path.read_text("utf-8"))
            intents = [Intent(TileId(e["z"], e["x"], e["y"]), e["sha256"], e["replaces"])
                       for e in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # An intent is fsync'ed before anything is placed, so an unreadable one means
            # nothing was placed yet; the staged files alone are garbage.
            lines.append(f"interrupted write batch {batch_dir.name}: unreadable intent ({exc})")
            if fix:
                shutil.rmtree(batch_dir, ignore_errors=True)
            continue
        done = sum(committed_sha(i.tile) == i.sha256 for i in intents)
        undone = len(intents) - done
        lines.append(f"interrupted write batch {batch_dir.name}: {done} tiles committed, "
                     f"{undone} rolled back" + ("" if fix else " (pending; store is read-only)"))
        if fix:
            for i in intents:
                if committed_sha(i.tile) != i.sha256:
                    _restore(i, batch_dir, tile_path(i.tile))
            shutil.rmtree(batch_dir, ignore_errors=True)
    for line in lines:
        log.warning("tile store recovery: %s", line)
    return lines
