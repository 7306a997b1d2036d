"""GNSS trust gate state machine (REQUIREMENTS N9) on synthetic innovations."""

from __future__ import annotations

import numpy as np
import pytest

from terrafix.estimation.config import IntegrityConfig
from terrafix.estimation.events import GnssTrustChanged, SpoofRejected
from terrafix.estimation.gnss_gate import GnssObservation, GnssTrustGate

S = np.eye(2) * 6.0  # P + R of a typical anchored estimate vs GNSS, m²
BIG = np.eye(2) * 1e5  # a dead-reckoned estimate, m²
PERIOD = 200_000_000  # 5 Hz


def obs(t_ns: int, y: np.ndarray, *, spoofing: bool = False, jamming: bool = False,
        usable: bool = True, p_ne: np.ndarray | None = None,
        cov: np.ndarray = S) -> GnssObservation:
    y = np.asarray(y, dtype=np.float64)
    return GnssObservation(t_ns=t_ns, spoofing=spoofing, jamming=jamming, usable=usable,
                           nis=float(y @ np.linalg.solve(cov, y)), innovation_ne_m=y,
                           innovation_cov=cov, p_ne_m=p_ne if p_ne is not None else y,
                           v_ne_mps=np.zeros(2), var_m2=5.0)


def test_spoof_flag_closes_and_every_flagged_sample_is_a_rejection() -> None:
    gate = GnssTrustGate(IntegrityConfig(), trusted=True)
    ev = gate.observe(obs(0, [0.5, 0.5], spoofing=True))
    assert [type(e) for e in ev] == [GnssTrustChanged, SpoofRejected]
    assert not gate.trusted and ev[0].reason == "FC spoofing flag"
    ev = gate.observe(obs(PERIOD, [0.5, 0.5], spoofing=True))
    assert [type(e) for e in ev] == [SpoofRejected] and ev[0].count == 2
    assert ev[0].MANDATORY


def test_jamming_flag_closes_without_a_spoof_rejection() -> None:
    gate = GnssTrustGate(IntegrityConfig(), trusted=True)
    ev = gate.observe(obs(0, [0.0, 0.0], jamming=True))
    assert [type(e) for e in ev] == [GnssTrustChanged] and not gate.trusted


def test_jump_closes_on_the_first_sample() -> None:
    gate = GnssTrustGate(IntegrityConfig(), trusted=True)
    for i in range(20):
        assert gate.observe(obs(i * PERIOD, [0.3, -0.2])) == []
    ev = gate.observe(obs(20 * PERIOD, [100.0, 0.0]))
    assert not gate.trusted and "jump" in ev[0].reason


@pytest.mark.parametrize("rate", [0.5, 1.0, 2.0])
def test_slow_pulloff_closes_before_the_single_sample_test_would(rate: float) -> None:
    """A creeping offset (m/s) on top of white GNSS noise is caught by the windowed test,
    well before 50 m."""
    rng = np.random.default_rng(int(rate * 10))
    gate = GnssTrustGate(IntegrityConfig(), trusted=True)
    closed_at = None
    for i in range(600):
        t = i * 0.2
        y = rng.multivariate_normal(np.zeros(2), S) + np.array([rate * t, 0.0])
        ev = gate.observe(obs(i * PERIOD, y))
        if ev:
            closed_at = t
            assert "drift" in ev[0].reason or "jump" in ev[0].reason
            break
    assert closed_at is not None and rate * closed_at < 20.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_consistent_white_innovations_never_close_the_gate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gate = GnssTrustGate(IntegrityConfig(), trusted=True)
    for i in range(3000):
        assert gate.observe(obs(i * PERIOD, rng.multivariate_normal(np.zeros(2), S))) == []


def _closed_gate() -> GnssTrustGate:
    gate = GnssTrustGate(IntegrityConfig(), trusted=True)
    gate.observe(obs(0, [0.0, 0.0], spoofing=True))
    assert not gate.trusted
    return gate


def test_reopens_only_after_10s_stable_and_an_agreeing_anchor() -> None:
    gate = _closed_gate()
    rng = np.random.default_rng(0)
    t = PERIOD
    # 9 s of good GNSS: an agreeing anchor is not enough yet
    while t < 9_200_000_000:
        gate.observe(obs(t, rng.normal(0, 1.0, 2)))
        t += PERIOD
    assert gate.on_anchor(t, np.zeros(2), np.eye(2) * 4.0) == []
    while t < 11_400_000_000:
        gate.observe(obs(t, rng.normal(0, 1.0, 2)))
        t += PERIOD
    # a disagreeing anchor (GNSS 40 m off the fix) keeps it closed and restarts the clock
    assert gate.on_anchor(t, np.array([40.0, 0.0]), np.eye(2) * 4.0) == []
    assert not gate.trusted
    gate.observe(obs(t, rng.normal(0, 1.0, 2)))
    assert gate.on_anchor(t + PERIOD, np.zeros(2), np.eye(2) * 4.0) == []
    while t < 22_000_000_000:
        gate.observe(obs(t, rng.normal(0, 1.0, 2)))
        t += PERIOD
    ev = gate.on_anchor(t, np.zeros(2), np.eye(2) * 4.0)
    assert [type(e) for e in ev] == [GnssTrustChanged] and ev[0].trusted and gate.trusted


def test_does_not_reopen_when_gnss_is_more_than_200m_from_the_estimate() -> None:
    """After a long dead-reckoning the estimate is uncertain (large S, the innovation test
    passes), but a GNSS 250 m away is still refused."""
    gate = _closed_gate()
    for i in range(1, 80):
        gate.observe(obs(i * PERIOD, np.array([250.0, 0.0]), p_ne=np.zeros(2), cov=BIG))
    assert gate.on_anchor(80 * PERIOD, np.zeros(2), np.eye(2) * 4.0) == []
    assert not gate.trusted
    gate2 = _closed_gate()
    for i in range(1, 80):
        gate2.observe(obs(i * PERIOD, np.array([150.0, 0.0]), p_ne=np.zeros(2), cov=BIG))
    assert gate2.on_anchor(80 * PERIOD, np.zeros(2), np.eye(2) * 4.0) != []


def test_a_step_in_gnss_restarts_the_stability_clock() -> None:
    gate = _closed_gate()
    t = PERIOD
    for _ in range(40):  # 8 s steady
        gate.observe(obs(t, np.zeros(2), cov=BIG))
        t += PERIOD
    for _ in range(21):  # a 35 m step, then 4 s steady: 12 s since closing, 4 s since it
        gate.observe(obs(t, np.array([0.0, 35.0]), p_ne=np.zeros(2), cov=BIG))
        t += PERIOD
    assert gate.on_anchor(t, np.zeros(2), np.eye(2) * 4.0) == []
    for _ in range(35):  # 7 s more: 11 s since the step
        gate.observe(obs(t, np.array([0.0, 35.0]), p_ne=np.zeros(2), cov=BIG))
        t += PERIOD
    assert gate.on_anchor(t, np.zeros(2), np.eye(2) * 4.0) != []
