"""A GNSS-free reference position, and the two tests of every GNSS sample against it (N9).

Why: the fused estimate cannot test the GNSS it has been fusing. Where satellite anchors
come, the innovation test against an anchored estimate is sharp; where they do not
(featureless ground, no map, a long blackout) the estimate *is* the GNSS, a slow pull-off
drags it along, and the innovation stays small (the defect in issue 15: 200 m off with a
5 m 95 % radius). This reference never sees the GNSS being tested:

    p_ref(t) = p_anchor + D(t) - D(t_anchor),   P_ref(t) = P_anchor + C(t) - C(t_anchor)

D(t) is the integral of the visual odometry's deltas (with the heading calibration's
correlated-error budget in their covariance, C(t) the summed covariance). The deltas' share
of the attitude's absolute tilt error is not white (`OdometryDelta.tilt_error_ne_m`): it is
summed as a matrix A(t), and the reference carries (A(t) - A(t_anchor)) (...)ᵀ, what one
shared roll/pitch error gives between the two instants (tens of metres after a steep turn
at 800 m, nothing on a straight leg). Between frames
and over short gaps (cloud, lost track) it runs on with the last odometry velocity plus the
change of the fused velocity since (the IMU's turn; a pull-off's constant velocity offset
cancels in the change), its uncertainty growing; after `max_gap_s` without odometry there
is no reference (a GNSS-only flight has none: nothing independent to test against).

The anchor is the newest of: an accepted satellite fix (a trusted anchor: taken at once),
or a GNSS sample that is at least `anchor_lag_s` old, was trusted then and since, and has
not been questioned by the sequential test since (its statistic below half the threshold).
So the reference is GNSS-free over the last `anchor_lag_s` at least: a pull-off that began
after the anchor shows in full, and the position test is as sharp as `anchor_lag_s` of
odometry allows, not as lenient as a whole flight of dead reckoning.

Tests on each GNSS sample:
- position: y = p_gnss - p_ref with S = P_ref + the receiver's variance, against
  chi²(2) at `position_gate_prob` (jumps, meaconing onsets, pull-offs younger than the lag);
- sequential: GNSS displacement minus odometry displacement per `cusum_interval_s`, in a
  CUSUM (sequential_test.py) whose allowance is the odometry's velocity-bias budget (slow
  pull-offs, older than the lag; meaconing in turns).

Before the test fires, what it has accumulated is already doubt: `doubt_cov()` is added to
the output covariance while GNSS is fused (N6: the covariance covers what the spoof may
have dragged). After an alarm, `fallback()` gives the reference from the newest anchor older
than the sequential test's last quiet time: untouched by the pull-off it detected, so the
integrity layer can put the fused estimate back onto it with an honest covariance.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import chi2

from terrafix.estimation.sequential_test import DisplacementCusum


class GnssReferenceConfig(BaseModel):
    """The `[estimation.gnss_reference]` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    anchor_lag_s: float = Field(30.0, gt=0)
    """GNSS samples become anchors of the reference once this old (and vouched for)."""
    anchor_every_s: float = Field(1.0, gt=0)
    max_gap_s: float = Field(30.0, gt=0)
    """Without odometry for longer than this the reference is unavailable."""
    gap_velocity_sigma_mps: float = Field(0.5, ge=0)
    """Uncertainty of the odometry velocity the reference runs on through a gap."""
    gap_velocity_window_s: float = Field(2.0, gt=0)
    """The odometry velocity a gap is bridged with is the median over this window."""
    gap_single_delta_sigma_mps: float = Field(5.0, ge=0)
    """Its extra uncertainty when the window holds one delta only."""
    gap_turn_frac: float = Field(0.15, ge=0)
    """Fraction of the fused velocity's change through a gap taken as its error (the IMU's
    turn rotated by the heading error, the accelerometer bias)."""
    position_gate_prob: float = Field(1.0 - 1e-6, gt=0.5, lt=1.0)
    cusum_interval_s: float = Field(1.0, gt=0)
    cusum_threshold_m: float = Field(12.0, gt=0)
    cusum_max_interval_s: float = Field(3.0, gt=0)
    """Two GNSS samples further apart than this (a jammed stretch) make no interval of the
    sequential test: its pair starts again."""
    cusum_max_odometry_age_s: float = Field(1.0, gt=0)
    """The sequential test steps only while the newest odometry delta is at most this old
    (3 fps frames plus their processing): its interval is then measured, not bridged."""
    cusum_allowance_sigmas: float = Field(1.0, ge=0)
    cusum_allowance_floor_mps: float = Field(0.1, ge=0)
    cusum_tilt_allowance_sigmas: float = Field(1.5, ge=0)
    """Sigmas of the odometry's shared-tilt error the sequential test lets through per
    interval (see sequential_test.DisplacementCusum). 1.5: a 1.5-sigma tilt (the 2-D
    error's 68th percentile) passes the synthetic high-and-banked flights without a false
    alarm; 1.0 did not (3 of 6), and on development seed 202 caught no pull-off sooner."""
    cusum_tilt_fit_noise_m: float | None = Field(1.0, gt=0)
    """1-sigma per-axis noise of one interval's excess (receiver position noise over an
    interval, odometry) for the sequential test's tilt fit (sequential_test.py); None: no
    fit, the allowance alone."""
    cusum_tilt_tau_s: float = Field(60.0, gt=0)
    """Correlation time of the FC's tilt error (as the heading calibration's
    `tilt_correlation_s`)."""
    cusum_bias_correlation_s: float = Field(10.0, gt=0)
    """How long the odometry's heading / scale biases are taken to stay the same in the tilt
    fit's noise (as the calibration's `velocity_correlation_s`)."""
    history_s: float = Field(300.0, gt=0)
    doubt_gain: float = Field(2.0, ge=0)
    """While GNSS is fused, the output's covariance carries (gain x the sequential statistic
    beyond a quarter of its threshold)² along the statistic's direction: what the GNSS may
    already have dragged the estimate by before the test fires (the statistic lags the drag
    by the allowance: for a 0.5 m/s pull-off it grows at about half its rate). 0: off."""


