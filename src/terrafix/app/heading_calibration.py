"""Heading calibration of the visual odometry against absolute positions.

Why: odometry deltas are expressed in NED with the flight controller's heading, and a
magnetometer-based heading is off by a few degrees for minutes at a time (a slowly varying
bias, not noise). A 2.5° bias turns every delta by 2.5°, i.e. 4% of the distance flown ends
up sideways, and since each delta's covariance treats its errors as independent, the filter
cannot see it coming. What *can* see it: two absolute positions (satellite fixes accepted by
the estimator, or trusted GNSS) a few hundred metres apart, compared with the odometry's own
track between the same two instants. The angle between the two displacement vectors is the
odometry's heading error; a scalar Kalman filter (random walk in time, like the FC's heading
error) averages those angles, every new delta is turned back by the estimate, and what is
left of its uncertainty is added to the delta's covariance.

The calibration only ever uses positions the integrity layer has already vouched for, and the
odometry's raw (uncorrected) track, so it never feeds its own output back.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from terrafix.measurements import OdometryDelta


class HeadingCalibrationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    prior_sigma_deg: float = Field(3.0, gt=0)
    """Initial uncertainty of the odometry's heading (the FC heading's error)."""
    random_walk_deg_per_rts: float = Field(0.15, ge=0)
    """How fast the heading error may wander (2.5° over ~300 s ≈ 0.15°/√s)."""
    min_baseline_m: float = Field(150.0, gt=0)
    max_baseline_age_s: float = Field(120.0, gt=0)
    odometry_drift_frac: float = Field(0.005, ge=0)
    """1-sigma cross-track odometry error along a baseline other than heading (tilt wander),
    as a fraction of its length, added to each angle measurement."""
    max_angle_deg: float = Field(10.0, gt=0)
    """A measured angle beyond this is not a heading error (wrong fix, lost track): ignored."""
    drift_frac: float = Field(0.015, ge=0)
    """1-sigma along-track odometry error that is *not* independent from delta to delta
    (height/scale error, slow tilt wander), as a fraction of the distance since the last
    anchor; budgeted like the heading term (see `correct`)."""
    apply_min_sigma_ratio: float = Field(0.7, gt=0, le=1)
    """Deltas are corrected once the estimate's sigma is below this fraction of the prior."""


@dataclass(frozen=True, slots=True)
class _Ref:
    t_ns: int
    p_ne_m: np.ndarray
    var_m2: float
    segment: int
    p_vo_ne_m: np.ndarray


