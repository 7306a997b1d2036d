"""The worker that keeps votes current: every tile whose candidates changed is re-evaluated.

Ingest marks a tile dirty in the same transaction that stores its candidate (a counter, so an
arrival during an evaluation is never lost) and wakes the worker; the worker evaluates dirty
tiles in the background, publishes TRUSTED ones to the serving store and saves the vote; a
tile it published whose vote is no longer TRUSTED (a later independent flight disagrees:
CONFLICT) is withdrawn, and what it had replaced is served again (serving.py). A vote is
saved only after its publication or withdrawal, so a crash in between re-evaluates the tile
at the next start (both are idempotent). The vote's evidence carries `serving`: what the
serving store holds for the tile after this vote, and `withdrawn`, the publication it stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence

from terrafix.geo.tiles import TileId, ground_resolution_m_per_px, tile_bounds
from terrafix.ground.blobs import BlobStore
from terrafix.ground.config import VotingConfig
from terrafix.ground.db import GroundDb
from terrafix.ground.errors import GroundStorageError
from terrafix.ground.records import VoteRecord, VoteStatus
from terrafix.ground.serving import publish, withdraw
from terrafix.ground.serving import served as current_serving
from terrafix.ground.voting.decide import Decision, decide
from terrafix.tiles import TileStore
from terrafix.tiles.jpeg import decode_gray

log = logging.getLogger(__name__)

VOTER_NICE = 10


class Voter:
    def __init__(self, db: GroundDb, blobs: BlobStore, serving: TileStore,
                 cfg: VotingConfig, superseded: TileStore) -> None:
        self.db = db
        self.blobs = blobs
        self.serving = serving
        self.superseded = superseded
        self.cfg = cfg
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self.evaluations = 0

    # --- one tile --------------------------------------------------------------------------
    def evaluate(self, tile: TileId, seen_seq: int | None = None) -> Decision:
        """Decide `tile` from its current candidates, publish if TRUSTED, save the vote."""
        if seen_seq is None:
            current = self.db.get_vote(tile)
            seen_seq = current.dirty_seq if current else 0
        cands = self.db.candidates_at(tile)[-self.cfg.max_candidates:]
        images = {}
        for c in cands:
            try:
                img = decode_gray(self.blobs.get(c.sha256))
            except GroundStorageError as exc:
                log.error("vote %s: candidate %s unreadable: %s", tile.path(), c.sha256, exc)
                continue
            if img is not None:
                images[c.sha256] = img
        _, south, _, north = tile_bounds(tile)
        m_per_px = ground_resolution_m_per_px(tile.z, (south + north) / 2)
        decision = decide(cands, images, m_per_px, self.cfg)
        prev = self.db.get_vote(tile)
        served = prev.served_sha256 if prev else None  # the publication of this tile's vote
        rep = decision.representative
        evidence = decision.evidence()
        if (decision.status == VoteStatus.TRUSTED and rep is not None and served != rep.sha256
                and publish(self.serving, tile, self.blobs.get(rep.sha256),
                            rep.captured_utc_s, self.superseded)):
            served = rep.sha256
        elif decision.status != VoteStatus.TRUSTED and served is not None:
            # a trusted tile in dispute is not served as trusted: back to what it replaced
            withdraw(self.serving, self.superseded, tile, served)
            evidence["withdrawn"] = served
            log.warning("vote %s: %s, publication %s withdrawn (%s)", tile.path(),
                        decision.status, served[:16], decision.reason)
            served = None
        elif prev is not None and decision.status != VoteStatus.TRUSTED:
            with contextlib.suppress(ValueError):  # keep saying what was withdrawn
                withdrawn = json.loads(prev.evidence_json).get("withdrawn")
                if withdrawn:
                    evidence["withdrawn"] = withdrawn
        evidence["serving"] = current_serving(self.serving, tile).to_dict()
        record = VoteRecord(tile, decision.status, rep.sha256 if rep else None,
                            rep.captured_utc_s if rep else None, decision.flights,
                            decision.devices, json.dumps(evidence), time.time(),
                            seen_seq, seen_seq, served)
        self.db.save_vote(record, seen_seq)
        self.evaluations += 1
        if prev is None or prev.status != decision.status:
            log.info("vote %s: %s (%s)", tile.path(), decision.status, decision.reason)
        return decision

    def run_pending(self) -> int:
        """Evaluate every dirty tile; returns how many evaluations ran."""
        n = 0
        while not self._stop.is_set():
            dirty = self.db.dirty_votes()
            if not dirty:
                return n
            for tile, seq in dirty:
                if self._stop.is_set():
                    return n
                try:
                    self.evaluate(tile, seq)
                except Exception:  # one bad tile must not stop the voter
                    log.exception("vote %s failed; it stays dirty", tile.path())
                    return n
                n += 1
        return n

    # --- background ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ground-voter", daemon=True)
        self._thread.start()
        self.wake(())

    def wake(self, tiles: Sequence[TileId]) -> None:
        self._idle.clear()
        self._wake.set()

    def _loop(self) -> None:
        # Voting is background work; answering aircraft is not. On Linux a thread has its own
        # nice value: lower this one's so ingest keeps the cores under load.
        with contextlib.suppress(AttributeError, OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid,
                           min(19, os.getpriority(os.PRIO_PROCESS, tid) + VOTER_NICE))
        while not self._stop.is_set():
            self._wake.wait(timeout=2.0)
            self._wake.clear()
            try:
                self.run_pending()
            except Exception:  # keep the worker alive, log the cause
                log.exception("voter round failed")
                time.sleep(1.0)
            if not self._wake.is_set():
                self._idle.set()

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Block until no tile is dirty (tests, benchmarks, the demo's report)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.db.pending_evaluations() == 0:
                return True
            self.wake(())
            self._idle.wait(timeout=0.2)
        return self.db.pending_evaluations() == 0

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
