"""Upload bookkeeping of flight tiles in both backends: the per-tile attempt count is one atomic
statement (no lost counts between concurrent uploaders), UPLOAD_GIVEUP comes at the limit and
is forward only, UPLOADED only moves tiles that are still waiting (REQUIREMENTS U2)."""

from __future__ import annotations

import threading
from datetime import date

import pytest

from terrafix.tiles import InvalidTileError
from terrafix.tiles.records import NewTile, VotingStatus
from tests.tiles.conftest import StoreFactory, block_of_tiles, jpeg


def _pending_store(stores: StoreFactory, n: int):
    store = stores()
    tiles = block_of_tiles(n, 1)
    store.put_many([NewTile(t, jpeg(i), date(2026, 6, 1), "flight:f1", VotingStatus.PENDING)
                    for i, t in enumerate(tiles)])
    return store, tiles


def test_concurrent_rejections_are_all_counted(stores: StoreFactory) -> None:
    store, [tile] = _pending_store(stores, 1)
    per_thread, threads = 25, 4

    def reject() -> None:
        own = stores()  # each uploader its own connection, as two processes would have
        for _ in range(per_thread):
            own.count_upload_rejection(tile, 10_000)

    workers = [threading.Thread(target=reject) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rec = store.get_record(tile)
    assert rec.upload_attempts == per_thread * threads
    assert rec.voting_status == VotingStatus.PENDING


def test_give_up_at_the_limit_is_final(stores: StoreFactory) -> None:
    store, [a, b] = _pending_store(stores, 2)
    assert store.count_upload_rejection(a, 3) == (1, VotingStatus.PENDING)
    assert store.count_upload_rejection(a, 3) == (2, VotingStatus.PENDING)
    assert store.count_upload_rejection(a, 3) == (3, VotingStatus.UPLOAD_GIVEUP)
    assert store.count_upload_rejection(a, 3) is None  # no longer counted
    assert store.get_record(a).upload_attempts == 3
    with pytest.raises(InvalidTileError, match="UPLOAD_GIVEUP is final"):
        store.set_upload_state(a, VotingStatus.PENDING, 0)
    with pytest.raises(InvalidTileError):
        store.set_upload_state(a, VotingStatus.LOW_TRUST, 0)
    assert store.mark_uploaded([a, b]) == 1  # only b was still waiting
    assert store.get_record(a).voting_status == VotingStatus.UPLOAD_GIVEUP
    assert store.get_record(b).voting_status == VotingStatus.UPLOADED
    assert [r.tile for r in store.uploadable_records()] == []
    assert store.count_upload_rejection(b, 3) is None  # uploaded tiles are not counted
