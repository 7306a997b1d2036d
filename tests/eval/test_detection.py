"""Attack detection, false closures and blackout latency (detection.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from terrafix.eval.detection import (
    Interval,
    attack_intervals,
    blackout_intervals,
    false_closures,
    gate_closures,
    score_attacks,
    score_blackouts,
)
from terrafix.eval.records import ResultTrack

S = 1_000_000_000


def _track(t_s: np.ndarray, trusted: np.ndarray, labels: np.ndarray | None = None,
           failsafe: np.ndarray | None = None) -> ResultTrack:
    n = len(t_s)
    return ResultTrack(
        t_ns=(np.asarray(t_s) * S).astype(np.int64), lat_deg=np.zeros(n), lon_deg=np.zeros(n),
        alt_m=np.zeros(n), v_ned_mps=np.zeros((n, 3)),
        cov_p_ned_m2=np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
        label=np.array(["visual_propagated"] * n) if labels is None else labels,
        anchor_age_s=np.zeros(n), gnss_trusted=np.asarray(trusted, dtype=bool),
        failsafe=np.zeros(n, bool) if failsafe is None else failsafe)


def test_attack_intervals_from_per_sample_labels():
    t = np.arange(10, dtype=np.int64) * (S // 5)
    lab = np.array(["none", "none", "jump", "jump", "none", "pulloff", "pulloff", "pulloff",
                    "jamming", "jamming"])
    iv = attack_intervals(t, lab)
    assert [(i.kind, i.start_ns, i.end_ns) for i in iv] == [
        ("jump", t[2], t[4]), ("pulloff", t[5], t[8]), ("jamming", t[8], t[9] + S // 5)]


def test_pulloff_detection_latency_and_gnss_offset_at_detection():
    # Pull-off at 1 m/s from t = 10 s; the gate closes at t = 22.3 s (ticks at 10 Hz).
    t = np.arange(0, 40, 0.1)
    trusted = t < 22.3 - 1e-9
    track = _track(t, trusted)
    g_t = (np.arange(0, 40, 0.2) * S).astype(np.int64)
    truth = np.column_stack((np.arange(len(g_t)) * 3.6, np.zeros(len(g_t))))
    drift = np.clip(g_t * 1e-9 - 10.0, 0, None)
    gnss = truth + np.column_stack((np.zeros(len(g_t)), drift))
    attacks = [Interval("pulloff", 10 * S, 40 * S)]
    (d,) = score_attacks(track, attacks, g_t, gnss, truth)
    assert d.detected and not d.already_closed
    assert d.latency_s == pytest.approx(12.3, abs=1e-6)
    assert d.offset_at_detection_m == pytest.approx(12.2, abs=1e-6)  # GNSS sample at 22.2 s


def test_attack_that_is_never_detected_reports_so():
    t = np.arange(0, 20, 0.1)
    track = _track(t, np.ones(len(t), bool))
    (d,) = score_attacks(track, [Interval("jump", 5 * S, 15 * S)],
                         np.array([0], np.int64), np.zeros((1, 2)), np.zeros((1, 2)))
    assert not d.detected and math.isnan(d.latency_s)


def test_gate_already_closed_at_attack_start_counts_as_immediate():
    t = np.arange(0, 20, 0.1)
    track = _track(t, t < 3.0)
    (d,) = score_attacks(track, [Interval("jump", 5 * S, 15 * S)],
                         np.array([0], np.int64), np.zeros((1, 2)), np.zeros((1, 2)))
    assert d.detected and d.already_closed and d.latency_s == 0.0


def test_false_closures_are_the_ones_outside_attacks():
    t = np.arange(0, 60, 0.5)
    trusted = ~(((t >= 10) & (t < 12)) | ((t >= 30) & (t < 45)))
    track = _track(t, trusted)
    assert gate_closures(track).tolist() == [10 * S, 30 * S]
    fc = false_closures(track, [Interval("jump", 29 * S, 40 * S)])
    assert fc.tolist() == [10 * S]


def test_blackout_label_latency_and_failsafe():
    t = np.arange(0, 60, 0.1)
    labels = np.where((t >= 20.3) & (t < 50), "dead_reckoned", "satellite_anchored")
    fs = (t >= 50.05) & (t < 55)
    track = _track(t, np.ones(len(t), bool), labels, fs)
    (b,) = score_blackouts(track, [Interval("blackout", 20 * S, 55 * S)])
    assert b.label_latency_s == pytest.approx(0.3, abs=1e-6)
    assert b.failsafe_after_s == pytest.approx(30.1, abs=1e-6)


def test_blackouts_read_from_meta_events_and_scenario():
    meta = {"events": [{"type": "visual_blackout", "kind": "black", "start_s": 5.0,
                        "end_s": 9.0}],
            "scenario": {"camera": {"blackouts": [{"start_s": 20.0, "end_s": 30.0}]}}}
    iv = blackout_intervals(meta)
    assert [(i.start_ns, i.end_ns) for i in iv] == [(5 * S, 9 * S), (20 * S, 30 * S)]
    assert blackout_intervals({}) == []
