"""The vote on one z/x/y: independent flights that agree promote it; one flight, one
aircraft, a shifted or a content-swapped candidate never does."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from terrafix.geo.tiles import TileId
from terrafix.ground.config import VotingConfig
from terrafix.ground.records import CandidateRecord, VoteStatus
from terrafix.ground.voting.compare import compare
from terrafix.ground.voting.decide import decide

from .conftest import M_PER_PX_Z19, scene, view

TILE = TileId(19, 109024, 198222)
T0 = datetime(2026, 5, 1, 10, tzinfo=UTC).timestamp()


def cand(name: str, device: str, flight: str, t_s: float = T0) -> CandidateRecord:
    return CandidateRecord(name, TILE, f"s-{flight}", device, flight, t_s, 1.0, "normal",
                           1000, None, 0, t_s)


def run(cands_imgs: list[tuple[CandidateRecord, np.ndarray]], **cfg: int):
    images = {c.sha256: img for c, img in cands_imgs}
    return decide([c for c, _ in cands_imgs], images, M_PER_PX_Z19, VotingConfig(**cfg))


@pytest.fixture(scope="module")
def ground_img() -> np.ndarray:
    return scene(11)


def test_compare_measures_offset_and_structure(ground_img: np.ndarray) -> None:
    a = view(ground_img, (0.5, -0.4), seed=1)
    b = view(ground_img, (-0.6, 0.7), seed=2, gain=1.15)
    ev = compare("a", a, "b", b, M_PER_PX_Z19, 2.0, 0.8)
    assert ev.agree and abs(ev.offset_m - np.hypot(1.1, 1.1)) < 0.3 and ev.ssim > 0.9
    shifted = view(ground_img, (5.0, 0.0), seed=3)
    ev = compare("a", view(ground_img, seed=1), "c", shifted, M_PER_PX_Z19, 2.0, 0.8)
    assert not ev.agree and abs(ev.offset_m - 5.0) < 0.3
    swapped = view(scene(99), seed=4)
    ev = compare("a", a, "d", swapped, M_PER_PX_Z19, 2.0, 0.8)
    assert not ev.agree and ev.ssim < 0.8


def test_two_flights_of_two_aircraft_that_agree_promote(ground_img: np.ndarray) -> None:
    d = run([(cand("a", "dev1", "f1"), view(ground_img, (0.8, 0.2), 1)),
             (cand("b", "dev2", "f2", T0 + 3600), view(ground_img, (-0.5, -0.9), 2, 0.9))])
    assert d.status == VoteStatus.TRUSTED and set(d.group) == {"a", "b"}
    assert d.representative is not None and d.representative.sha256 == "b"  # the newest


def test_a_single_flight_never_promotes(ground_img: np.ndarray) -> None:
    imgs = [(cand(f"a{i}", "dev1", "f1"), view(ground_img, seed=i)) for i in range(4)]
    for min_devices in (1, 2):
        assert run(imgs, min_devices=min_devices).status == VoteStatus.PENDING


def test_two_flights_of_one_aircraft_need_min_devices_1(ground_img: np.ndarray) -> None:
    imgs = [(cand("a", "dev1", "f1"), view(ground_img, (0.3, 0.3), 1)),
            (cand("b", "dev1", "f2"), view(ground_img, (-0.3, 0.1), 2))]
    assert run(imgs).status == VoteStatus.PENDING
    assert run(imgs, min_devices=1).status == VoteStatus.TRUSTED


@pytest.mark.parametrize("shift_m", [5.0, 8.0, 20.0, 50.0])
def test_shifted_candidate_is_never_promoted(ground_img: np.ndarray, shift_m: float) -> None:
    honest = (cand("h", "dev1", "f1"), view(ground_img, (0.4, -0.3), 1))
    bad = (cand("p", "dev2", "f2"), view(ground_img, (shift_m * 0.6, shift_m * 0.8), 2))
    d = run([honest, bad])
    assert d.status == VoteStatus.CONFLICT and not d.group
    assert d.pairs and not d.pairs[0].agree
    # With a second honest aircraft the tile is promoted without the shifted one.
    d = run([honest, bad, (cand("h2", "dev3", "f3"), view(ground_img, (-0.5, 0.2), 3))])
    assert d.status == VoteStatus.TRUSTED and set(d.group) == {"h", "h2"}


def test_content_swap_is_never_promoted(ground_img: np.ndarray) -> None:
    d = run([(cand("h", "dev1", "f1"), view(ground_img, seed=1)),
             (cand("s", "dev2", "f2"), view(scene(12), seed=2))])
    assert d.status == VoteStatus.CONFLICT
    assert "disagree" in d.reason and d.pairs[0].ssim < 0.8


def test_one_aircraft_poisoning_twice_consistently_is_not_promoted(ground_img: np.ndarray
                                                                   ) -> None:
    """Two flights of one aircraft carry the same 10 m shift (they agree with each other);
    with min_devices 2 that is no independent agreement, and the honest flight disagrees."""
    d = run([(cand("p1", "evil", "f1"), view(ground_img, (10.0, 0.0), 1)),
             (cand("p2", "evil", "f2"), view(ground_img, (10.2, 0.1), 2)),
             (cand("h", "dev1", "f3"), view(ground_img, (0.2, 0.2), 3))])
    assert d.status == VoteStatus.CONFLICT and not d.group


def test_a_wholly_later_agreeing_group_wins_over_an_older_one(ground_img: np.ndarray) -> None:
    changed = scene(13)  # the ground changed (a new building, a harvest)
    later = T0 + 30 * 86400
    d = run([(cand("o1", "dev1", "f1"), view(ground_img, seed=1)),
             (cand("o2", "dev2", "f2"), view(ground_img, seed=2)),
             (cand("n1", "dev1", "f3", later), view(changed, seed=3)),
             (cand("n2", "dev3", "f4", later + 60), view(changed, seed=4))])
    assert d.status == VoteStatus.TRUSTED and set(d.group) == {"n1", "n2"}
    # Interleaved in time, two disagreeing groups are a conflict.
    d = run([(cand("o1", "dev1", "f1"), view(ground_img, seed=1)),
             (cand("o2", "dev2", "f2", later + 120), view(ground_img, seed=2)),
             (cand("n1", "dev3", "f3", later), view(changed, seed=3)),
             (cand("n2", "dev4", "f4", later + 60), view(changed, seed=4))])
    assert d.status == VoteStatus.CONFLICT


def test_low_trust_candidates_alone_do_not_promote(ground_img: np.ndarray) -> None:
    a = cand("a", "dev1", "f1")
    b = cand("b", "dev2", "f2")
    low = [CandidateRecord(c.sha256, c.tile, c.session_id, c.device_fp, c.flight_id,
                           c.captured_utc_s, 4.0, "low", 1000, None, 0, c.received_utc_s)
           for c in (a, b)]
    d = run([(low[0], view(ground_img, seed=1)), (low[1], view(ground_img, seed=2))])
    assert d.status == VoteStatus.PENDING


def test_evidence_is_serialisable(ground_img: np.ndarray) -> None:
    import json

    d = run([(cand("h", "dev1", "f1"), view(ground_img, seed=1)),
             (cand("p", "dev2", "f2"), view(ground_img, (12.0, 0.0), 2))])
    doc = json.loads(json.dumps(d.evidence()))
    assert doc["pairs"][0]["offset_m"] > 9 and doc["pairs"][0]["agree"] is False
