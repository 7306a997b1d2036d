"""The vote on one z/x/y from its candidates (REQUIREMENTS U3).

Candidates of different flights are compared pairwise (compare.py; candidates of one flight
are never compared: a flight cannot vouch for itself). An agreeing group is a set of
candidates, at most one per flight, that all agree with each other. The tile is
- TRUSTED when a group spans >= min_flights flights of >= min_devices aircraft and holds at
  least one normal-trust candidate (pose sigma <= 3 m). Its newest candidate is what gets
  served. If two such groups disagree, the later one wins only when every candidate of it
  was captured after every candidate of the other (the ground changed); otherwise CONFLICT;
- CONFLICT when no group qualifies but candidates of different flights disagree (the
  evidence, every pair's offset and SSIM, is kept);
- PENDING otherwise (one flight only, or agreement among too few aircraft).
A single flight therefore never promotes a tile, and neither do several flights of one
aircraft while min_devices >= 2.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from terrafix.ground.config import VotingConfig
from terrafix.ground.records import CandidateRecord, VoteStatus
from terrafix.ground.voting.compare import PairEvidence, compare


@dataclass(frozen=True, slots=True)
class Decision:
    status: VoteStatus
    group: tuple[str, ...]  # sha256 of the agreeing candidates behind TRUSTED
    representative: CandidateRecord | None  # the candidate to serve (TRUSTED only)
    flights: int
    devices: int
    reason: str
    pairs: tuple[PairEvidence, ...] = field(default=())

    def evidence(self) -> dict[str, object]:
        return {"reason": self.reason, "group": list(self.group),
                "pairs": [p.to_dict() for p in self.pairs]}


def _span(group: Sequence[CandidateRecord]) -> tuple[int, int]:
    return len({c.flight_key for c in group}), len({c.device_fp for c in group})


def decide(cands: Sequence[CandidateRecord], images: dict[str, np.ndarray], m_per_px: float,
           cfg: VotingConfig) -> Decision:
    """The vote over `cands` (one z/x/y); images: sha256 -> (256, 256) uint8."""
    cands = [c for c in cands if c.sha256 in images]
    if not cands:
        return Decision(VoteStatus.PENDING, (), None, 0, 0, "no readable candidates")
    pairs: dict[tuple[str, str], PairEvidence] = {}
    for a, b in itertools.combinations(cands, 2):
        if a.flight_key == b.flight_key:
            continue
        ev = compare(a.sha256, images[a.sha256], b.sha256, images[b.sha256], m_per_px,
                     cfg.max_offset_m, cfg.min_ssim)
        pairs[(a.sha256, b.sha256)] = ev
        pairs[(b.sha256, a.sha256)] = ev
    evidence = tuple(pairs[(a.sha256, b.sha256)] for a, b in itertools.combinations(cands, 2)
                     if (a.sha256, b.sha256) in pairs)

    def agree(a: CandidateRecord, b: CandidateRecord) -> bool:
        ev = pairs.get((a.sha256, b.sha256))
        return ev is not None and ev.agree

    # Greedy maximal groups, one seeded at every candidate (a tile has a handful).
    groups: set[tuple[str, ...]] = set()
    by_sha = {c.sha256: c for c in cands}
    for seed in cands:
        group = [seed]
        others = sorted((c for c in cands if agree(seed, c)),
                        key=lambda c: -pairs[(seed.sha256, c.sha256)].ssim)
        for c in others:
            if c.flight_key not in {g.flight_key for g in group} and all(
                    agree(c, g) for g in group):
                group.append(c)
        groups.add(tuple(sorted(g.sha256 for g in group)))

    def qualifies(group: tuple[str, ...]) -> bool:
        members = [by_sha[s] for s in group]
        flights, devices = _span(members)
        return (flights >= cfg.min_flights and devices >= cfg.min_devices
                and any(m.trust == "normal" for m in members))

    qualifying = [g for g in groups if qualifies(g)]
    total_flights, total_devices = _span(cands)
    if not qualifying:
        disagreeing = [p for p in evidence if not p.agree]
        if disagreeing:
            return Decision(VoteStatus.CONFLICT, (), None, total_flights, total_devices,
                            f"{len(disagreeing)} cross-flight pairs disagree and no "
                            f"{cfg.min_flights} flights of {cfg.min_devices} aircraft agree",
                            evidence)
        best = max(groups, key=lambda g: _span([by_sha[s] for s in g]))
        f, d = _span([by_sha[s] for s in best])
        return Decision(VoteStatus.PENDING, (), None, total_flights, total_devices,
                        f"best agreement spans {f} flights of {d} aircraft, needs "
                        f"{cfg.min_flights} of {cfg.min_devices}", evidence)

    def rank(g: tuple[str, ...]) -> tuple[int, int, float]:
        members = [by_sha[s] for s in g]
        f, d = _span(members)
        return d, f, max(m.captured_utc_s for m in members)

    qualifying.sort(key=rank, reverse=True)
    best = qualifying[0]

    def captures(g: tuple[str, ...]) -> tuple[float, float]:
        ts = [by_sha[s].captured_utc_s for s in g]
        return min(ts), max(ts)

    def groups_agree(g1: tuple[str, ...], g2: tuple[str, ...]) -> bool:
        return any(agree(by_sha[a], by_sha[b]) for a in g1 for b in g2)

    for other in qualifying[1:]:
        if set(other) & set(best) or groups_agree(best, other):
            continue
        (b0, b1), (o0, o1) = captures(best), captures(other)
        if o0 > b1:  # the other group is wholly later: the ground changed, it wins
            best = other
        elif not b0 > o1:
            return Decision(VoteStatus.CONFLICT, (), None, total_flights, total_devices,
                            "two groups of independent flights agree internally but not "
                            "with each other, captured over the same period", evidence)
    members = [by_sha[s] for s in best]
    rep = max(members, key=lambda c: (c.captured_utc_s, -c.sigma_m))
    f, d = _span(members)
    return Decision(VoteStatus.TRUSTED, best, rep, f, d,
                    f"{f} flights of {d} aircraft agree", evidence)
