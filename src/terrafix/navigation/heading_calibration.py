"""Heading and scale calibration of the visual odometry against absolute positions.

Why: odometry deltas are expressed in NED with the odometry's own heading (`navigation.attitude`:
the FC's yaw at start-up, then the gyro and the images' measured heading changes). That
heading starts with the FC's error, a few degrees (magnetometer), and then drifts slowly. A
2.5° offset turns every delta by 2.5°, i.e. 4 % of the distance flown ends up sideways, and
since each delta's covariance treats its errors as independent, the filter cannot see it
coming. What *can* see it: two absolute positions (satellite fixes accepted by the
estimator, or trusted GNSS) a few hundred metres apart, compared with the odometry's own
track between the same two instants. The angle between the two displacement vectors is the
odometry's heading error; a scalar Kalman filter averages those angles, every new delta is
turned back by the estimate, and what is left of its uncertainty is added to the delta's
covariance. Between references the estimate's variance grows by what the heading source
reports it has gained (`add_heading_noise`) plus a small random walk for what it does not
model.

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
    scale_prior_sigma: float = Field(0.03, gt=0)
    """Initial uncertainty of the odometry's scale (height above ground error / height: a
    few metres at 200 m)."""
    scale_random_walk_per_rts: float = Field(0.0005, ge=0)
    prior_sigma_deg: float = Field(3.0, gt=0)
    """Initial uncertainty of the odometry's heading (the FC heading's error)."""
    random_walk_deg_per_rts: float = Field(0.02, ge=0)
    """How fast the heading error may wander beyond what the heading source reports
    (`add_heading_noise`): unmodelled effects (terrain relief and lens residuals in the
    images' rotation, gyro g-sensitivity); 0.35° over 5 minutes."""
    min_baseline_m: float = Field(150.0, gt=0)
    max_baseline_age_s: float = Field(120.0, gt=0)
    odometry_drift_frac: float = Field(0.005, ge=0)
    """1-sigma cross-track odometry error along a baseline other than heading (tilt wander),
    as a fraction of its length, added to each angle measurement."""
    max_angle_deg: float = Field(10.0, gt=0)
    """A measured angle beyond this is not a heading error (wrong fix, lost track): ignored."""
    drift_frac: float = Field(0.0025, ge=0)
    """1-sigma odometry error that is *not* independent from delta to delta and not the
    heading or scale bias (which have their own estimates): slow tilt wander, terrain
    relief; a fraction of the distance flown (see `correct`). 0.01 when the odometry
    followed the FC's heading; with its own heading and the biases' own budget, the
    development flight (demo seed 101) came out pessimistic with 0.005 (99.8 % of errors
    inside the 95 % ellipse) and 98.9 %, NEES 2.26, with 0.0025."""
    drift_match_m: float = Field(200.0, gt=0)
    """The correlated errors are budgeted as a random walk whose spread equals a bias's at
    this distance; the heading and scale biases' budget grows further, as a bias's does,
    once the distance flown since the last absolute reference exceeds half of it."""
    velocity_window_s: float = Field(2.0, gt=0)
    """GNSS Doppler displacement windows (`add_velocity_reference`) this long."""
    gnss_velocity_sigma_mps: float = Field(0.2, ge=0)
    """1-sigma per-axis error of a receiver velocity sample (u-blox class: 0.05-0.3 m/s
    reported speed accuracy); white from sample to sample."""
    velocity_correlation_s: float = Field(10.0, gt=0)
    """A window's errors not in its own budget (the attitude's tilt wandering, the wind's
    gusts under the height error) are correlated over about this long: each window counts
    as window / this of an independent measurement, so that closely spaced windows do not
    add up to more certainty than the errors they share allow."""
    tilt_correlation_s: float = Field(60.0, gt=0)
    """The attitude's absolute tilt error (`OdometryConfig.attitude_abs_sigma_rad`) is
    estimated alongside heading and scale as a Gauss-Markov process with this correlation
    time: the FC's own (the simulated FC's roll/pitch error is Gauss-Markov 60 s, and the
    odometry attitude carries it: development flight dead-reckoning-mid seed 202, tilt error
    median 0.48 deg, changing by 0.34 deg over 10 s in the heading frame). Once the GNSS is
    no longer vouched for, what was learnt of the tilt then fades at the error's own pace,
    so the sequential test's tilt allowance stays narrow for the first tens of seconds of a
    pull-off. (60 s was worse than 10 s before the Doppler windows' noise was fixed:
    development seed 202 then closed on clean GNSS and dead-reckoning-mid ended 32 % inside,
    because a window in a roll-out pinned a wrong heading. With the fix, development seeds
    201-203: pull-offs caught 1-4 m sooner than with 10 s (medium seed 202 caught at all),
    no false closure, and dead-reckoning seed 202 100 % inside at all three heights.) The
    tilt states are the FC's roll / pitch error; what the odometry's attitude makes of it
    is in each delta's `tilt_error_ne_m` (`OdometryAttitude.tilt_axes_at`)."""
    estimate_tilt: bool = True
    """Estimate the tilt error from the references (observable in turns, where it moves the
    odometry); False: keep its prior and only budget it."""
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
    the true one, `sigma_rad` its uncertainty; `log_scale` the log of the true-to-odometry
    length ratio (a height-above-ground error scales every delta), `var_log_scale` its
    variance."""

    def __init__(self, config: HeadingCalibrationConfig | None = None) -> None:
        self.config = config or HeadingCalibrationConfig()
        c = self.config
        self._x = np.zeros(4)
        """[heading error (rad), log scale, roll tilt, pitch tilt (in sigmas of the
        odometry's attitude_abs_sigma_rad)]."""
        self._P = np.diag([math.radians(c.prior_sigma_deg) ** 2, c.scale_prior_sigma ** 2,
                           1.0, 1.0])
        self._t_ns: int | None = None
        self._segment = 0
        self._p_vo = np.zeros(2)
        self._track: deque[tuple[int, np.ndarray]] = deque()
        self._path_m = 0.0
        """Odometry path length flown so far (all segments)."""
        self._path_log: deque[tuple[int, float]] = deque()
        """(t_ns, path length at t_ns), for the path length at a late reference's time."""
        self._path_at_ref_m = 0.0
        self._tilt_ne_m = np.zeros((2, 2))
        """Summed shared-tilt error of the deltas so far (`OdometryDelta.tilt_error_ne_m`)."""
        self._tilt_log: deque[tuple[int, np.ndarray]] = deque()
        self._cov_ne_m2 = np.zeros((2, 2))
        """Summed covariance of the raw deltas so far, less their tilt share (a window's own
        noise)."""
        self._cov_log: deque[tuple[int, np.ndarray]] = deque()
        self.n_velocity_updates = 0
        self._tilt_at_ref_ne_m = np.zeros((2, 2))
        self._tilt_var_added_m2 = 0.0
        """Tilt variance already given to the deltas since the last absolute reference."""
        self._refs: deque[_Ref] = deque()
        self._last_used: _Ref | None = None
        """The end of the last baseline used (how much of the next one is new)."""
        self.n_updates = 0

    @property
    def theta_rad(self) -> float:
        return float(self._x[0])

    @theta_rad.setter
    def theta_rad(self, value: float) -> None:
        self._x[0] = float(value)

    @property
    def var_rad2(self) -> float:
        return float(self._P[0, 0])

    @var_rad2.setter
    def var_rad2(self, value: float) -> None:
        """Set the heading's variance (its correlations with the rest are dropped)."""
        self._P[0, :] = 0.0
        self._P[:, 0] = 0.0
        self._P[0, 0] = float(value)

    @property
    def log_scale(self) -> float:
        return float(self._x[1])

    @property
    def var_log_scale(self) -> float:
        return float(self._P[1, 1])

    @property
    def tilt_sigmas(self) -> np.ndarray:
        """(2,) estimated roll / pitch tilt error, in sigmas of the odometry's prior."""
        return self._x[2:4].copy()

    @property
    def tilt_cov(self) -> np.ndarray:
        """(2, 2) its covariance (identity: nothing learnt)."""
        return self._P[2:4, 2:4].copy()

    @property
    def sigma_rad(self) -> float:
        return math.sqrt(self.var_rad2)

    @property
    def heading_applied(self) -> bool:
        """Whether `correct` turns the deltas by the estimate (it is informative enough)."""
        c = self.config
        return c.enabled and self.sigma_rad < c.apply_min_sigma_ratio * math.radians(
            c.prior_sigma_deg)

    def _predict(self, t_ns: int) -> None:
        if self._t_ns is not None and t_ns > self._t_ns:
            c = self.config
            q = math.radians(c.random_walk_deg_per_rts) ** 2
            dt = (t_ns - self._t_ns) * 1e-9
            self._P[0, 0] += q * dt
            if self._P[1, 1] < c.scale_prior_sigma ** 2:
                self._P[1, 1] = min(self._P[1, 1] + c.scale_random_walk_per_rts ** 2 * dt,
                                    c.scale_prior_sigma ** 2)
            phi = math.exp(-dt / c.tilt_correlation_s)
            self._x[2:4] *= phi
            self._P[2:4, :] *= phi
            self._P[:, 2:4] *= phi
            self._P[2:4, 2:4] += np.eye(2) * (1.0 - phi * phi)
        if self._t_ns is None or t_ns > self._t_ns:
            self._t_ns = t_ns

    @property
    def worse_than_prior(self) -> bool:
        """The heading estimate's variance is now twice the prior's: the odometry's heading
        has drifted by as much as the FC's heading is off, and the caller should put it back
        on the FC's and `reset_heading`. (Twice, not once: right after a reset the variance
        *is* the prior's, and the FC's error is slow, so resetting again at once would only
        replace the heading by the same FC error.)"""
        return self.var_rad2 > 2.0 * math.radians(self.config.prior_sigma_deg) ** 2

    def add_heading_noise(self, var_rad2: float) -> None:
        """Variance (rad²) the odometry's heading has gained since the last call, as its
        source reports it (gyro over gaps, image noise on each frame pair)."""
        if not (var_rad2 >= 0.0 and math.isfinite(var_rad2)):
            raise ValueError(f"heading noise must be a finite variance >= 0 rad², got "
                             f"{var_rad2}")
        self._P[0, 0] += var_rad2

    def reset_heading(self) -> None:
        """The odometry's heading was put back on the FC's: the estimate starts again from
        the prior, and the odometry track (in the old heading) is not compared with new
        references."""
        self._x[0] = 0.0
        self._P[0, :] = 0.0
        self._P[:, 0] = 0.0
        self._P[0, 0] = math.radians(self.config.prior_sigma_deg) ** 2
        self._segment += 1
        self._track.clear()
        self._refs.clear()

    def add_delta(self, delta: OdometryDelta) -> None:
        """A raw (uncorrected) delta: extends the odometry track, or starts a new segment
        when tracking was lost (the track is only continuous within a segment)."""
        horizon = delta.t_ns - round(self.config.max_baseline_age_s * 1e9)
        if not delta.tracking:
            self._segment += 1
            self._track.clear()
            return
        self._path_m += float(np.linalg.norm(delta.delta_ne_m))
        self._path_log.append((delta.t_ns, self._path_m))
        while len(self._path_log) > 2 and self._path_log[0][0] < horizon:
            self._path_log.popleft()
        if delta.tilt_error_ne_m is not None:
            self._tilt_ne_m = self._tilt_ne_m + np.asarray(delta.tilt_error_ne_m,
                                                           dtype=np.float64)
        self._tilt_log.append((delta.t_ns, self._tilt_ne_m.copy()))
        while len(self._tilt_log) > 2 and self._tilt_log[0][0] < horizon:
            self._tilt_log.popleft()
        own = np.asarray(delta.cov_ne_m2, dtype=np.float64)
        if delta.tilt_error_ne_m is not None:
            # the delta's marginal share of the shared tilt (the odometry adds B Bᵀ): the
            # summed tilt is the model's (dA), not the windows' own noise
            B = np.asarray(delta.tilt_error_ne_m, dtype=np.float64)
            own = own - B @ B.T
        self._cov_ne_m2 = self._cov_ne_m2 + own
        self._cov_log.append((delta.t_ns, self._cov_ne_m2.copy()))
        while len(self._cov_log) > 2 and self._cov_log[0][0] < horizon:
            self._cov_log.popleft()
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

    def _path_at(self, t_ns: int) -> float:
        """Path length flown at t_ns (a fix arrives after the frames that followed it)."""
        log = self._path_log
        if not log or t_ns >= log[-1][0]:
            return self._path_m
        ts = np.fromiter((t for t, _ in log), dtype=np.float64, count=len(log))
        ss = np.fromiter((s for _, s in log), dtype=np.float64, count=len(log))
        return float(np.interp(float(t_ns), ts, ss))

    def _tilt_at(self, t_ns: int) -> np.ndarray:
        """(2, 2) summed tilt error at t_ns (nearest logged delta at or before it)."""
        return self._logged_at(self._tilt_log, t_ns, self._tilt_ne_m)

    @staticmethod
    def _logged_at(log: deque[tuple[int, np.ndarray]], t_ns: int, now: np.ndarray
                   ) -> np.ndarray:
        if not log or t_ns >= log[-1][0]:
            return now
        ts = np.fromiter((t for t, _ in log), dtype=np.int64, count=len(log))
        i = int(np.searchsorted(ts, t_ns, side="right")) - 1
        return log[max(i, 0)][1]

    def add_velocity_reference(self, t0_ns: int, t1_ns: int, d_gnss_ne_m: np.ndarray,
                               var_m2: float) -> bool:
        """The receiver's Doppler velocity integrated over [t0_ns, t1_ns] (NE metres, per-axis
        variance): compared with the odometry's own track over the same window, its
        direction measures the heading error and its length the scale, like a position
        baseline but free of the receiver's slowly wandering position error (metres, over
        a minute), so short windows in a circling climb-out already count. Returns True when
        it updated the estimate."""
        c = self.config
        p0, p1 = self._vo_at(t0_ns), self._vo_at(t1_ns)
        if p0 is None or p1 is None or not math.isfinite(var_m2):
            return False
        v_vo = p1 - p0
        v_ref = np.asarray(d_gnss_ne_m, dtype=np.float64)
        length = float(np.linalg.norm(v_ref))
        window_s = (t1_ns - t0_ns) * 1e-9
        if length < 10.0 or window_s <= 0:
            return False
        dC = self._logged_at(self._cov_log, t1_ns, self._cov_ne_m2) \
            - self._logged_at(self._cov_log, t0_ns, self._cov_ne_m2)
        dA = self._tilt_at(t1_ns) - self._tilt_at(t0_ns)
        # dC is the deltas' own noise without their tilt share (the model's dA states it).
        # Subtracting dA dAᵀ from the full summed covariance instead, as before, left a
        # direction with no noise at all in a roll-out (the summed tilt outgrew the deltas'
        # marginal shares): one 2 s window then took the heading sigma from 2.5 to 0.3 deg
        # on a 3 deg error (dev seed 202), and every later window was rejected.
        R = 0.5 * (dC + dC.T) + np.eye(2) * (var_m2 + (c.odometry_drift_frac * length) ** 2)
        R = (R + np.eye(2) * max(0.0, -float(np.linalg.eigvalsh(R)[0]))) \
            * max(1.0, c.velocity_correlation_s / window_s)
        if not self._fuse(t1_ns, v_vo, v_ref, dA, R):
            return False
        self.n_velocity_updates += 1
        return True

    def _fuse(self, t_ns: int, d_vo_ne_m: np.ndarray, d_ref_ne_m: np.ndarray,
              dA_ne_m: np.ndarray, R_ne_m2: np.ndarray) -> bool:
        """One comparison of the raw odometry displacement d_vo (2,) with a reference
        displacement d_ref (2,) over the same interval, (2, 2) noise R, dA (2, 2) the
        interval's summed tilt error per sigma: an EKF update of [heading, log scale, tilt]
        under d_ref = exp(s) Rot(theta) (d_vo - dA tilt). False when rejected (angle beyond
        max_angle_deg, or an innovation beyond chi²(2) at 1e-4)."""
        c = self.config
        angle = math.atan2(d_vo_ne_m[0] * d_ref_ne_m[1] - d_vo_ne_m[1] * d_ref_ne_m[0],
                           float(d_vo_ne_m @ d_ref_ne_m))
        if abs(angle) > math.radians(c.max_angle_deg):
            return False
        self._predict(t_ns)
        x, P = self._x, self._P
        f, Rot = math.exp(x[1]), _rot(x[0])
        true_vo = d_vo_ne_m - dA_ne_m @ x[2:4]
        h = f * (Rot @ true_vo)
        H = np.zeros((2, 4))
        H[:, 0] = [-h[1], h[0]]
        log_ratio = math.log(max(float(np.linalg.norm(d_ref_ne_m)), 1e-9)
                             / max(float(np.linalg.norm(d_vo_ne_m)), 1e-9))
        if abs(log_ratio) < 0.2:
            H[:, 1] = h
        R = np.asarray(R_ne_m2, dtype=np.float64)
        if c.estimate_tilt:
            H[:, 2:4] = -f * (Rot @ dA_ne_m)
        else:
            G = f * (Rot @ dA_ne_m)
            R = R + G @ P[2:4, 2:4] @ G.T
        y = d_ref_ne_m - h
        S = H @ P @ H.T + R
        if float(y @ np.linalg.solve(S, y)) > 18.42:  # chi²(2) at 1e-4
            return False
        K = np.linalg.solve(S, H @ P).T
        self._x = x + K @ y
        IKH = np.eye(4) - K @ H
        P = IKH @ P @ IKH.T + K @ R @ K.T
        self._P = 0.5 * (P + P.T)
        self.n_updates += 1
        return True

    def add_reference(self, t_ns: int, p_ne_m: np.ndarray, var_m2: float) -> bool:
        """An absolute horizontal position (NE metres, per-axis variance) at t_ns, within the
        current odometry track. Returns True when it updated the heading estimate."""
        c = self.config
        if math.isfinite(var_m2):
            path = self._path_at(t_ns)
            if path >= self._path_at_ref_m:
                self._path_at_ref_m = path
                self._tilt_at_ref_ne_m = self._tilt_at(t_ns)
                self._tilt_var_added_m2 = 0.0
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
        # the shared tilt's share of the odometry over the baseline (a steep turn flown high
        # moves it by metres; one tilt error is the same in both ends' ground shifts)
        dA = self._tilt_at(ref.t_ns) - self._tilt_at(base.t_ns)
        r = ref.var_m2 + base.var_m2 + (c.odometry_drift_frac * length) ** 2
        # Consecutive baselines overlap (they slide by one reference): they share most of
        # their odometry track, whose errors (height, tilt) are the same in both, and
        # counting each as new evidence made the estimate overconfident (eleven updates in
        # a climb-out gave a 0.3° sigma on a 1.4° error). Each counts for the share of its
        # length that is new, so a baseline's length of them weighs as one; the average
        # still smooths the references' own noise.
        last = self._last_used
        advance = length
        if last is not None and last.segment == ref.segment and last.t_ns < ref.t_ns:
            advance = min(length, float(np.linalg.norm(ref.p_ne_m - last.p_ne_m)))
        r *= length / max(advance, 1e-3)
        if not self._fuse(t_ns, v_vo, v_ref, dA, np.eye(2) * r):
            return False
        self._last_used = ref
        # the next angle needs a new start of baseline
        while self._refs and self._refs[0].t_ns <= base.t_ns:
            self._refs.popleft()
        return True

    def correct(self, delta: OdometryDelta) -> OdometryDelta:
        """The delta turned by the estimated heading error (once the estimate is informative),
        with the odometry's correlated errors added to its covariance.

        A heading error or a scale error is a bias: its effect grows with the distance flown,
        not with its square root as independent per-delta errors would. An estimator that
        takes the deltas as independent would average absolute fixes over far too long a
        stretch of odometry and claim a precision it does not have. Without a bias state in
        the estimator, each delta carries the variance of a random walk whose spread matches
        the bias's at `drift_match_m`: per delta of length d, (sigma_theta² across + scale
        uncertainty along + drift_frac² along and across) x drift_match_m x d. Far from the
        last absolute reference (GNSS jammed, no fix for kilometres) a random walk's spread
        (square root of the distance) falls behind the heading and scale biases' (the
        distance itself): their share then grows as (2 L + d) x d, L the distance flown since
        the reference, so that the summed variance is sigma² L², what a bias gives.
        """
        if not delta.tracking:
            return delta
        self._predict(delta.t_ns)
        tilt = delta.tilt_error_ne_m
        c = self.config
        d = np.asarray(delta.delta_ne_m, dtype=np.float64)
        cov = np.asarray(delta.cov_ne_m2, dtype=np.float64)
        L_tilt = self._tilt_chol()
        if tilt is not None:
            # the tilt error as estimated taken out, what is left of it in the covariance
            B = np.asarray(tilt, dtype=np.float64)
            if c.enabled and c.estimate_tilt:
                d = d - B @ self._x[2:4]
            tilt = B @ L_tilt
            cov = cov - B @ B.T + tilt @ tilt.T
        if self.heading_applied:
            R = _rot(self.theta_rad)
            d = R @ d
            cov = R @ cov @ R.T
            tilt = None if tilt is None else R @ tilt
        if c.enabled and math.sqrt(self.var_log_scale) < c.apply_min_sigma_ratio * \
                c.scale_prior_sigma:
            f = math.exp(self.log_scale)
            d = d * f
            cov = cov * f * f
            tilt = None if tilt is None else tilt * f
        length = float(np.linalg.norm(d))
        if length > 0:
            v = d / length
            u = np.array([-v[1], v[0]])
            since_ref_m = max(0.0, self._path_m - self._path_at_ref_m - length)
            k_bias = max(c.drift_match_m, 2.0 * since_ref_m + length) * length
            cov = cov + k_bias * (self.var_rad2 * np.outer(u, u)
                                  + self.var_log_scale * np.outer(v, v)) \
                + c.drift_match_m * length * c.drift_frac ** 2 * np.eye(2)
        cov = cov + np.eye(2) * self._tilt_envelope_m2(L_tilt)
        return replace(delta, delta_ne_m=d, cov_ne_m2=0.5 * (cov + cov.T),
                       tilt_error_ne_m=tilt)

    def _tilt_chol(self) -> np.ndarray:
        """(2, 2) lower Cholesky factor of the tilt estimate's covariance (in sigmas)."""
        Pt = self._P[2:4, 2:4]
        try:
            return np.linalg.cholesky(0.5 * (Pt + Pt.T) + np.eye(2) * 1e-12)
        except np.linalg.LinAlgError:
            return np.eye(2)

    def _tilt_envelope_m2(self, L_tilt: np.ndarray) -> float:
        """Variance to add to this delta for the shared tilt error since the last absolute
        reference. Summed along the track that error is (A_now - A_ref) x the tilt (A: the
        deltas' summed `tilt_error_ne_m`): it rises through a turn and falls back when the
        aircraft returns to the reference's attitude, which a filter fed independent deltas
        cannot represent. So the deltas carry the running maximum of its (isotropic)
        variance: never less than the offset the tilt has produced, never growing on
        straight legs."""
        dA = (self._tilt_ne_m - self._tilt_at_ref_ne_m) @ L_tilt
        target = float(np.linalg.norm(dA, 2)) ** 2
        add = max(0.0, target - self._tilt_var_added_m2)
        self._tilt_var_added_m2 += add
        return add