def _rot(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


class OdometryHeadingCalibration:
    """Feed raw deltas (`add_delta`), absolute references (`add_reference`); `correct` a delta
    before it goes to the estimator. `theta_rad` is the rotation from the odometry's heading to
    the true one; `sigma_rad` its uncertainty."""

    def __init__(self, config: HeadingCalibrationConfig | None = None) -> None:
        self.config = config or HeadingCalibrationConfig()
        c = self.config
        self.theta_rad = 0.0
        self.var_rad2 = math.radians(c.prior_sigma_deg) ** 2
        self._t_ns: int | None = None
        self._segment = 0
        self._p_vo = np.zeros(2)
        self._track: deque[tuple[int, np.ndarray]] = deque()
        self._refs: deque[_Ref] = deque()
        self.n_updates = 0
        self._since_anchor = np.zeros(2)

    @property
    def sigma_rad(self) -> float:
        return math.sqrt(self.var_rad2)

    def _predict(self, t_ns: int) -> None:
        if self._t_ns is not None and t_ns > self._t_ns:
            q = math.radians(self.config.random_walk_deg_per_rts) ** 2
            self.var_rad2 = min(self.var_rad2 + q * (t_ns - self._t_ns) * 1e-9,
                                math.radians(self.config.prior_sigma_deg) ** 2)
        if self._t_ns is None or t_ns > self._t_ns:
            self._t_ns = t_ns

    def add_delta(self, delta: OdometryDelta) -> None:
        """A raw (uncorrected) delta: extends the odometry track, or starts a new segment
        when tracking was lost (the track is only continuous within a segment)."""
        horizon = delta.t_ns - round(self.config.max_baseline_age_s * 1e9)
        if not delta.tracking:
            self._segment += 1
            self._track.clear()
            return
        if not self._track or self._track[-1][0] != delta.t_prev_ns:
            self._segment += 1
            self._track.clear()
            self._p_vo = np.zeros(2)
            self._track.append((delta.t_prev_ns, self._p_vo.copy()))
        self._p_vo = self._p_vo + delta.delta_ne_m
        self._track.append((delta.t_ns, self._p_vo.copy()))
        while len(self._track) > 2 and self._track[0][0] < horizon:
            self._track.popleft()

    def _vo_at(self, t_ns: int) -> np.ndarray | None:
        tr = self._track
        if len(tr) < 2 or t_ns < tr[0][0] or t_ns > tr[-1][0]:
            return None
        ts = np.fromiter((t for t, _ in tr), dtype=np.int64, count=len(tr))
        i = int(np.searchsorted(ts, t_ns))
        if ts[i] == t_ns:
            return tr[i][1].copy()
        (t0, p0), (t1, p1) = tr[i - 1], tr[i]
        a = (t_ns - t0) / (t1 - t0)
        return (1 - a) * p0 + a * p1

    def add_reference(self, t_ns: int, p_ne_m: np.ndarray, var_m2: float) -> bool:
        """An absolute horizontal position (NE metres, per-axis variance) at t_ns, within the
        current odometry track. Returns True when it updated the heading estimate."""
        c = self.config
        p_vo = self._vo_at(t_ns)
        if p_vo is None or not math.isfinite(var_m2):
            return False
        ref = _Ref(t_ns, np.asarray(p_ne_m, dtype=np.float64).copy(), float(var_m2),
                   self._segment, p_vo)
        horizon = t_ns - round(c.max_baseline_age_s * 1e9)
        while self._refs and (self._refs[0].t_ns < horizon
                              or self._refs[0].segment != self._segment):
            self._refs.popleft()
        base = next((r for r in self._refs
                     if np.linalg.norm(ref.p_ne_m - r.p_ne_m) >= c.min_baseline_m), None)
        self._refs.append(ref)
        if base is None:
            return False
        v_ref = ref.p_ne_m - base.p_ne_m
        v_vo = ref.p_vo_ne_m - base.p_vo_ne_m
        length = float(np.linalg.norm(v_ref))
        angle = math.atan2(v_vo[0] * v_ref[1] - v_vo[1] * v_ref[0],
                           float(v_vo @ v_ref))
        if abs(angle) > math.radians(c.max_angle_deg):
            return False
        r = (ref.var_m2 + base.var_m2) / length ** 2 + c.odometry_drift_frac ** 2
        self._predict(t_ns)
        k = self.var_rad2 / (self.var_rad2 + r)
        self.theta_rad += k * (angle - self.theta_rad)
        self.var_rad2 *= 1.0 - k
        self.n_updates += 1
        # consume the baseline: the next angle must use new information
        while self._refs and self._refs[0].t_ns <= base.t_ns:
            self._refs.popleft()
        return True

    def anchored(self) -> None:
        """The estimator's position was just fixed by an absolute measurement: the heading
        error's effect starts accumulating again from zero."""
        self._since_anchor = np.zeros(2)

    def correct(self, delta: OdometryDelta) -> OdometryDelta:
        """The delta turned by the estimated heading error (once the estimate is informative),
        with the heading's remaining uncertainty added across the track.

        A heading error is a bias: its effect is sigma_theta x the distance flown since the
        last absolute anchor, not a sum of independent per-delta errors; likewise the scale
        and tilt part (`drift_frac`) along the track. Each delta therefore carries the
        *increment* of that correlated variance, so the variance the estimator accumulates
        between anchors matches the bias's envelope instead of its square root.
        """
        if not delta.tracking:
            return delta
        self._predict(delta.t_ns)
        prior = math.radians(self.config.prior_sigma_deg)
        d = np.asarray(delta.delta_ne_m, dtype=np.float64)
        if self.config.enabled and self.sigma_rad < self.config.apply_min_sigma_ratio * prior:
            R = _rot(self.theta_rad)
            d = R @ d
            cov = R @ delta.cov_ne_m2 @ R.T
        else:
            cov = np.asarray(delta.cov_ne_m2, dtype=np.float64)
        before = self._since_anchor
        after = before + d
        grow = max(float(after @ after - before @ before), float(d @ d))
        n = float(np.linalg.norm(after))
        v = after / n if n > 0 else np.zeros(2)
        u = np.array([-v[1], v[0]])
        self._since_anchor = after
        cov = cov + grow * (self.var_rad2 * np.outer(u, u)
                            + self.config.drift_frac ** 2 * np.outer(v, v))
        return replace(delta, delta_ne_m=d, cov_ne_m2=0.5 * (cov + cov.T))
