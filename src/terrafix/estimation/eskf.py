"""Error-state Kalman filter backend (REQUIREMENTS N5 baseline).

IMU propagation at IMU rate (`propagation.py`), one updater per measurement type below, each
built from a pure model in `models.py` and passed through the same gated Joseph-form update.
Every update is Mahalanobis-gated and returns an `UpdateReport` with its NIS; a covariance
that stops being positive definite turns the filter LOST (it then refuses updates until it
is re-initialised) instead of producing numbers nobody should trust.

Frame times are marked with `mark_frame(t_ns)` when a frame is captured: the position at
that time is cloned into the state (see `state.py`), so a fix or an odometry delta for that
frame, arriving after the vision pipeline's latency, is fused at the right time exactly.
A measurement that matches no clone is moved along the velocity if it is at most
`max_extrapolation_s` from the state time (with the neglected acceleration added to its
noise) and rejected as stale otherwise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.stats import chi2

from terrafix.estimation.backend import heading_aiding
from terrafix.estimation.config import EstimatorConfig
from terrafix.estimation.correlated_errors import CorrelatedErrorScale
from terrafix.estimation.errors import EstimationError
from terrafix.estimation.models import (
    Innovation,
    acceleration_ned,
    baro_model,
    gnss_position_model,
    gnss_velocity_model,
    heading_model,
    odometry_model,
    position_model,
    time_shift,
    velocity_time_shift,
)
from terrafix.estimation.outputs import MeasurementKind, NavEstimate, SmoothedState, UpdateReport
from terrafix.estimation.propagation import ImuPropagator, PendingCovariance
from terrafix.estimation.state import (
    BA,
    BB,
    BG,
    CORE_DIM,
    TH,
    EskfState,
    P,
    V,
    add_clone,
    drop_oldest_clone,
    find_clone,
    inject_error,
    is_positive_definite,
    reset_covariance_after_injection,
    reset_horizontal_velocity,
)
from terrafix.estimation.warm_start import InitialState
from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import quat_to_R
from terrafix.measurements import (
    AbsoluteFix,
    AttitudeSample,
    BaroSample,
    GnssSample,
    ImuSample,
    OdometryDelta,
)


class GateTable:
    """Chi-square gate thresholds by (probability, dof), computed once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[float, int], float] = {}

    def __call__(self, prob: float, dof: int) -> float:
        key = (prob, dof)
        if key not in self._cache:
            self._cache[key] = float(chi2.ppf(prob, dof))
        return self._cache[key]


def initial_eskf_state(init: InitialState, config: EstimatorConfig) -> EskfState:
    """EskfState with the prior of `init`, zero biases and their configured sigmas."""
    cov = np.zeros((CORE_DIM, CORE_DIM))
    cov[P, P] = init.cov_p_ned_m2
    cov[V, V] = init.cov_v_ned_m2s2
    cov[TH, TH] = init.cov_att_body_rad2
    cov[BA, BA] = np.eye(3) * config.imu.accel_bias_sigma0_mps2**2
    cov[BG, BG] = np.eye(3) * config.imu.gyro_bias_sigma0_radps**2
    cov[BB, BB] = config.baro_bias_sigma0_m**2  # replaced by the first barometer sample
    q = np.asarray(init.q_body_to_ned, dtype=np.float64)
    q = q / np.linalg.norm(q)
    return EskfState(
        t_ns=init.t_ns,
        p_ned=np.asarray(init.p_ned_m, dtype=np.float64).copy(),
        v_ned=np.asarray(init.v_ned_mps, dtype=np.float64).copy(),
        q_body_to_ned=q,
        R_body_to_ned=quat_to_R(q),
        accel_bias_mps2=np.zeros(3),
        gyro_bias_radps=np.zeros(3),
        baro_bias_m=0.0,
        cov=cov,
    )


