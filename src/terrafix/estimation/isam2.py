"""iSAM2 fixed-lag smoother backend (REQUIREMENTS N5 alternative), gtsam 4.3.

Keyframes are the frame capture times (`mark_frame`), plus one whenever `isam2_max_keyframe_
interval_s` passes without a frame (visual blackout) and one at each fused GNSS sample, hint
or heading. Between consecutive keyframes a `CombinedImuFactor` carries the preintegrated IMU
and the bias random walk; the barometer offset is a double per keyframe with a random-walk
`BetweenFactorDouble`. Fixes, odometry and barometer are `CustomFactor`s
(`isam2_factors.py`), GNSS a `GPSFactor` plus a velocity prior.

The window is `gtsam.IncrementalFixedLagSmoother` (it is in the main gtsam 4.3 wheel) with the
keyframe *index* as its timestamp and a lag of W-1, so the window is exactly W keyframes
(`isam2_window_keyframes`, 10–20) whatever the frame rate; older keyframes are marginalised
into a linear prior by gtsam.

Real-time output: the newest keyframe's estimate (which no later measurement has revised: it
is a filtered estimate) and its joint marginal covariance, moved to the current IMU time with
the ESKF's own propagation (`propagation.py`). Retroactively corrected keyframes leave through
`drain_smoothed()` for the recorder only (REQUIREMENTS N6).

Gating uses the same pure models and chi-square gates as the ESKF: a measurement at keyframe k
is compared with the smoother's current estimate of k and its marginal covariance.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

import gtsam
import numpy as np

from terrafix.estimation.backend import heading_aiding
from terrafix.estimation.config import EstimatorConfig
from terrafix.estimation.correlated_errors import CorrelatedErrorScale
from terrafix.estimation.errors import EstimationError
from terrafix.estimation.eskf import GateTable, initial_eskf_state
from terrafix.estimation.isam2_factors import (
    baro_factor,
    heading_factor,
    joint_prior_factor,
    odometry_factor,
    position_factor,
)
from terrafix.estimation.models import (
    acceleration_ned,
    gnss_position_model,
    heading_model,
    time_shift,
)
from terrafix.estimation.outputs import MeasurementKind, NavEstimate, SmoothedState, UpdateReport
from terrafix.estimation.propagation import ImuPropagator, PendingCovariance
from terrafix.estimation.state import (
    BB,
    CORE_DIM,
    EskfState,
    P,
    V,
    is_positive_definite,
    reset_horizontal_velocity,
)
from terrafix.estimation.warm_start import InitialState
from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import R_to_quat
from terrafix.measurements import (
    AbsoluteFix,
    AttitudeSample,
    BaroSample,
    GnssSample,
    ImuSample,
    OdometryDelta,
)


def X(k: int) -> int:
    return gtsam.symbol("x", k)


def Vk(k: int) -> int:
    return gtsam.symbol("v", k)


def B(k: int) -> int:
    return gtsam.symbol("b", k)


def Z(k: int) -> int:
    return gtsam.symbol("z", k)


BARO_ATTACH_NS = 60_000_000
"""A barometer sample is attached to a keyframe at most this far away in time (20 Hz
barometer: every keyframe has one within 25 ms)."""

BARO_PRIOR_SIGMA_M = 1000.0
"""Prior of the barometer offset when it is first created: uninformative on purpose; the
first barometer factor ties it to the altitude prior (what the ESKF does exactly)."""

_UNMEASURED_SIGMA = 1e4
"""Sigma (m/s) of a velocity component the receiver did not report: a prior without weight."""


@dataclass(slots=True)
class _Keyframe:
    index: int
    t_ns: int
    has_baro: bool = False


class Isam2Smoother:
    """The iSAM2 fixed-lag smoothing backend; same calls and reports as `Eskf`."""

    def __init__(self, config: EstimatorConfig, frame: LocalFrame, init: InitialState) -> None:
        self.config = config
        self._gnss_scale = CorrelatedErrorScale(config.gnss_error_correlation_s)
        self.frame = frame
        self._propagator = ImuPropagator(config)
        self._cov_pending = PendingCovariance()
        self._gates = GateTable()
        self._smoothed: list[SmoothedState] = []
        self._prev_imu: ImuSample | None = None
        self._imu_buf: list[ImuSample] = []
        self._last_gyro = np.zeros(3)
        self._last_heading_t_ns: int | None = None
        self.reinitialise(init)

    # ------------------------------------------------------------------ life cycle
    @property
    def t_ns(self) -> int:
        return self._rt.t_ns

    def reinitialise(self, init: InitialState) -> None:
        self._start(initial_eskf_state(init, self.config), baro_started=False)

    def _start(self, st: EskfState, baro_started: bool) -> None:
        """(Re)start the smoother with one keyframe carrying the full prior of `st`."""
        cfg = self.config
        params = gtsam.ISAM2Params()
        params.setRelinearizeThreshold(cfg.isam2_relinearize_threshold)
        params.relinearizeSkip = 5
        # QR, not the default Cholesky: with a MEMS IMU's bias random walk (variances of
        # 1e-10 per keyframe) gtsam 4.3's Cholesky path reported "indeterminate system" on
        # a prior + one CombinedImuFactor that batch LM and QR solve without complaint.
        params.setFactorization("QR")
        self._smoother = gtsam.IncrementalFixedLagSmoother(
            float(cfg.isam2_window_keyframes - 1), params)
        self._next_index = 0
        self._kfs: list[_Keyframe] = []
        self._baro_started = baro_started
        self._rt_state = st
        self._cov_pending.reset()
        self._dirty = False
        self._pending = gtsam.NonlinearFactorGraph()
        self.lost = False
        self.lost_reason = ""
        k = self._next_index
        self._next_index += 1
        values = gtsam.Values()
        values.insert(X(k), gtsam.Pose3(gtsam.Rot3(st.R_body_to_ned), st.p_ned))
        values.insert(Vk(k), np.asarray(st.v_ned, dtype=np.float64))
        values.insert(B(k), gtsam.imuBias.ConstantBias(st.accel_bias_mps2, st.gyro_bias_radps))
        stamps = {X(k): float(k), Vk(k): float(k), B(k): float(k)}
        if baro_started:
            values.insert(Z(k), float(st.baro_bias_m))
            stamps[Z(k)] = float(k)
        graph = gtsam.NonlinearFactorGraph()
        graph.add(joint_prior_factor(
            X(k), Vk(k), B(k), Z(k) if baro_started else None, st.R_body_to_ned, st.p_ned,
            st.v_ned, st.accel_bias_mps2, st.gyro_bias_radps, st.baro_bias_m,
            st.cov[:CORE_DIM, :CORE_DIM]))
        self._kfs.append(_Keyframe(k, st.t_ns))
        self._update(graph, values, stamps)
        self._imu_buf = self._imu_buf[-1:]
        self._dirty = True

    def _declare_lost(self, reason: str) -> None:
        if not self.lost:
            self.lost = True
            self.lost_reason = reason

    def _update(self, graph: gtsam.NonlinearFactorGraph, values: gtsam.Values,
                stamps: dict[int, float]) -> bool:
        try:
            self._smoother.update(graph, values, stamps)
            self._est = self._smoother.calculateEstimate()
        except RuntimeError as exc:
            self._declare_lost(f"iSAM2 update failed: {str(exc).splitlines()[0][:120]}")
            return False
        return True

    def _flush(self) -> None:
        """Fuse the measurement factors accepted since the last smoother update, in one
        update (the measurements of one frame share it; each was gated on the smoother state
        before any of them, which is conservative)."""
        if self._pending.size() == 0 or self.lost:
            return
        graph, self._pending = self._pending, gtsam.NonlinearFactorGraph()
        self._update(graph, gtsam.Values(), {})
        self._dirty = True

    # ------------------------------------------------------------------ IMU
    def propagate(self, imu: ImuSample) -> None:
        prev = self._prev_imu
        if prev is not None and imu.t_ns < prev.t_ns:
            raise EstimationError(
                f"IMU sample at t={imu.t_ns} ns is older than the previous one "
                f"({prev.t_ns} ns); expected samples in time order")
        self._prev_imu = imu
        self._last_gyro = imu.gyro_body_radps
        self._imu_buf.append(imu)
        if imu.t_ns <= self._rt.t_ns:
            return
        self._propagate_rt(prev, imu)
        if (not self.lost and (imu.t_ns - self._kfs[-1].t_ns) * 1e-9
                >= self.config.isam2_max_keyframe_interval_s):
            self._new_keyframe(imu.t_ns)

    def _propagate_rt(self, prev: ImuSample | None, imu: ImuSample) -> None:
        if prev is None:
            a, w = imu.accel_body_mps2, imu.gyro_body_radps
        else:
            a = 0.5 * (prev.accel_body_mps2 + imu.accel_body_mps2)
            w = 0.5 * (prev.gyro_body_radps + imu.gyro_body_radps)
        st = self._rt  # refreshed first if the smoother changed
        self._propagator.propagate(st, a, w, imu.t_ns, self._cov_pending)
        if self._cov_pending.n >= self.config.covariance_every_n_imu:
            self._propagator.flush(st, self._cov_pending)

    def _pieces(self, ta: int, tb: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """(accel, gyro, dt) pieces covering [ta, tb] from the IMU buffer (interval means,
        as the ESKF integrates; the last reading is held if tb is past it)."""
        buf = self._imu_buf
        out: list[tuple[np.ndarray, np.ndarray, float]] = []
        for s0, s1 in itertools.pairwise(buf):
            lo, hi = max(s0.t_ns, ta), min(s1.t_ns, tb)
            if hi > lo:
                out.append((0.5 * (s0.accel_body_mps2 + s1.accel_body_mps2),
                            0.5 * (s0.gyro_body_radps + s1.gyro_body_radps), (hi - lo) * 1e-9))
        if buf and tb > max(buf[-1].t_ns, ta):
            last = buf[-1]
            out.append((last.accel_body_mps2, last.gyro_body_radps,
                        (tb - max(last.t_ns, ta)) * 1e-9))
        return out

    def _pim_params(self, gyro_rms: np.ndarray) -> gtsam.PreintegrationCombinedParams:
        imu = self.config.imu
        p = gtsam.PreintegrationCombinedParams.MakeSharedD(self.config.gravity_mps2)
        p.setAccelerometerCovariance(np.eye(3) * imu.accel_noise_mps2_rthz**2)
        scale = imu.gyro_scale_sigma**2 * imu.gyro_scale_correlation_s * gyro_rms**2
        p.setGyroscopeCovariance(np.diag(imu.gyro_noise_radps_rthz**2 + scale))
        p.setIntegrationCovariance(np.eye(3) * 1e-8)
        p.setBiasAccCovariance(np.eye(3) * imu.accel_bias_rw_mps2_rts**2)
        p.setBiasOmegaCovariance(np.eye(3) * imu.gyro_bias_rw_radps_rts**2)
        return p

    # ------------------------------------------------------------------ keyframes
    def _new_keyframe(self, t_ns: int) -> _Keyframe | str:
        """Add a keyframe at t_ns (≥ the newest keyframe) with its IMU factor."""
        prev = self._kfs[-1]
        if t_ns - prev.t_ns <= self.config.time_match_ns:
            return prev
        pieces = self._pieces(prev.t_ns, t_ns)
        if not pieces:
            raise EstimationError(f"no IMU samples between keyframes at {prev.t_ns} and "
                                  f"{t_ns} ns; feed IMU before marking frames")
        gyro_rms = np.sqrt(np.mean([w * w for _, w, _ in pieces], axis=0))
        bias = self._est.atConstantBias(B(prev.index))
        pim = gtsam.PreintegratedCombinedMeasurements(self._pim_params(gyro_rms), bias)
        for a, w, dt in pieces:
            pim.integrateMeasurement(a, w, dt)
        nav = pim.predict(gtsam.NavState(self._est.atPose3(X(prev.index)),
                                         self._est.atVector(Vk(prev.index))), bias)
        k = self._next_index
        self._next_index += 1
        values = gtsam.Values()
        values.insert(X(k), nav.pose())
        values.insert(Vk(k), np.asarray(nav.velocity(), dtype=np.float64))
        values.insert(B(k), bias)
        stamps = {X(k): float(k), Vk(k): float(k), B(k): float(k)}
        graph, self._pending = self._pending, gtsam.NonlinearFactorGraph()
        graph.add(gtsam.CombinedImuFactor(X(prev.index), Vk(prev.index), X(k), Vk(k),
                                          B(prev.index), B(k), pim))
        if self._baro_started:
            values.insert(Z(k), self._est.atDouble(Z(prev.index)))
            stamps[Z(k)] = float(k)
            dt = (t_ns - prev.t_ns) * 1e-9
            sigma = max(self.config.baro_bias_rw_m_rts * math.sqrt(dt), 1e-6)
            graph.add(gtsam.BetweenFactorDouble(Z(prev.index), Z(k), 0.0,
                                                gtsam.noiseModel.Isotropic.Sigma(1, sigma)))
        self._record_leaving(k)
        kf = _Keyframe(k, t_ns)
        self._kfs.append(kf)
        if not self._update(graph, values, stamps):
            self._kfs.pop()
            return self.lost_reason
        self._kfs = self._kfs[-self.config.isam2_window_keyframes:]
        keep = [s for s in self._imu_buf if s.t_ns >= t_ns]
        before = [s for s in self._imu_buf if s.t_ns < t_ns][-1:]
        self._imu_buf = before + keep
        self._dirty = True
        return kf

    def _record_leaving(self, new_index: int) -> None:
        """Keyframes that the next update marginalises: hand their last smoothed value to
        the recorder (final=True)."""
        oldest_kept = new_index - (self.config.isam2_window_keyframes - 1)
        for kf in self._kfs:
            if kf.index < oldest_kept:
                try:
                    cov6 = self._smoother.marginalCovariance(X(kf.index))
                except RuntimeError:
                    continue
                pose = self._est.atPose3(X(kf.index))
                R = pose.rotation().matrix()
                self._smoothed.append(SmoothedState(
                    t_ns=kf.t_ns, p_ned_m=np.asarray(pose.translation(), dtype=np.float64),
                    v_ned_mps=np.asarray(self._est.atVector(Vk(kf.index)), dtype=np.float64),
                    q_body_to_ned=R_to_quat(R), cov_p_ned_m2=R @ cov6[3:, 3:] @ R.T,
                    final=True))

    def mark_frame(self, t_ns: int) -> None:
        if self.lost or self._find_keyframe(t_ns) is not None:
            return
        if t_ns > self._kfs[-1].t_ns:
            self._new_keyframe(t_ns)  # on failure the backend is LOST and says why

    def _find_keyframe(self, t_ns: int) -> _Keyframe | None:
        for kf in reversed(self._kfs):
            if abs(kf.t_ns - t_ns) <= self.config.time_match_ns:
                return kf
        return None

    def _keyframe_for(self, t_ns: int) -> _Keyframe | str:
        """The keyframe at t_ns, creating it if t_ns is after the newest one; or why not."""
        kf = self._find_keyframe(t_ns)
        if kf is not None:
            return kf
        if t_ns > self._kfs[-1].t_ns:
            if (t_ns - self._rt.t_ns) * 1e-9 > self.config.max_extrapolation_s:
                return f"measurement {(t_ns - self._rt.t_ns) * 1e-9:.3f} s ahead of the IMU"
            return self._new_keyframe(t_ns)  # a keyframe, or why it could not be made
        if t_ns < self._kfs[0].t_ns:
            return "stale: older than the smoothing window"
        return "stale: no keyframe at its time (frame not marked)"

    # ------------------------------------------------------------------ real-time state
    def _marginal(self, keys: list[int]) -> np.ndarray:
        """Joint marginal covariance of the given keys, blocks in key order."""
        jm = self._smoother.getISAM2().jointMarginalCovariance(gtsam.KeyVector(keys))
        blocks = [[jm.at(a, b) for b in keys] for a in keys]
        return np.block(blocks)

    @property
    def _rt(self) -> EskfState:
        """The real-time state, rebuilt from the smoother only when an update changed it
        (several measurements of one frame share one rebuild)."""
        if self._pending.size():
            self._flush()
        if self._dirty:
            self._dirty = False
            self._refresh_rt()
        if self._cov_pending.n:
            self._propagator.flush(self._rt_state, self._cov_pending)
        return self._rt_state

    def _refresh_rt(self) -> None:
        """Real-time state := newest keyframe (mean + joint marginal), moved to the current
        IMU time with the ESKF propagation over the buffered samples."""
        if self.lost:
            return
        self._cov_pending.reset()  # belonged to the state being replaced
        kf = self._kfs[-1]
        k = kf.index
        keys = [X(k), Vk(k), B(k)] + ([Z(k)] if self._baro_started else [])
        try:
            sig = self._marginal(keys)
        except RuntimeError as exc:
            self._declare_lost(f"marginal covariance failed: {str(exc).splitlines()[0][:120]}")
            return
        pose = self._est.atPose3(X(k))
        R = pose.rotation().matrix()
        bias = self._est.atConstantBias(B(k))
        # gtsam order [θ, t | v | b_a, b_g | z] -> ESKF order [p, v, θ, b_a, b_g, z]
        n = sig.shape[0]
        T = np.zeros((CORE_DIM, n))
        T[0:3, 3:6] = R
        T[3:6, 6:9] = np.eye(3)
        T[6:9, 0:3] = np.eye(3)
        T[9:15, 9:15] = np.eye(6)
        if n == 16:
            T[15, 15] = 1.0
        cov = T @ sig @ T.T
        if n == 15:
            cov[BB, BB] = BARO_PRIOR_SIGMA_M**2
        st = EskfState(
            t_ns=kf.t_ns, p_ned=np.asarray(pose.translation(), dtype=np.float64).copy(),
            v_ned=np.asarray(self._est.atVector(Vk(k)), dtype=np.float64).copy(),
            q_body_to_ned=R_to_quat(R), R_body_to_ned=R.copy(),
            accel_bias_mps2=np.asarray(bias.accelerometer(), dtype=np.float64).copy(),
            gyro_bias_radps=np.asarray(bias.gyroscope(), dtype=np.float64).copy(),
            baro_bias_m=self._est.atDouble(Z(k)) if self._baro_started else 0.0,
            cov=0.5 * (cov + cov.T))
        acc = PendingCovariance()
        for a, w, dt in self._pieces(kf.t_ns, self._prev_imu.t_ns if self._prev_imu else 0):
            self._propagator.propagate(st, a, w, st.t_ns + round(dt * 1e9), acc)
            if acc.n >= self.config.covariance_every_n_imu:
                self._propagator.flush(st, acc)
        self._propagator.flush(st, acc)
        self._rt_state = st
        if not is_positive_definite(st.cov):
            self._declare_lost("covariance not positive definite")

    # ------------------------------------------------------------------ gated updates
    def _report(self, t_ns: int, kind: str, accepted: bool, nis: float, gate: float,
                y: np.ndarray, reason: str = "", S: np.ndarray | None = None) -> UpdateReport:
        y = np.asarray(y, dtype=np.float64).copy()
        m = y.shape[0]
        S = np.full((m, m), math.nan) if S is None else np.asarray(S, dtype=np.float64).copy()
        return UpdateReport(t_ns=t_ns, kind=kind, accepted=accepted, nis=nis, gate=gate,
                            innovation=y, innovation_cov=S, reason=reason)

    def _refused(self, t_ns: int, kind: str, dof: int, reason: str) -> UpdateReport:
        return self._report(t_ns, kind, False, math.nan, math.nan, np.zeros(dof), reason)

    def _gate_and_add(self, t_ns: int, kind: str, y: np.ndarray, S: np.ndarray, prob: float,
                      factors: list) -> UpdateReport:
        """Gate; if accepted, queue the factors for the next smoother update (`_flush`)."""
        gate = self._gates(prob, y.shape[0])
        try:
            nis = float(y @ np.linalg.solve(S, y))
        except np.linalg.LinAlgError:
            self._declare_lost(f"innovation covariance of {kind} singular")
            return self._report(t_ns, kind, False, math.nan, gate, y, "lost", S)
        if not math.isfinite(nis) or nis > gate:
            return self._report(t_ns, kind, False, nis, gate, y,
                                f"gated: NIS {nis:.1f} > {gate:.1f}", S)
        for f in factors:
            self._pending.add(f)
        return self._report(t_ns, kind, True, nis, gate, y, "", S)

    def _pose_marginal(self, kf: _Keyframe) -> np.ndarray:
        """(6, 6) marginal of a keyframe pose [θ, t] (as of the last smoother update)."""
        return self._smoother.marginalCovariance(X(kf.index))

    def _pose_position(self, kf: _Keyframe) -> tuple[np.ndarray, np.ndarray]:
        pose = self._est.atPose3(X(kf.index))
        return pose.rotation().matrix(), np.asarray(pose.translation(), dtype=np.float64)

    def update_fix(self, fix: AbsoluteFix) -> UpdateReport:
        kind = MeasurementKind.FIX
        with_alt = math.isfinite(fix.alt_var_m2) and fix.alt_var_m2 > 0
        dof = 3 if with_alt else 2
        if self.lost:
            return self._refused(fix.t_ns, kind, dof, "lost")
        kf = self._keyframe_for(fix.t_ns)
        if isinstance(kf, str):
            return self._refused(fix.t_ns, kind, dof, kf)
        R, t = self._pose_position(kf)
        alt = fix.alt_m if with_alt else self.frame.alt0_m - float(t[2])
        z = np.asarray(self.frame.lla_to_ned(fix.lat_deg, fix.lon_deg, alt))
        axes = (0, 1, 2) if with_alt else (0, 1)
        Rm = np.zeros((dof, dof))
        Rm[:2, :2] = np.asarray(fix.cov_ne_m2, dtype=np.float64)
        if with_alt:
            Rm[2, 2] = fix.alt_var_m2
        cov_p = R @ self._pose_marginal(kf)[3:, 3:] @ R.T
        ax = list(axes)
        y = z[ax] - t[ax]
        S = cov_p[np.ix_(ax, ax)] + Rm
        return self._gate_and_add(fix.t_ns, kind, y, S, self.config.gates.fix,
                                  [position_factor(X(kf.index), z[ax], Rm, axes)])

    def update_odometry(self, delta: OdometryDelta) -> UpdateReport:
        kind = MeasurementKind.ODOMETRY
        if not delta.tracking:
            return self._refused(delta.t_ns, kind, 2, f"tracking lost: {delta.reason}")
        if self.lost:
            return self._refused(delta.t_ns, kind, 2, "lost")
        ka = self._find_keyframe(delta.t_prev_ns)
        if ka is None:
            return self._refused(delta.t_ns, kind, 2, "no keyframe at the previous frame "
                                 f"t={delta.t_prev_ns} ns (not marked or left the window)")
        kb = self._keyframe_for(delta.t_ns)
        if isinstance(kb, str):
            return self._refused(delta.t_ns, kind, 2, kb)
        Ra, ta = self._pose_position(ka)
        Rb, tb = self._pose_position(kb)
        sig = self._marginal([X(ka.index), X(kb.index)])
        J = np.zeros((2, 12))
        J[:, 3:6] = -Ra[:2, :]
        J[:, 9:12] = Rb[:2, :]
        Rm = np.asarray(delta.cov_ne_m2, dtype=np.float64)
        y = np.asarray(delta.delta_ne_m, dtype=np.float64) - (tb[:2] - ta[:2])
        S = J @ sig @ J.T + Rm
        return self._gate_and_add(delta.t_ns, kind, y, S, self.config.gates.odometry,
                                  [odometry_factor(X(ka.index), X(kb.index),
                                                   delta.delta_ne_m, Rm)])

    def update_baro(self, baro: BaroSample) -> UpdateReport:
        kind = MeasurementKind.BARO
        if self.lost:
            return self._refused(baro.t_ns, kind, 1, "lost")
        kf = self._kfs[-1]
        if abs(baro.t_ns - kf.t_ns) > BARO_ATTACH_NS:
            return self._refused(baro.t_ns, kind, 1,
                                 "no keyframe within 60 ms (iSAM2 fuses the barometer at "
                                 "keyframes only)")
        if kf.has_baro:
            return self._refused(baro.t_ns, kind, 1, "keyframe already has a barometer sample")
        sigma = self.config.baro_sigma_m
        R, t = self._pose_position(kf)
        v_d = float(self._est.atVector(Vk(kf.index))[2])
        z = baro.alt_m + v_d * (baro.t_ns - kf.t_ns) * 1e-9  # moved to the keyframe time
        if not self._baro_started:
            values = gtsam.Values()
            values.insert(Z(kf.index), float(z - (self.frame.alt0_m - t[2])))
            graph = gtsam.NonlinearFactorGraph()
            graph.add(gtsam.PriorFactorDouble(
                Z(kf.index), float(z - (self.frame.alt0_m - t[2])),
                gtsam.noiseModel.Isotropic.Sigma(1, BARO_PRIOR_SIGMA_M)))
            graph.add(baro_factor(X(kf.index), Z(kf.index), self.frame.alt0_m, z, sigma))
            if not self._update(graph, values, {Z(kf.index): float(kf.index)}):
                return self._refused(baro.t_ns, kind, 1, "lost")
            self._baro_started = True
            kf.has_baro = True
            self._dirty = True
            return self._report(baro.t_ns, kind, True, 0.0, math.inf, np.zeros(1),
                                "first sample: barometer offset initialised")
        sig = self._marginal([X(kf.index), Z(kf.index)])
        J = np.zeros((1, 7))
        J[0, 3:6] = -R[2, :]
        J[0, 6] = 1.0
        b = self._est.atDouble(Z(kf.index))
        y = np.array([z - (self.frame.alt0_m - t[2] + b)])
        S = J @ sig @ J.T + np.array([[sigma * sigma]])
        rep = self._gate_and_add(baro.t_ns, kind, y, S, self.config.gates.baro,
                                 [baro_factor(X(kf.index), Z(kf.index), self.frame.alt0_m, z,
                                              sigma)])
        if rep.accepted:
            kf.has_baro = True
        return rep

    def _accel_ned_near(self, t_ns: int, R_body_to_ned: np.ndarray) -> np.ndarray:
        """(3,) NED acceleration from the IMU sample nearest t_ns (the buffer is in time
        order)."""
        buf = self._imu_buf
        i = bisect.bisect_left(buf, t_ns, key=lambda s: s.t_ns)
        imu = min(buf[max(i - 1, 0):i + 1], key=lambda s: abs(s.t_ns - t_ns))
        return acceleration_ned(R_body_to_ned, imu.accel_body_mps2, self._rt.accel_bias_mps2,
                                self.config.gravity_mps2)

    def update_gnss(self, gnss: GnssSample, fuse: bool) -> UpdateReport:
        kind = MeasurementKind.GNSS
        gate2 = self._gates(self.config.gates.gnss, 2)
        if self.lost:
            return self._refused(gnss.t_ns, kind, 2, "lost")
        if gnss.fix_type < 3:
            return self._refused(gnss.t_ns, kind, 2, f"no 3D fix (fix_type {gnss.fix_type})")
        dt_back = (self._rt.t_ns - gnss.t_ns) * 1e-9
        if abs(dt_back) > self.config.max_extrapolation_s:
            return self._refused(gnss.t_ns, kind, 2, f"stale: {dt_back:+.3f} s from the state")
        z = np.asarray(self.frame.lla_to_ned(gnss.lat_deg, gnss.lon_deg, gnss.alt_m))
        s_h = max(gnss.h_acc_m, self.config.gnss_min_sigma_m)
        s_v = max(gnss.v_acc_m, self.config.gnss_min_sigma_m)
        inn = gnss_position_model(self._rt, z[:2], np.eye(2) * s_h**2, np.zeros(3), (0, 1))
        inn = time_shift(self._rt, inn, dt_back, self.config.extrapolation_accel_sigma_mps2)
        nis = float(inn.y @ np.linalg.solve(inn.S, inn.y))
        passes = nis <= gate2
        reason = "" if passes else f"gated: NIS {nis:.1f} > {gate2:.1f}"
        if not fuse or not passes:
            return self._report(gnss.t_ns, kind, passes, nis, gate2, inn.y, reason, inn.S)
        if gnss.spoofing:
            return self._report(gnss.t_ns, kind, False, nis, gate2, inn.y,
                                "spoofing flag: never fused", inn.S)
        kf = self._keyframe_for(gnss.t_ns)
        if isinstance(kf, str) and self._kfs[0].t_ns <= gnss.t_ns < self._kfs[-1].t_ns:
            # a receiver's report comes 0.2-0.3 s after its fix, behind the keyframes made
            # since (frames, the keyframe interval): it is moved to the nearest one
            kf = min(self._kfs, key=lambda k: abs(k.t_ns - gnss.t_ns))
        if isinstance(kf, str):
            return self._report(gnss.t_ns, kind, False, nis, gate2, inn.y, kf, inn.S)
        R, t = self._pose_position(kf)
        v = np.asarray(self._est.atVector(Vk(kf.index)), dtype=np.float64)
        sig = self._marginal([X(kf.index), Vk(kf.index)])
        J = np.zeros((6, 9))
        J[0:3, 3:6] = R
        J[3:6, 6:9] = np.eye(3)
        k = math.sqrt(self._gnss_scale.factor(gnss.t_ns))
        s_h, s_v = s_h * k, s_v * k
        s_vel = self.config.gnss_velocity_sigma_mps
        z_v = np.asarray(gnss.v_ned_mps, dtype=np.float64)
        shift_s = (kf.t_ns - gnss.t_ns) * 1e-9
        if abs(shift_s) * 1e9 > self.config.time_match_ns:
            # p(t_kf) ≈ p(t) + v Δ, v(t_kf) ≈ v(t) + a Δ, each with what it neglects
            z = z + v * shift_s
            z_v = z_v + self._accel_ned_near(kf.t_ns, R) * shift_s
            grow = 0.5 * self.config.extrapolation_accel_sigma_mps2 * shift_s * shift_s
            s_h, s_v = math.hypot(s_h, grow), math.hypot(s_v, grow)
            s_vel = math.hypot(s_vel, self.config.gnss_velocity_shift_accel_sigma_mps2
                               * shift_s)
        # GPS_RAW_INT carries no vertical velocity (NaN): only the measured components are
        # tested, and the prior on the missing one is left free (its own estimate, no weight)
        keep = np.concatenate([np.ones(3, dtype=bool), np.isfinite(z_v)])
        z_v = np.where(np.isfinite(z_v), z_v, v)
        Rm = np.diag([s_h**2, s_h**2, s_v**2] + [s_vel**2] * 3)
        y = np.concatenate([z - t, z_v - v])[keep]
        S = (J @ sig @ J.T + Rm)[np.ix_(keep, keep)]
        factors = [
            gtsam.GPSFactor(X(kf.index), gtsam.Point3(*z),
                            gtsam.noiseModel.Diagonal.Sigmas(np.array([s_h, s_h, s_v]))),
            gtsam.PriorFactorVector(Vk(kf.index), z_v, gtsam.noiseModel.Diagonal.Sigmas(
                np.where(keep[3:], s_vel, _UNMEASURED_SIGMA))),
        ]
        rep = self._gate_and_add(gnss.t_ns, kind, y, S, self.config.gates.gnss, factors)
        return self._report(gnss.t_ns, kind, rep.accepted, nis, gate2, inn.y, rep.reason,
                            inn.S)

    def update_heading(self, attitude: AttitudeSample) -> UpdateReport:
        kind = MeasurementKind.HEADING
        var, refusal = heading_aiding(self.config, attitude, self._last_heading_t_ns, self.lost)
        if refusal:
            return self._refused(attitude.t_ns, kind, 1, refusal)
        kf = self._keyframe_for(attitude.t_ns)
        if isinstance(kf, str):
            return self._refused(attitude.t_ns, kind, 1, kf)
        self._last_heading_t_ns = attitude.t_ns
        inn = heading_model(self._rt, attitude.yaw_rad, var)
        return self._gate_and_add(attitude.t_ns, kind, inn.y, inn.S, self.config.gates.heading,
                                  [heading_factor(X(kf.index), attitude.yaw_rad,
                                                  math.sqrt(var))])

    def apply_position_prior(self, t_ns: int, p_ne_m: np.ndarray,
                             cov_ne_m2: np.ndarray) -> UpdateReport:
        kind = MeasurementKind.POSITION_PRIOR
        if self.lost:
            return self._refused(t_ns, kind, 2, "lost")
        kf = self._keyframe_for(max(self._rt.t_ns, self._kfs[-1].t_ns))
        if isinstance(kf, str):
            return self._refused(t_ns, kind, 2, kf)
        R, t = self._pose_position(kf)
        cov_p = R @ self._pose_marginal(kf)[3:, 3:] @ R.T
        z = np.asarray(p_ne_m, dtype=np.float64)
        Rm = np.asarray(cov_ne_m2, dtype=np.float64)
        return self._gate_and_add(t_ns, kind, z - t[:2], cov_p[:2, :2] + Rm,
                                  self.config.gates.hint,
                                  [position_factor(X(kf.index), z, Rm, (0, 1))])

    def reset_horizontal_position(self, p_ne_m: np.ndarray, cov_ne_m2: np.ndarray,
                                  v_ne_mps: np.ndarray | None = None,
                                  cov_v_ne_m2s2: np.ndarray | None = None) -> None:
        """Restart the smoother from the real-time state with the new horizontal position
        (decorrelated from the rest); the window's history is dropped with the old
        hypothesis."""
        st = self._rt.copy()
        st.p_ned[:2] = np.asarray(p_ne_m, dtype=np.float64)
        st.cov[0:2, :] = 0.0
        st.cov[:, 0:2] = 0.0
        st.cov[0:2, 0:2] = np.asarray(cov_ne_m2, dtype=np.float64)
        if v_ne_mps is not None and cov_v_ne_m2s2 is not None:
            reset_horizontal_velocity(st.v_ned, st.cov, v_ne_mps, cov_v_ne_m2s2)
        if not self._baro_started:
            st.cov[BB, :] = 0.0
            st.cov[:, BB] = 0.0
            st.cov[BB, BB] = BARO_PRIOR_SIGMA_M**2
        self._start(st, baro_started=self._baro_started)

    # ------------------------------------------------------------------ output
    def estimate(self) -> NavEstimate:
        st = self._rt
        if not self.lost and not is_positive_definite(st.cov):
            self._declare_lost("covariance not positive definite after propagation")
        return NavEstimate(
            t_ns=st.t_ns, p_ned_m=st.p_ned.copy(), v_ned_mps=st.v_ned.copy(),
            q_body_to_ned=st.q_body_to_ned.copy(), cov_p_ned_m2=st.cov[P, P].copy(),
            cov_v_ned_m2s2=st.cov[V, V].copy(), cov_pv_ned=st.cov[P, V].copy(),
            lost=self.lost, lost_reason=self.lost_reason)

    def drain_smoothed(self) -> list[SmoothedState]:
        """Keyframes that left the window since the last call, with their final smoothed
        values: for the recorder only."""
        out, self._smoothed = self._smoothed, []
        return out
