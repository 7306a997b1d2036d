"""The ground service assembled from its parts: metadata, blobs, serving store, ingest, voter.

`GroundService.open(config)` opens (and migrates a new) database, reconciles blobs against
rows (start-up repair after a crash), and starts the voter, which first re-evaluates every
tile left dirty. The HTTP layer (server.py) and the embedded demo service both use it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from terrafix.geo.tiles import TileId
from terrafix.ground.blobs import FilesystemBlobStore
from terrafix.ground.config import GroundConfig
from terrafix.ground.db import GroundDb
from terrafix.ground.ingest import Ingest, ReconcileReport
from terrafix.ground.serving import open_serving_store, open_superseded_store
from terrafix.ground.voting.voter import Voter
from terrafix.tiles import TileStore

log = logging.getLogger(__name__)

# Where several server processes share one PostgreSQL database, an unnamed blob may belong to
# another process's batch in flight: only blobs older than this are orphans there.
POSTGRES_ORPHAN_GRACE_S = 600.0


@dataclass
class GroundService:
    config: GroundConfig
    db: GroundDb
    blobs: FilesystemBlobStore
    serving: TileStore
    ingest: Ingest
    voter: Voter
    startup_reconcile: ReconcileReport

    @classmethod
    def open(cls, config: GroundConfig, *, start_voter: bool = True,
             reconcile: bool = True) -> GroundService:
        """reconcile=False opens beside a running service (`terrafix ground vote`): the
        start-up repair would take a batch in flight for crash debris."""
        root = config.root
        root.mkdir(parents=True, exist_ok=True)
        db = GroundDb.open(root, dsn=config.dsn, schema=config.schema_name)
        blobs = FilesystemBlobStore(root / "blobs", fsync=config.fsync)
        serving = open_serving_store(root, config.dsn, config.schema_name,
                                     reconcile=reconcile)
        superseded = open_superseded_store(root, config.dsn, config.schema_name,
                                           reconcile=reconcile)
        voter = Voter(db, blobs, serving, config.voting, superseded)
        ingest = Ingest(db, blobs, area=config.area, limits=config.limits,
                        on_committed=voter.wake,
                        fault_pause_before_commit_s=config.fault_pause_before_commit_s)
        grace = config.orphan_grace_s
        if grace is None:
            grace = POSTGRES_ORPHAN_GRACE_S if config.dsn else 0.0
        report = (ingest.reconcile(orphan_grace_s=grace) if reconcile
                  else ReconcileReport(0, (), ()))
        log.info("ground service at %s (%s): %d candidates, reconcile removed %d partial "
                 "writes and %d orphan blobs", root, db.location, db.candidate_count(),
                 report.partial_writes, len(report.orphan_blobs))
        svc = cls(config, db, blobs, serving, ingest, voter, report)
        if start_voter:
            voter.start()
        return svc

    def vote_counts(self) -> Counter[str]:
        """Tiles per vote status (PENDING, TRUSTED, CONFLICT)."""
        return self.db.vote_counts()

    def revote(self, tiles: list[TileId]) -> int:
        """Re-evaluate these tiles now (the `terrafix ground vote` command)."""
        self.db.mark_dirty(tiles)
        return self.voter.run_pending()

    def close(self) -> None:
        self.voter.stop()
        self.blobs.close()
        self.serving.close()
        self.voter.superseded.close()
        self.db.close()

    def __enter__(self) -> GroundService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