class Eskf:
    """The ESKF navigation backend. Drive it in time order:

    propagate(imu) for every IMU sample; mark_frame(t) when a frame is captured; then the
    update_* calls as measurements arrive (any time up to `max_clones` frames later for
    frame-based ones); estimate() whenever an output is due.
    """

    def __init__(self, config: EstimatorConfig, frame: LocalFrame, init: InitialState) -> None:
        self.config = config
        self._gnss_scale = CorrelatedErrorScale(config.gnss_error_correlation_s)
        self.frame = frame
        self._propagator = ImuPropagator(config)
        self._gates = GateTable()
        self._state = initial_eskf_state(init, config)
        self._pending = PendingCovariance()
        self._prev_imu: ImuSample | None = None
        self._baro_initialised = False
        self._last_heading_t_ns: int | None = None
        self._last_gyro = np.zeros(3)
        self._last_accel_body_mps2 = np.zeros(3)
        self.lost = False
        self.lost_reason = ""

    # ------------------------------------------------------------------ life cycle
    @property
    def t_ns(self) -> int:
        return self._state.t_ns

    @property
    def state(self) -> EskfState:
        """The filter state, its covariance brought up to the state time."""
        if self._pending.n:
            self._propagator.flush(self._state, self._pending)
        return self._state

    def reinitialise(self, init: InitialState) -> None:
        """Start again from a new prior (after LOST, or a warm start from the FC)."""
        self._state = initial_eskf_state(init, self.config)
        self._pending.reset()
        self._prev_imu = None
        self._baro_initialised = False
        self._last_heading_t_ns = None
        self.lost = False
        self.lost_reason = ""

    def _declare_lost(self, reason: str) -> None:
        if not self.lost:
            self.lost = True
            self.lost_reason = reason

    # ------------------------------------------------------------------ propagation
    def propagate(self, imu: ImuSample) -> None:
        """Integrate up to imu.t_ns with the mean of this and the previous sample."""
        if self._prev_imu is not None and imu.t_ns < self._prev_imu.t_ns:
            raise EstimationError(
                f"IMU sample at t={imu.t_ns} ns is older than the previous one "
                f"({self._prev_imu.t_ns} ns); expected samples in time order")
        prev = self._prev_imu
        self._prev_imu = imu
        self._last_gyro = imu.gyro_body_radps
        if imu.t_ns <= self._state.t_ns:
            return
        if prev is None:
            accel, gyro = imu.accel_body_mps2, imu.gyro_body_radps
        else:
            accel = 0.5 * (prev.accel_body_mps2 + imu.accel_body_mps2)
            gyro = 0.5 * (prev.gyro_body_radps + imu.gyro_body_radps)
        self._last_accel_body_mps2 = np.asarray(accel, dtype=np.float64)
        self._propagator.propagate(self._state, accel, gyro, imu.t_ns, self._pending)
        if self._pending.n >= self.config.covariance_every_n_imu:
            self._propagator.flush(self._state, self._pending)

    def mark_frame(self, t_ns: int) -> None:
        """Clone the position at a frame's capture time (call when the frame is captured)."""
        if find_clone(self.state, t_ns, self.config.time_match_ns) is not None:
            return
        add_clone(self.state, t_ns)
        while len(self.state.clone_t_ns) > self.config.max_clones:
            drop_oldest_clone(self.state)

    # ------------------------------------------------------------------ the gated update
    def _report(self, t_ns: int, kind: str, accepted: bool, nis: float, gate: float,
                y: np.ndarray, reason: str = "", S: np.ndarray | None = None) -> UpdateReport:
        y = np.asarray(y, dtype=np.float64).copy()
        m = y.shape[0]
        S = np.full((m, m), math.nan) if S is None else np.asarray(S, dtype=np.float64).copy()
        return UpdateReport(t_ns=t_ns, kind=kind, accepted=accepted, nis=nis, gate=gate,
                            innovation=y, innovation_cov=S, reason=reason)

    def _nis(self, inn: Innovation) -> tuple[float, tuple | None]:
        try:
            cf = cho_factor(inn.S)
        except (LinAlgError, ValueError):
            return math.nan, None
        return float(inn.y @ cho_solve(cf, inn.y)), cf

    def _apply(self, t_ns: int, kind: str, inn: Innovation, prob: float) -> UpdateReport:
        """Gate on NIS = yᵀS⁻¹y against chi²(prob, dof); fuse with the Joseph form."""
        gate = self._gates(prob, inn.y.shape[0])
        if self.lost:
            return self._report(t_ns, kind, False, math.nan, gate, inn.y, "lost")
        nis, cf = self._nis(inn)
        if cf is None:
            self._declare_lost(f"innovation covariance of {kind} not positive definite")
            return self._report(t_ns, kind, False, nis, gate, inn.y, "lost")
        if nis > gate:
            return self._report(t_ns, kind, False, nis, gate, inn.y,
                                f"gated: NIS {nis:.1f} > {gate:.1f}", inn.S)
        st = self.state
        PHt = st.cov @ inn.H.T
        K = cho_solve(cf, PHt.T).T
        dx = K @ inn.y
        IKH = -K @ inn.H
        IKH[np.diag_indices_from(IKH)] += 1.0
        cov = IKH @ st.cov @ IKH.T + K @ inn.R @ K.T
        inject_error(st, dx)
        cov = reset_covariance_after_injection(cov, dx[TH])
        st.cov = 0.5 * (cov + cov.T)
        if not is_positive_definite(st.cov):
            self._declare_lost(f"covariance not positive definite after {kind} update")
            return self._report(t_ns, kind, True, nis, gate, inn.y,
                                "fused, then covariance lost positive definiteness", inn.S)
        return self._report(t_ns, kind, True, nis, gate, inn.y, "", inn.S)

    def _locate(self, t_ns: int) -> tuple[int | None, float, str]:
        """(clone index or None, dt_back_s, reason-if-stale) for a measurement time."""
        k = find_clone(self.state, t_ns, self.config.time_match_ns)
        if k is not None:
            return k, 0.0, ""
        dt_back = (self.state.t_ns - t_ns) * 1e-9
        if abs(dt_back) * 1e9 <= self.config.time_match_ns:
            return None, 0.0, ""
        if abs(dt_back) > self.config.max_extrapolation_s:
            return None, dt_back, (f"stale: measurement {dt_back:+.3f} s from the state and "
                                   f"no clone at its time (max {self.config.max_extrapolation_s}"
                                   f" s)")
        return None, dt_back, ""

    def _stale(self, t_ns: int, kind: str, dof: int, reason: str) -> UpdateReport:
        return self._report(t_ns, kind, False, math.nan, math.nan, np.zeros(dof), reason)

    # ------------------------------------------------------------------ updaters
    def update_fix(self, fix: AbsoluteFix) -> UpdateReport:
        """Absolute fix from registration: NE position (and altitude when observed)."""
        kind = MeasurementKind.FIX
        cov_ne = np.asarray(fix.cov_ne_m2, dtype=np.float64)
        if cov_ne.shape != (2, 2) or not np.all(np.isfinite(cov_ne)):
            raise EstimationError(f"AbsoluteFix.cov_ne_m2 must be a finite (2, 2) matrix, "
                                  f"got {fix.cov_ne_m2!r}")
        k, dt_back, stale = self._locate(fix.t_ns)
        with_alt = math.isfinite(fix.alt_var_m2) and fix.alt_var_m2 > 0
        if stale:
            return self._stale(fix.t_ns, kind, 3 if with_alt else 2, stale)
        p_ref = self.state.p_ned if k is None else self.state.clone_p_ned[k]
        alt_for_ne = fix.alt_m if with_alt else self.frame.alt0_m - float(p_ref[2])
        z = np.asarray(self.frame.lla_to_ned(fix.lat_deg, fix.lon_deg, alt_for_ne))
        if with_alt:
            R = np.zeros((3, 3))
            R[:2, :2] = cov_ne
            R[2, 2] = fix.alt_var_m2
            inn = position_model(self.state, z, R, (0, 1, 2), clone=k)
        else:
            inn = position_model(self.state, z[:2], cov_ne, (0, 1), clone=k)
        inn = time_shift(self.state, inn, dt_back, self.config.extrapolation_accel_sigma_mps2)
        return self._apply(fix.t_ns, kind, inn, self.config.gates.fix)

    def update_odometry(self, delta: OdometryDelta) -> UpdateReport:
        """Visual-odometry NE displacement between the frames at t_prev_ns and t_ns."""
        kind = MeasurementKind.ODOMETRY
        if not delta.tracking:
            return self._stale(delta.t_ns, kind, 2, f"tracking lost: {delta.reason}")
        k_prev = find_clone(self.state, delta.t_prev_ns, self.config.time_match_ns)
        if k_prev is None:
            return self._stale(delta.t_ns, kind, 2,
                               f"no clone at the previous frame t={delta.t_prev_ns} ns "
                               f"(frame not marked, or older than {self.config.max_clones} "
                               f"frames)")
        k_curr, dt_back, stale = self._locate(delta.t_ns)
        if stale:
            return self._stale(delta.t_ns, kind, 2, stale)
        inn = odometry_model(self.state, k_prev, k_curr, delta.delta_ne_m, delta.cov_ne_m2)
        inn = time_shift(self.state, inn, dt_back, self.config.extrapolation_accel_sigma_mps2)
        return self._apply(delta.t_ns, kind, inn, self.config.gates.odometry)

    def update_baro(self, baro: BaroSample) -> UpdateReport:
        """Barometric altitude. The first sample sets the barometer offset, exactly:
        b = z - (alt0 - p_d), so δb = δp_d - n (the offset is only known relative to the
        altitude prior, which is honest: a barometer does not know where sea level is)."""
        kind = MeasurementKind.BARO
        var = self.config.baro_sigma_m**2
        st = self.state
        if not self._baro_initialised:
            if self.lost:
                return self._stale(baro.t_ns, kind, 1, "lost")
            st.baro_bias_m = baro.alt_m - (self.frame.alt0_m - float(st.p_ned[2]))
            row = st.cov[2, :].copy()
            row[BB] = st.cov[2, 2] + var
            st.cov[BB, :] = row
            st.cov[:, BB] = row
            self._baro_initialised = True
            return self._report(baro.t_ns, kind, True, 0.0, math.inf, np.zeros(1),
                                "first sample: barometer offset initialised")
        _, dt_back, stale = self._locate(baro.t_ns)
        if stale:
            return self._stale(baro.t_ns, kind, 1, stale)
        inn = baro_model(st, self.frame.alt0_m, baro.alt_m, var)
        inn = time_shift(st, inn, dt_back, self.config.extrapolation_accel_sigma_mps2)
        return self._apply(baro.t_ns, kind, inn, self.config.gates.baro)

    def gnss_innovation(self, gnss: GnssSample) -> tuple[Innovation, float] | str:
        """Horizontal GNSS position innovation (2 dof) and its NIS, or why there is none.

        This is the trust test's statistic, computed without changing the state.
        """
        if gnss.fix_type < 3:
            return f"no 3D fix (fix_type {gnss.fix_type})"
        _, dt_back, stale = self._locate(gnss.t_ns)
        if stale:
            return stale
        z = np.asarray(self.frame.lla_to_ned(gnss.lat_deg, gnss.lon_deg, gnss.alt_m))
        s_h = max(gnss.h_acc_m, self.config.gnss_min_sigma_m)
        inn = gnss_position_model(self.state, z[:2], np.eye(2) * s_h**2, np.zeros(3), (0, 1))
        inn = time_shift(self.state, inn, dt_back, self.config.extrapolation_accel_sigma_mps2)
        nis, _ = self._nis(inn)
        return inn, nis

    def update_gnss(self, gnss: GnssSample, fuse: bool) -> UpdateReport:
        """Test (fuse=False) or fuse (fuse=True) one GNSS solution.

        The report's NIS is always the horizontal-position NIS (2 dof), the statistic of the
        trust gate. Fusion stacks 3D position and velocity (6 dof) and is gated on that.
        Spoof-flagged samples are never fused, whatever the caller asks.
        """
        kind = MeasurementKind.GNSS
        gate2 = self._gates(self.config.gates.gnss, 2)
        if self.lost:
            return self._stale(gnss.t_ns, kind, 2, "lost")
        res = self.gnss_innovation(gnss)
        if isinstance(res, str):
            return self._stale(gnss.t_ns, kind, 2, res)
        inn_h, nis_h = res
        if not math.isfinite(nis_h):
            self._declare_lost("GNSS innovation covariance not positive definite")
            return self._report(gnss.t_ns, kind, False, nis_h, gate2, inn_h.y, "lost")
        passes = nis_h <= gate2
        reason = "" if passes else f"gated: NIS {nis_h:.1f} > {gate2:.1f}"
        if not fuse or not passes:
            return self._report(gnss.t_ns, kind, passes, nis_h, gate2, inn_h.y, reason, inn_h.S)
        if gnss.spoofing:
            return self._report(gnss.t_ns, kind, False, nis_h, gate2, inn_h.y,
                                "spoofing flag: never fused", inn_h.S)
        _, dt_back, _ = self._locate(gnss.t_ns)
        st = self.state
        z = np.asarray(self.frame.lla_to_ned(gnss.lat_deg, gnss.lon_deg, gnss.alt_m))
        s_h = max(gnss.h_acc_m, self.config.gnss_min_sigma_m)
        s_v = max(gnss.v_acc_m, self.config.gnss_min_sigma_m)
        k = self._gnss_scale.factor(gnss.t_ns)
        ip = gnss_position_model(st, z, np.diag([s_h**2, s_h**2, s_v**2]) * k, np.zeros(3))
        ip = time_shift(st, ip, dt_back, self.config.extrapolation_accel_sigma_mps2)
        iv = gnss_velocity_model(st, gnss.v_ned_mps,
                                 np.eye(3) * self.config.gnss_velocity_sigma_mps**2,
                                 self._last_gyro, np.zeros(3))
        a_ned = acceleration_ned(st.R_body_to_ned, self._last_accel_body_mps2,
                                 st.accel_bias_mps2, self.config.gravity_mps2)
        iv = velocity_time_shift(st, iv, a_ned, dt_back,
                                 self.config.gnss_velocity_shift_accel_sigma_mps2)
        # GPS_RAW_INT carries no vertical velocity (NaN): fuse only the measured components
        keep = np.isfinite(iv.y)
        H = np.vstack([ip.H, iv.H[keep]])
        m = 3 + int(keep.sum())
        Rm = np.zeros((m, m))
        Rm[:3, :3] = ip.R
        Rm[3:, 3:] = iv.R[np.ix_(keep, keep)]
        S = H @ st.cov @ H.T + Rm
        inn = Innovation(y=np.concatenate([ip.y, iv.y[keep]]), H=H, R=Rm, S=0.5 * (S + S.T))
        rep = self._apply(gnss.t_ns, kind, inn, self.config.gates.gnss)
        return self._report(gnss.t_ns, kind, rep.accepted, nis_h, gate2, inn_h.y, rep.reason,
                            inn_h.S)

    def update_heading(self, attitude: AttitudeSample) -> UpdateReport:
        """FC yaw as aiding, at most every `heading_min_interval_s` (see config)."""
        kind = MeasurementKind.HEADING
        var, refusal = heading_aiding(self.config, attitude, self._last_heading_t_ns, self.lost)
        if refusal:
            return self._stale(attitude.t_ns, kind, 1, refusal)
        stale = self._locate(attitude.t_ns)[2]
        if stale:
            return self._stale(attitude.t_ns, kind, 1, stale)
        self._last_heading_t_ns = attitude.t_ns
        inn = heading_model(self.state, attitude.yaw_rad, var)
        return self._apply(attitude.t_ns, kind, inn, self.config.gates.heading)

    def apply_position_prior(self, t_ns: int, p_ne_m: np.ndarray,
                             cov_ne_m2: np.ndarray) -> UpdateReport:
        """Fuse a horizontal position prior (the operator's hint), gated like any update."""
        # A hint is about 'now' whatever its time stamp: its radius covers the rest.
        inn = position_model(self.state, np.asarray(p_ne_m, dtype=np.float64),
                             np.asarray(cov_ne_m2, dtype=np.float64), (0, 1))
        return self._apply(t_ns, MeasurementKind.POSITION_PRIOR, inn, self.config.gates.hint)

    def reset_horizontal_position(self, p_ne_m: np.ndarray, cov_ne_m2: np.ndarray,
                                  v_ne_mps: np.ndarray | None = None,
                                  cov_v_ne_m2s2: np.ndarray | None = None) -> None:
        """Replace the horizontal position and its covariance (decorrelated from the rest).

        Used when the evidence says the filter, not the measurements, is wrong (an operator
        hint outside the gate, consistent fixes that the gate keeps rejecting). Clones are
        dropped: they hold positions of the old, wrong hypothesis. Clears LOST only if the
        covariance is positive definite again.
        """
        st = self.state
        while st.clone_t_ns:
            drop_oldest_clone(st)
        st.p_ned[:2] = np.asarray(p_ne_m, dtype=np.float64)
        st.cov[0:2, :] = 0.0
        st.cov[:, 0:2] = 0.0
        st.cov[0:2, 0:2] = np.asarray(cov_ne_m2, dtype=np.float64)
        if v_ne_mps is not None and cov_v_ne_m2s2 is not None:
            reset_horizontal_velocity(st.v_ned, st.cov, v_ne_mps, cov_v_ne_m2s2)
        if self.lost and is_positive_definite(st.cov):
            self.lost = False
            self.lost_reason = ""

    # ------------------------------------------------------------------ output
    def estimate(self) -> NavEstimate:
        """The current (filtered) estimate; checks positive definiteness first."""
        st = self.state
        if not self.lost and not is_positive_definite(st.cov):
            self._declare_lost("covariance not positive definite after propagation")
        return NavEstimate(
            t_ns=st.t_ns,
            p_ned_m=st.p_ned.copy(),
            v_ned_mps=st.v_ned.copy(),
            q_body_to_ned=st.q_body_to_ned.copy(),
            cov_p_ned_m2=st.cov[P, P].copy(),
            cov_v_ned_m2s2=st.cov[V, V].copy(),
            cov_pv_ned=st.cov[P, V].copy(),
            lost=self.lost,
            lost_reason=self.lost_reason,
        )

    def drain_smoothed(self) -> list[SmoothedState]:
        """A filter never revises the past: nothing to hand to the recorder."""
        return []


__all__ = ["Eskf", "GateTable", "initial_eskf_state"]
