"""GNSS trust gate (REQUIREMENTS N9): GNSS is used only while trusted.

Closes on the FC's spoofing flag (or jamming flag: a jammed receiver is the classic prelude to
a spoofer taking over) or a failed innovation test against the estimate: a single-sample test
catches jumps at the first sample; a windowed test on the *mean* innovation of the last N
samples catches pull-offs that creep up below the single-sample threshold. GNSS errors are
slow (atmosphere, multipath: minutes of correlation), so the N innovations are not independent
and their NIS values must not be summed against chi²(2N) — that closed the gate on clean
flights whenever the receiver sat 2.5σ off for two seconds. The mean innovation is tested with
the mean S, i.e. assuming full correlation, against chi²(2).

The same tests run against the GNSS-free reference (gnss_reference.py: a position test and
a sequential test of the GNSS motion against the odometry's) are told in
`GnssObservation.reference_failed`; either failing closes the gate like the innovation test.

Reopens only when all three hold: ≥ 10 s of stable GNSS (3D fix, no flags, no step between
consecutive samples that the estimate did not also make, and the same innovation tests that
close the gate passing), a GNSS-vs-estimate distance ≤ 200 m, and agreement (a chi-square test
on the difference) with the next satellite anchor.

The gate is pure bookkeeping: it is told what the backend computed (the horizontal innovation
and its NIS) and returns events; the `IntegrityMonitor` decides what is fused.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from terrafix.estimation.config import IntegrityConfig
from terrafix.estimation.events import GnssTrustChanged, NavEvent, SpoofRejected


@dataclass(frozen=True, slots=True)
class GnssObservation:
    """What the gate needs from one GNSS sample.

    usable: 3D fix with finite position. innovation_ne_m: (2,) GNSS minus estimate, horizontal
    (None when not computed); innovation_cov: (2, 2) its covariance S; nis: its NIS (NaN when
    not computed).
    p_ne_m / v_ne_mps: (2,) the GNSS position and velocity in the local frame; var_m2: the
    variance used for one horizontal axis of it.
    """

    t_ns: int
    spoofing: bool
    jamming: bool
    usable: bool
    nis: float
    innovation_ne_m: np.ndarray | None
    innovation_cov: np.ndarray | None = None
    p_ne_m: np.ndarray | None = None
    v_ne_mps: np.ndarray | None = None
    var_m2: float = math.nan
    reference_failed: str = ""
    """What failed against the GNSS-free reference (gnss_reference.py), "" if nothing."""


_SPOOF_REASONS = ("FC spoofing flag", "innovation", "anchors contradict GNSS", "reference")


class GnssTrustGate:
    """State machine of GNSS trust; see the module docstring for the rules."""

    def __init__(self, config: IntegrityConfig, trusted: bool) -> None:
        self.config = config
        self.trusted = trusted
        self.close_reason = "" if trusted else "not trusted at start"
        self._thr_single = float(chi2.ppf(config.gnss_close_gate_prob, 2))
        self._thr_window = float(chi2.ppf(config.gnss_window_gate_prob, 2))
        self._thr_anchor = float(chi2.ppf(config.gnss_anchor_agreement_prob, 2))
        self._window: deque[tuple[np.ndarray, np.ndarray]] = deque(
            maxlen=config.gnss_window_samples)
        self._stable_since_ns: int | None = None
        self._last: GnssObservation | None = None
        self._awaiting_anchor = False
        self.rejections = 0

    # ------------------------------------------------------------------ helpers
    @property
    def spoof_closed(self) -> bool:
        return not self.trusted and self.close_reason.startswith(_SPOOF_REASONS)

    def _close(self, t_ns: int, reason: str) -> list[NavEvent]:
        self._window.clear()
        self._stable_since_ns = None
        self._awaiting_anchor = False
        if not self.trusted:
            return []
        self.trusted = False
        self.close_reason = reason
        return [GnssTrustChanged(t_ns, False, reason)]

    def _reject(self, obs: GnssObservation, reason: str) -> SpoofRejected:
        self.rejections += 1
        off = (float(np.hypot(*obs.innovation_ne_m)) if obs.innovation_ne_m is not None
               else math.nan)
        return SpoofRejected(obs.t_ns, reason, off, obs.nis, self.rejections)

    def close(self, t_ns: int, reason: str) -> list[NavEvent]:
        """Close from outside (e.g. consistent anchors contradict a GNSS-aided estimate)."""
        return self._close(t_ns, reason)

    # ------------------------------------------------------------------ per sample
    def observe(self, obs: GnssObservation) -> list[NavEvent]:
        """Account for one GNSS sample; returns the events it caused."""
        events: list[NavEvent] = []
        cfg = self.config
        last, self._last = self._last, obs
        if obs.spoofing:
            events += self._close(obs.t_ns, "FC spoofing flag")
            events.append(self._reject(obs, "FC spoofing flag"))
            return events
        if obs.jamming:
            events += self._close(obs.t_ns, "FC jamming flag")
            self._stable_since_ns = None
            return events
        if not obs.usable or obs.innovation_ne_m is None or not math.isfinite(obs.nis):
            self._stable_since_ns = None
            self._awaiting_anchor = False
            return events
        failed = self._innovation_test(obs)
        failed = f"innovation {failed}" if failed else obs.reference_failed
        if self.trusted:
            if failed:
                events += self._close(obs.t_ns, failed)
                events.append(self._reject(obs, " ".join(failed.split(" ")[:2])))
            return events
        # closed: a failed test is a spoof rejection (and makes the closure a spoof one, e.g.
        # after jamming); otherwise keep rejecting while closed for spoofing
        if failed:
            self.close_reason = failed
            events.append(self._reject(obs, " ".join(failed.split(" ")[:2])))
        elif self.spoof_closed:
            events.append(self._reject(obs, "gate closed"))
        stable_step = (not failed and last is not None and last.usable
                       and last.innovation_ne_m is not None
                       and (obs.t_ns - last.t_ns) * 1e-9 <= 1.0
                       and float(np.hypot(*(obs.innovation_ne_m - last.innovation_ne_m)))
                       <= cfg.gnss_stable_step_m)
        if not stable_step:
            self._stable_since_ns = obs.t_ns
        elif self._stable_since_ns is None:
            self._stable_since_ns = last.t_ns if last is not None else obs.t_ns
        stable_s = (obs.t_ns - self._stable_since_ns) * 1e-9
        jump = float(np.hypot(*obs.innovation_ne_m))
        self._awaiting_anchor = (stable_s >= cfg.gnss_reopen_stable_s
                                 and jump <= cfg.gnss_reopen_max_jump_m)
        return events

    def _innovation_test(self, obs: GnssObservation) -> str:
        """The closing test on one more sample: '' if it passes, else what failed.

        The same test runs while the gate is closed, as part of 'stable': against an anchored
        estimate it is far sharper than one fix-vs-GNSS comparison (a spoofer 10 m off is
        seen), and against a dead-reckoned one its covariance makes it lenient, which is
        where the 200 m jump limit and the anchor agreement take over.
        """
        if obs.nis > self._thr_single:
            self._window.clear()
            return f"jump NIS {obs.nis:.0f}"
        S = obs.innovation_cov
        if S is None or not np.all(np.isfinite(S)):
            return ""
        self._window.append((np.asarray(obs.innovation_ne_m, dtype=np.float64), S))
        if len(self._window) < (self._window.maxlen or 0):
            return ""
        y_mean = np.mean([y for y, _ in self._window], axis=0)
        S_mean = np.mean([c for _, c in self._window], axis=0)
        nis_w = float(y_mean @ np.linalg.solve(S_mean, y_mean))
        if nis_w > self._thr_window:
            self._window.clear()
            return f"drift NIS {nis_w:.0f} over {self.config.gnss_window_samples} samples"
        return ""

    def on_anchor(self, t_ns: int, p_fix_ne_m: np.ndarray, cov_fix_ne_m2: np.ndarray,
                  ) -> list[NavEvent]:
        """An accepted satellite anchor: reopen if GNSS has been waiting for one and agrees."""
        if self.trusted or not self._awaiting_anchor or self._last is None:
            return []
        g = self._last
        dt = (t_ns - g.t_ns) * 1e-9
        if g.p_ne_m is None or g.v_ne_mps is None or abs(dt) > 1.0:
            return []
        p_g = g.p_ne_m + g.v_ne_mps * dt
        d = p_g - np.asarray(p_fix_ne_m, dtype=np.float64)
        S = np.asarray(cov_fix_ne_m2, dtype=np.float64) + np.eye(2) * g.var_m2
        nis = float(d @ np.linalg.solve(S, d))
        if not math.isfinite(nis) or nis > self._thr_anchor:
            self._stable_since_ns = None
            self._awaiting_anchor = False
            return []
        self.trusted = True
        self.close_reason = ""
        self._window.clear()
        self._awaiting_anchor = False
        jump = float(np.hypot(*g.innovation_ne_m)) if g.innovation_ne_m is not None else 0.0
        return [GnssTrustChanged(t_ns, True, f"stable, jump {jump:.0f}m, anchor NIS {nis:.1f}")]