@dataclass(frozen=True, slots=True)
class ReferenceVerdict:
    """The reference's view of one GNSS sample.

    ready: a reference existed (else nothing was tested). failed: "" or what failed (goes
    into the gate's closing reason). nis / offset_m: position test; cusum_m: the sequential
    statistic after this sample.
    """

    ready: bool
    failed: str
    nis: float
    offset_m: float
    cusum_m: float


@dataclass(frozen=True, slots=True)
class _Node:
    t_ns: int
    D_ne_m: np.ndarray
    C_ne_m2: np.ndarray
    v_fused_ne_mps: np.ndarray
    A_ne_m: np.ndarray
    """(2, 2) summed tilt error of the deltas (columns: one-sigma roll, pitch error)."""


_NO_TILT = np.zeros((2, 2))


@dataclass(frozen=True, slots=True)
class _Anchor:
    t_ns: int
    p_ne_m: np.ndarray
    P_ne_m2: np.ndarray
    source: str


_NOT_READY = ReferenceVerdict(False, "", math.nan, math.nan, math.nan)


class GnssFreeReference:
    """See the module docstring. Feed corrected odometry deltas (`on_odometry`), accepted
    satellite fixes (`on_fix`), and test every GNSS sample (`test_gnss`); tell it when the
    gate closes (`on_gate_closed`)."""

    def __init__(self, config: GnssReferenceConfig | None = None) -> None:
        self.config = config or GnssReferenceConfig()
        c = self.config
        self._nodes: deque[_Node] = deque()
        self._anchors: deque[_Anchor] = deque()
        self._candidates: deque[_Anchor] = deque()
        self._t_last_candidate_ns = -(1 << 62)
        self._t_trusted_since_ns: int | None = None
        self._thr_pos = float(chi2.ppf(c.position_gate_prob, 2))
        self.cusum = DisplacementCusum(c.cusum_threshold_m, c.cusum_allowance_sigmas,
                                       c.cusum_allowance_floor_mps,
                                       c.cusum_tilt_allowance_sigmas,
                                       c.cusum_tilt_fit_noise_m, c.cusum_tilt_tau_s,
                                       c.cusum_bias_correlation_s)
        self._sigma_rel_v = 0.05
        self._sigma_heading = 0.05
        self._sigma_scale = 0.03
        self._v_odo_ne = np.zeros(2)
        self._v_odo_spread2 = 0.0
        self._recent_v: deque[tuple[int, np.ndarray]] = deque()
        """(t_ns, v (2,)) of the recent odometry deltas (gap_velocity_window_s)."""
        self._last_cusum: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
        """(t_ns, p_gnss, D, A) at the last CUSUM sample."""
        self.alarms = 0

    # ------------------------------------------------------------------ odometry
    def on_odometry(self, t_prev_ns: int, t_ns: int, delta_ne_m: np.ndarray,
                    cov_ne_m2: np.ndarray, sigma_heading_rad: float, sigma_scale: float,
                    v_fused_ne_mps: np.ndarray, tilt_error_ne_m: np.ndarray | None = None
                    ) -> None:
        """One corrected odometry delta (the estimator's input: heading/scale corrected,
        correlated-error budget in cov_ne_m2) and the odometry's heading and scale bias
        sigmas; v_fused_ne_mps: (2,) the fused velocity now (for gaps); tilt_error_ne_m:
        (2, 2) the delta's error per one-sigma shared attitude tilt error (None: none)."""
        if t_ns <= t_prev_ns:
            return
        if self._nodes and t_ns <= self._nodes[-1].t_ns:
            return
        v_f = np.asarray(v_fused_ne_mps, dtype=np.float64)[:2].copy()
        if not self._nodes:
            self._nodes.append(_Node(t_prev_ns, np.zeros(2), np.zeros((2, 2)), v_f, _NO_TILT))
        elif t_prev_ns > self._nodes[-1].t_ns:
            # a gap (lost track, cloud): bridge it as the reference ran through it
            D, C = self._extrapolate(t_prev_ns, v_f)
            if D is None:
                self._restart(t_prev_ns, v_f)
            else:
                self._nodes.append(_Node(t_prev_ns, D, C, v_f, self._nodes[-1].A_ne_m))
        last = self._nodes[-1]
        d = np.asarray(delta_ne_m, dtype=np.float64)
        dt = (t_ns - last.t_ns) * 1e-9
        tilt = _NO_TILT if tilt_error_ne_m is None else np.asarray(tilt_error_ne_m,
                                                                   dtype=np.float64)
        self._nodes.append(_Node(t_ns, last.D_ne_m + d,
                                 last.C_ne_m2 + np.asarray(cov_ne_m2, dtype=np.float64), v_f,
                                 last.A_ne_m + tilt))
        self._sigma_heading = float(sigma_heading_rad)
        self._sigma_scale = float(sigma_scale)
        self._sigma_rel_v = math.hypot(self._sigma_heading, self._sigma_scale)
        self._note_odometry_velocity(t_ns, d / max(dt, 1e-3))
        horizon = t_ns - round(self.config.history_s * 1e9)
        while len(self._nodes) > 2 and self._nodes[0].t_ns < horizon:
            self._nodes.popleft()
        while self._anchors and self._anchors[0].t_ns < self._nodes[0].t_ns:
            self._anchors.popleft()

    def _note_odometry_velocity(self, t_ns: int, v: np.ndarray) -> None:
        """The velocity a gap is bridged with: the median of the deltas of the last
        `gap_velocity_window_s` (per axis), and their spread as its extra uncertainty. One
        delta alone is not enough: a single bad one (measured in ArduPlane SITL: 6 m off,
        37 deg out, as the aircraft rolled into a turn and tracking was then lost) would
        otherwise carry the reference ~17 m/s wrong through the whole gap."""
        window = self._recent_v
        window.append((t_ns, np.asarray(v, dtype=np.float64).copy()))
        horizon = t_ns - round(self.config.gap_velocity_window_s * 1e9)
        while len(window) > 1 and window[0][0] < horizon:
            window.popleft()
        vs = np.array([x for _, x in window])
        self._v_odo_ne = np.median(vs, axis=0)
        if len(vs) >= 3:
            mad = np.median(np.abs(vs - self._v_odo_ne), axis=0) * 1.4826
            self._v_odo_spread2 = float(np.max(mad) ** 2)
        else:  # too few to tell an outlier: as uncertain as the last two disagree
            self._v_odo_spread2 = float(np.max(np.ptp(vs, axis=0)) ** 2) if len(vs) > 1 \
                else self.config.gap_single_delta_sigma_mps ** 2

    def _restart(self, t_ns: int, v_f: np.ndarray) -> None:
        """The odometry integral starts again (gap longer than max_gap_s): earlier anchors
        no longer connect to it."""
        self._nodes.clear()
        self._anchors.clear()
        self._candidates.clear()
        self._recent_v.clear()
        self._last_cusum = None
        self.cusum.reset(t_ns)
        self._nodes.append(_Node(t_ns, np.zeros(2), np.zeros((2, 2)), v_f, _NO_TILT))

    def _extrapolate(self, t_ns: int, v_fused_ne: np.ndarray
                     ) -> tuple[np.ndarray | None, np.ndarray]:
        """D and C at t_ns after the last odometry node (None when too far)."""
        last = self._nodes[-1]
        dt = (t_ns - last.t_ns) * 1e-9
        if dt <= 0:
            return last.D_ne_m, last.C_ne_m2
        if dt > self.config.max_gap_s:
            return None, last.C_ne_m2
        dv = np.asarray(v_fused_ne, dtype=np.float64)[:2] - last.v_fused_ne_mps
        v = self._v_odo_ne + 0.5 * dv
        c = self.config
        speed = float(np.hypot(*self._v_odo_ne))
        sv2 = c.gap_velocity_sigma_mps ** 2 + (speed * self._sigma_rel_v) ** 2 \
            + (c.gap_turn_frac * float(np.hypot(*dv))) ** 2 + self._v_odo_spread2
        return last.D_ne_m + v * dt, last.C_ne_m2 + np.eye(2) * sv2 * dt * dt

    def _A_at(self, t_ns: int) -> np.ndarray:
        """(2, 2) summed tilt error at t_ns (held through gaps: the bridge does not use the
        attitude; interpolated between nodes)."""
        nodes = self._nodes
        if not nodes or t_ns <= nodes[0].t_ns:
            return nodes[0].A_ne_m if nodes else _NO_TILT
        if t_ns >= nodes[-1].t_ns:
            return nodes[-1].A_ne_m
        i = self._node_index(t_ns)
        a, b = nodes[i], nodes[i + 1]
        w = (t_ns - a.t_ns) / max(b.t_ns - a.t_ns, 1)
        return (1 - w) * a.A_ne_m + w * b.A_ne_m

    def _node_index(self, t_ns: int) -> int:
        """Index of the last node at or before t_ns (nodes[0].t_ns <= t_ns < nodes[-1])."""
        nodes = self._nodes
        lo, hi = 0, len(nodes) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if nodes[mid].t_ns <= t_ns:
                lo = mid
            else:
                hi = mid
        return lo

    def _D_at(self, t_ns: int, v_fused_ne: np.ndarray
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
        nodes = self._nodes
        if not nodes or t_ns < nodes[0].t_ns:
            return None, None
        if t_ns >= nodes[-1].t_ns:
            return self._extrapolate(t_ns, v_fused_ne)
        lo = self._node_index(t_ns)
        a, b = nodes[lo], nodes[lo + 1]
        w = (t_ns - a.t_ns) / max(b.t_ns - a.t_ns, 1)
        return (1 - w) * a.D_ne_m + w * b.D_ne_m, (1 - w) * a.C_ne_m2 + w * b.C_ne_m2

    # ------------------------------------------------------------------ anchors
    def on_fix(self, t_ns: int, p_ne_m: np.ndarray, cov_ne_m2: np.ndarray) -> None:
        """An accepted satellite fix: a trusted anchor, taken at once."""
        self._add_anchor(_Anchor(t_ns, np.asarray(p_ne_m, dtype=np.float64)[:2].copy(),
                                 np.asarray(cov_ne_m2, dtype=np.float64).copy(), "fix"))

    def _add_anchor(self, a: _Anchor) -> None:
        if not self._nodes or a.t_ns < self._nodes[0].t_ns:
            return
        if self._anchors and a.t_ns <= self._anchors[-1].t_ns:
            return
        self._anchors.append(a)

    def on_gate_closed(self, t_ns: int) -> None:
        """The gate closed: GNSS samples not yet anchors are no longer vouched for."""
        self._candidates.clear()
        self._t_trusted_since_ns = None
        self._last_cusum = None
        self.cusum.reset(t_ns)

    def _promote_candidates(self, t_ns: int) -> None:
        lag = round(self.config.anchor_lag_s * 1e9)
        quiet = self.cusum.statistic_m < 0.5 * self.cusum.threshold_m
        while self._candidates and self._candidates[0].t_ns <= t_ns - lag:
            a = self._candidates.popleft()
            if quiet and self._t_trusted_since_ns is not None \
                    and a.t_ns >= self._t_trusted_since_ns:
                self._add_anchor(a)

    def reference_at(self, t_ns: int, v_fused_ne: np.ndarray,
                     before_ns: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(p (2,), P (2, 2)) of the reference at t_ns, from the newest anchor (at or before
        before_ns if given); None when there is none."""
        D, C = self._D_at(t_ns, v_fused_ne)
        if D is None or C is None:
            return None
        for a in reversed(self._anchors):
            if before_ns is not None and a.t_ns > before_ns:
                continue
            Da, Ca = self._D_at(a.t_ns, v_fused_ne)
            if Da is None or Ca is None:
                return None
            dA = self._A_at(t_ns) - self._A_at(a.t_ns)
            return a.p_ne_m + D - Da, a.P_ne_m2 + (C - Ca) + dA @ dA.T
        return None

    def velocity(self, t_ns: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(v (2,), cov (2, 2)) of the ground velocity the odometry measured over its last
        2 s (None without recent odometry)."""
        nodes = self._nodes
        if len(nodes) < 2 or (t_ns - nodes[-1].t_ns) * 1e-9 > 2.0:
            return None
        last = nodes[-1]
        first = next((n for n in reversed(nodes) if last.t_ns - n.t_ns >= 2_000_000_000),
                     nodes[0])
        dt = (last.t_ns - first.t_ns) * 1e-9
        if dt < 0.5:
            return None
        v = (last.D_ne_m - first.D_ne_m) / dt
        speed = float(np.hypot(*v))
        var = self.config.gap_velocity_sigma_mps ** 2 + (speed * self._sigma_rel_v) ** 2
        return v, np.eye(2) * var + (last.C_ne_m2 - first.C_ne_m2) / (dt * dt)

    def fallback(self, t_ns: int, v_fused_ne: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray] | None:
        """The reference from the newest anchor older than the sequential test's last
        quiet time (untouched by what it detected)."""
        q = self.cusum.quiet_since_ns
        return self.reference_at(t_ns, v_fused_ne, before_ns=q)

    def drag_cover_cov(self) -> np.ndarray:
        """(2, 2) isotropic covariance whose 95 % circle covers what GNSS fused until an
        alarm may have dragged an estimate without the sequential test firing: its threshold
        plus what it had accumulated (|S|)."""
        radius_m = self.cusum.threshold_m + float(np.hypot(*self.cusum.S_ne_m))
        return np.eye(2) * (radius_m * radius_m / float(chi2.ppf(0.95, 2)))

    def drag_velocity_cov(self, t_ns: int) -> np.ndarray:
        """(2, 2) isotropic covariance whose 95 % circle covers the velocity offset GNSS fused
        until an alarm may have carried: a rate below the sequential test's allowance never
        accumulates, and what did accumulate (|S|) built up since its last quiet time."""
        c = self.cusum
        since_s = 0.0 if c.quiet_since_ns is None else max(0.0, (t_ns - c.quiet_since_ns) * 1e-9)
        rate = c.last_allowance_mps + c.statistic_m / max(since_s, 1.0)
        return np.eye(2) * (rate * rate / float(chi2.ppf(0.95, 2)))

    def doubt_cov(self) -> np.ndarray:
        """(2, 2) covariance to add to an estimate that fuses the GNSS (see doubt_gain)."""
        S = self.cusum.S_ne_m
        n = float(np.hypot(*S))
        excess = n - 0.25 * self.cusum.threshold_m
        if excess <= 0.0 or self.config.doubt_gain == 0.0:
            return np.zeros((2, 2))
        u = S / n
        return (self.config.doubt_gain * excess) ** 2 * np.outer(u, u)

    # ------------------------------------------------------------------ GNSS
    def test_gnss(self, t_ns: int, p_gnss_ne_m: np.ndarray, var_m2: float, trusted: bool,
                  v_fused_ne: np.ndarray) -> ReferenceVerdict:
        """Test one usable, unflagged GNSS sample (position (2,), per-axis variance), and
        keep it as a future anchor while the gate trusts the GNSS."""
        if not self.config.enabled:
            return _NOT_READY
        c = self.config
        p_g = np.asarray(p_gnss_ne_m, dtype=np.float64)[:2]
        if trusted:
            if self._t_trusted_since_ns is None:
                self._t_trusted_since_ns = t_ns
            if t_ns - self._t_last_candidate_ns >= round(c.anchor_every_s * 1e9):
                self._t_last_candidate_ns = t_ns
                self._candidates.append(_Anchor(t_ns, p_g.copy(), np.eye(2) * var_m2, "gnss"))
        else:
            self._t_trusted_since_ns = None
        self._promote_candidates(t_ns)
        ref = self.reference_at(t_ns, v_fused_ne)
        failed = ""
        nis = off = math.nan
        if ref is not None:
            p_r, P_r = ref
            y = p_g - p_r
            S = P_r + np.eye(2) * var_m2
            nis = float(y @ np.linalg.solve(S, y))
            off = float(np.hypot(*y))
            if nis > self._thr_pos:
                failed = f"reference position NIS {nis:.0f}, {off:.0f} m"
        D, _ = self._D_at(t_ns, v_fused_ne)
        covered = bool(self._nodes) and t_ns - self._nodes[-1].t_ns <= round(
            c.cusum_max_odometry_age_s * 1e9)
        if D is None or not covered:
            # the sequential test weighs GNSS motion against the odometry's; through a gap
            # D is the bridge's guess, whose error the test's allowance does not include
            # (ArduPlane SITL: a false alarm on clean GNSS 2 s into a gap in a turn). The
            # position test, with the bridge's growing covariance, still runs.
            self._last_cusum = None
        elif self._last_cusum is None:
            self._last_cusum = (t_ns, p_g.copy(), D.copy(), self._A_at(t_ns))
        elif (t_ns - self._last_cusum[0]) * 1e-9 > c.cusum_max_interval_s:
            # no GNSS for a while (jammed): the displacement over the gap holds whatever
            # the receiver did meanwhile (a spoof ending is a jump back), which the position
            # test judges; the sequential test starts its pair again
            self._last_cusum = (t_ns, p_g.copy(), D.copy(), self._A_at(t_ns))
        elif (t_ns - self._last_cusum[0]) * 1e-9 >= c.cusum_interval_s:
            t0, p0, D0, A0 = self._last_cusum
            dt = (t_ns - t0) * 1e-9
            excess = (p_g - p0) - (D - D0)
            A = self._A_at(t_ns)
            st = self.cusum.step(t_ns, dt, excess, D - D0, self._sigma_heading,
                                 self._sigma_scale, A - A0, learn=trusted)
            self._last_cusum = (t_ns, p_g.copy(), D.copy(), A)
            if st.alarm and not failed:
                failed = (f"reference sequential test {st.statistic_m:.0f} m > "
                          f"{self.cusum.threshold_m:.0f} m")
            if not trusted:
                self.cusum.clamp_below_threshold()
        if failed:
            self.alarms += 1
        ready = ref is not None or D is not None
        return ReferenceVerdict(ready, failed, nis, off, self.cusum.statistic_m)
