"""The uploader against a real TLS server on loopback (the scriptable ground double): the happy
path, both retry budgets, Retry-After in both forms, the fail-fast refusals, the give-up
transition and its forward-only rule, and dropped connections (REQUIREMENTS U2)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from terrafix.mapping.flight_store import open_flight_store
from terrafix.tiles.errors import InvalidTileError
from terrafix.tiles.provider_server import serve_in_thread
from terrafix.tiles.records import VotingStatus
from terrafix.tiles.tls import make_test_pki
from terrafix.upload.errors import RetryBudgetSpentError, UploadRefusedError
from terrafix.upload.keys import load_device_key
from terrafix.upload.uploader import Uploader

from .fixtures import make_flight_store


class Waits(list):
    """Collects the waits the uploader asks for instead of sleeping (the server is real)."""

    def __call__(self, s: float) -> None:
        self.append(s)


def _statuses(root):
    with open_flight_store(root) as store:
        return {r.tile: (r.voting_status, r.upload_attempts)
                for r in store.backend.iter_records()}


def _run(ground, root, waits=None, records=None, **retry):
    with open_flight_store(root) as store:
        up = Uploader(store, ground.config(**retry), load_device_key(ground.key_path), "f1",
                      sleep=waits if waits is not None else Waits(),
                      on_record=(lambda t, d: records.append((t, d))) if records is not None
                      else None)
        return up.run()


def test_happy_path_uploads_every_tile_once_and_closes(ground, tmp_path):
    root = tmp_path / "flight"
    tiles = make_flight_store(root, "f1", 20, low_trust_every=5)
    records = []
    s = _run(ground, root, records=records)
    assert (s.accepted, s.duplicate, s.rejected, s.retries) == (20, 0, 0, 0)
    assert s.batches == 3 and s.session_fingerprint
    assert ground.double.closed_sessions == [s.session_id]
    assert sorted(ground.double.stored_shas()) == sorted(set(ground.double.stored_shas()))
    assert len(ground.double.stored_shas()) == 20
    st = _statuses(root)
    assert all(st[t][0] == VotingStatus.UPLOADED for t in tiles)
    assert ("upload/session", records[0][1]) == records[0]
    assert records[0][1]["session_key"] == s.session_fingerprint
    # a second run sends nothing: everything acknowledged is excluded
    s2 = _run(ground, root)
    assert s2.offered == 0 and len(ground.double.stored_shas()) == 20


def test_resent_tiles_are_duplicates_never_stored_twice(ground, tmp_path):
    root = tmp_path / "flight"
    tiles = make_flight_store(root, "f1", 6)
    _run(ground, root)
    with open_flight_store(root) as store:  # as if the acknowledgements had been lost
        for t in tiles:
            with store.backend.transaction() as tx:
                tx.set_upload_state(t, VotingStatus.PENDING, 0)
    s = _run(ground, root)
    assert (s.accepted, s.duplicate) == (0, 6)
    assert len(ground.double.stored_shas()) == 6


def test_5xx_retried_with_capped_exponential_backoff(ground, tmp_path):
    root = tmp_path / "flight"
    make_flight_store(root, "f1", 4)
    ground.double.script_batches({"status": 500}, {"status": 502}, {"status": 503})
    waits = Waits()
    s = _run(ground, root, waits, max_in_call_retries=3, backoff_base_s=3.0, backoff_cap_s=10.0)
    assert waits == [3.0, 9.0, 10.0]  # min(3**1, 10), min(3**2, 10), min(3**3, 10)
    assert s.accepted == 4 and s.retries == 3


def test_budget_spent_reports_next_retry_at_and_keeps_tiles_pending(ground, tmp_path):
    root = tmp_path / "flight"
    tiles = make_flight_store(root, "f1", 4)
    ground.double.script_batches(*[{"status": 503}] * 3)
    waits = Waits()
    before = datetime.now(UTC)
    with pytest.raises(RetryBudgetSpentError) as err:
        _run(ground, root, waits, max_in_call_retries=2, backoff_base_s=2.0)
    assert waits == [2.0, 4.0]
    assert before + timedelta(seconds=7) < err.value.next_retry_at \
        < datetime.now(UTC) + timedelta(seconds=9)  # now + the next backoff, 2**3 s
    assert all(v == (VotingStatus.PENDING, 0) for v in _statuses(root).values())
    assert len(tiles) == 4 and ground.double.stored_shas() == []
    assert ground.double.closed_sessions  # closed in the finally


def test_retry_after_seconds_and_http_date(ground, tmp_path):
    root = tmp_path / "flight"
    make_flight_store(root, "f1", 3)
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    ground.double.script_batches({"status": 503, "retry_after": "7"},
                                 {"status": 429, "retry_after": past},
                                 {"status": 503, "retry_after": soon},
                                 {"status": 503, "retry_after": "99999"})
    waits = Waits()
    s = _run(ground, root, waits, max_in_call_retries=4, backoff_cap_s=30.0)
    assert waits[0] == 7.0
    assert waits[1] == 0.0  # a date in the past means now
    assert 17.0 <= waits[2] <= 20.0  # the HTTP-date, seconds from now
    assert waits[3] == 30.0  # huge: capped
    assert s.accepted == 3


def test_partial_outcome_resends_only_the_missing_tiles(ground, tmp_path):
    root = tmp_path / "flight"
    make_flight_store(root, "f1", 8)
    ground.double.script_batches({"partial": 3}, {"omit_after": 2})
    waits = Waits()
    s = _run(ground, root, waits, max_in_call_retries=3, batch_tiles=8)
    assert s.accepted == 8 and s.duplicate == 0 and len(waits) == 2
    assert len(ground.double.stored_shas()) == 8
    assert s.requests == 1 + 3  # session + three batch posts (8, then 5, then 3 tiles)


def test_partial_outcomes_spend_the_budget(ground, tmp_path):
    root = tmp_path / "flight"
    make_flight_store(root, "f1", 4)
    ground.double.script_batches({"partial": 1}, {"partial": 1}, {"partial": 1})
    with pytest.raises(RetryBudgetSpentError):
        _run(ground, root, max_in_call_retries=2, batch_tiles=4)
    st = _statuses(root)
    assert sorted(v[0] for v in st.values()).count(VotingStatus.UPLOADED) == 3


@pytest.mark.parametrize("drop", ["before", "after_store"])
def test_connection_dropped_mid_body_is_retried(ground, tmp_path, drop):
    root = tmp_path / "flight"
    make_flight_store(root, "f1", 5)
    ground.double.script_batches({"drop": drop})
    waits = Waits()
    s = _run(ground, root, waits, batch_tiles=5)
    assert len(waits) == 1
    stored = ground.double.stored_shas()
    assert len(stored) == len(set(stored)) == 5
    if drop == "after_store":  # stored, answer lost: the resend is all duplicates
        assert (s.accepted, s.duplicate) == (0, 5)
    else:
        assert (s.accepted, s.duplicate) == (5, 0)


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_fail_fast(ground, tmp_path, status):
    root = tmp_path / "flight"
    make_flight_store(root, "f1", 3)
    ground.double.script_batches({"status": status}, {"status": status})
    waits = Waits()
    with pytest.raises(UploadRefusedError, match=str(status)):
        _run(ground, root, waits)
    assert waits == [] and ground.double.requests == ["session", "batch"]


def test_revoked_device_fails_fast_at_session_start(ground, tmp_path):
    root = tmp_path / "flight"
    make_flight_store(root, "f1", 2)
    ground.double.revoked.update(ground.double.devices)
    waits = Waits()
    with pytest.raises(UploadRefusedError, match="403"):
        _run(ground, root, waits)
    assert waits == [] and ground.double.requests == ["session"]


def test_wrong_server_certificate_fails_fast(ground, tmp_path):
    root = tmp_path / "flight"
    make_flight_store(root, "f1", 2)
    other = make_test_pki(tmp_path / "other-pki")  # a server whose CA we do not trust
    waits = Waits()
    with serve_in_thread(ground.double.app, tls_cert=other.server_cert,
                         tls_key=other.server_key) as url:
        ground.url = url
        with pytest.raises(UploadRefusedError, match="TLS"):
            _run(ground, root, waits)
    assert waits == [] and ground.double.requests == []


def test_rejections_count_per_tile_then_give_up_forward_only(ground, tmp_path, caplog):
    root = tmp_path / "flight"
    tiles = make_flight_store(root, "f1", 4)
    with open_flight_store(root) as store:
        bad = store.get_record(tiles[1])
    ground.double.reject_sha[bad.sha256] = "scripted: looks like a poisoning attempt"
    records = []
    caplog.set_level(logging.WARNING)
    for run in (1, 2, 3):
        s = _run(ground, root, records=records, max_per_tile_attempts=3)
        assert s.rejected == 1
        st = _statuses(root)
        expected = VotingStatus.UPLOAD_GIVEUP if run == 3 else VotingStatus.PENDING
        assert st[tiles[1]] == (expected, run)
    assert s.given_up == 1
    giveups = [d for t, d in records if t == "upload/giveup"]
    assert len(giveups) == 1 and giveups[0]["attempts"] == 3
    assert any(r.levelno == logging.ERROR and "given up" in r.message for r in caplog.records)
    # excluded from later uploads, and forward only
    s4 = _run(ground, root, records=records)
    assert s4.offered == 0
    with open_flight_store(root) as store:
        with pytest.raises(InvalidTileError, match="UPLOAD_GIVEUP is final"):
            store.set_upload_state(tiles[1], VotingStatus.PENDING, 0)
        assert store.count_upload_rejection(tiles[1], 3) is None
        assert store.get_record(tiles[1]).upload_attempts == 3


def test_session_start_5xx_uses_the_same_budget(ground, tmp_path):
    root = tmp_path / "flight"
    make_flight_store(root, "f1", 2)
    ground.double.script_sessions({"status": 503, "retry_after": "1"})
    waits = Waits()
    s = _run(ground, root, waits)
    assert waits == [1.0] and s.accepted == 2
