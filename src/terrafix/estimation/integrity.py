"""Navigation integrity: what the estimate may claim, and what happens when it may not.

Sits on top of either backend (`backend.py`) and turns its estimate into the `NavSolution`
the autopilot, ground station and recorder get (REQUIREMENTS N6, N8–N10):

- source label: `satellite_anchored` while anchors flow (entered on a stream of accepted
  fixes, kept while the last is at most `anchored_hold_s` old); `visual_propagated` while
  frames with texture arrive and odometry is accepted; `dead_reckoned` otherwise — in
  particular at once when a frame reports a total visual blackout, or when no frame has been
  captured for 400 ms; `no_fix` in failsafe. A label change means something changed for the
  operator: worse labels are shown at once, better ones only once their reason has held for
  `label_upgrade_after_s` (see `_next_label`).
- anchor age: time since the capture of the last accepted fix.
- GNSS trust gate (`gnss_gate.py`). Trusted GNSS is fused only while no satellite anchor is
  recent (`gnss_fuse_after_anchor_age_s`): while anchors flow, GNSS is only *tested*, so the
  innovation test compares it with an estimate it did not shape, and a creeping spoofer cannot
  drag the estimate along before the test sees it. Spoofed GNSS is never fused.
- failsafes: a visual blackout of 30 s without trusted GNSS being fused latches an explicit
  no-fix until the next accepted fix; a 95% horizontal radius beyond 500 m or a LOST backend
  is a no-fix while it lasts. Entering it emits `VISUAL_BLACKOUT_FAILSAFE`.
- operator hint: requested when registration was attempted and failed (or the frames showed
  no texture) on ≥ 3 frames over ≥ 2 s since the last accepted fix, or when the 95% radius
  passes `hint_radius95_m` — never because registration was skipped while the estimate is
  confident (repeated every 30 s while it lasts); a hint (lat, lon, radius) is fused as a
  position prior, or replaces the horizontal position when the filter disagrees with it or
  is LOST.
- re-acquisition: a run of consecutive gated fixes that agree with each other means the
  filter, not the fixes, is wrong: the horizontal position is re-initialised on them.
- no estimate for 3 s: said once (`NoEstimate`), and `EstimateResumed` when it comes back.

Events are collected and handed out by `drain_events()`; the onboard program forwards all of
them to the recorder and the ground station (see `events.py`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from terrafix.estimation.backend import NavigationBackend
from terrafix.estimation.config import IntegrityConfig
from terrafix.estimation.errors import EstimationError
from terrafix.estimation.events import (
    EstimateResumed,
    FailsafeCleared,
    FilterLost,
    FilterReset,
    HintApplied,
    HintRequested,
    LabelChanged,
    NavEvent,
    NoEstimate,
    VisualBlackoutFailsafe,
)
from terrafix.estimation.gnss_gate import GnssObservation, GnssTrustGate
from terrafix.estimation.gnss_reference import GnssFreeReference, GnssReferenceConfig
from terrafix.estimation.outputs import NavEstimate, UpdateReport
from terrafix.estimation.warm_start import InitialState
from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import quat_to_R
from terrafix.measurements import (
    AbsoluteFix,
    AttitudeSample,
    BaroSample,
    GnssSample,
    ImuSample,
    NavSolution,
    OdometryDelta,
    SourceLabel,
)

_LABEL_RANK = {SourceLabel.NO_FIX: 0, SourceLabel.DEAD_RECKONED: 1,
               SourceLabel.VISUAL_PROPAGATED: 2, SourceLabel.SATELLITE_ANCHORED: 3}
"""Which label says more: a change up the ranks waits, a change down is shown at once."""

CHI2_2_95 = float(chi2.ppf(0.95, 2))
"""Scale from the largest horizontal variance to the squared 95% radius (2 dof)."""


def radius95_m(cov_ne_m2: np.ndarray) -> float:
    """Radius (m) of the circle that holds the 95% ellipse of a (2, 2) NE covariance."""
    lam = float(np.linalg.eigvalsh(0.5 * (cov_ne_m2 + cov_ne_m2.T))[-1])
    return math.sqrt(CHI2_2_95 * max(lam, 0.0))


@dataclass(frozen=True, slots=True)
class SearchPrior:
    """Where registration should look: a circle around the estimate (lat, lon, 95% radius).
    confident is False when the estimate is in failsafe or LOST: search the whole cache."""

    lat_deg: float
    lon_deg: float
    radius95_m: float
    confident: bool


class IntegrityMonitor:
    """The integrity layer. Feed it the sensor stream in time order (see each `on_*`), ask
    `solution(t)` at output rate, call `watchdog(t)` from the output scheduler, forward
    `drain_events()`.
    """

    def __init__(self, backend: NavigationBackend, config: IntegrityConfig | None = None,
                 *, gnss_trusted: bool | None = None,
                 reference: GnssReferenceConfig | None = None) -> None:
        self.backend = backend
        self.frame: LocalFrame = backend.frame
        self.config = config or IntegrityConfig()
        trusted = self.config.gnss_trusted_at_start if gnss_trusted is None else gnss_trusted
        self.gnss_gate = GnssTrustGate(self.config, trusted)
        self.reference = GnssFreeReference(reference)
        """The GNSS-free reference every GNSS sample is also tested against; the caller
        feeds it the corrected odometry (`GnssFreeReference.on_odometry`)."""
        self._events: list[NavEvent] = []
        t0 = backend.t_ns
        self._t_start_ns = t0
        self._t_last_fix_ns: int | None = None
        self._t_last_odometry_ns: int | None = None
        self._t_last_captured_ns: int | None = None
        self._blackout_frame = False
        self._blackout_since_ns: int | None = t0
        self._frames_without_fix = 0
        """The current run of frames whose registration failed (or that had no texture)."""
        self._t_first_failure_ns: int | None = None
        self._t_last_failure_ns: int | None = None
        self._failed_frame_times: deque[int] = deque(maxlen=16)
        self._t_hint_requested_ns: int | None = None
        self._label = SourceLabel.DEAD_RECKONED
        self._t_downgraded_ns = t0
        self._supported_since_ns: dict[str, int] = {}
        self._fix_times: deque[int] = deque(maxlen=max(self.config.anchored_enter_fixes, 1))
        self._failsafe = False
        self._blackout_latched = False
        self._t_last_valid_ns = t0
        self._t_last_gnss_fused_ns: int | None = None
        self._no_estimate_said = False
        self._lost_said = False
        self._rejected_fixes: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._last_gnss_report: UpdateReport | None = None

    # ------------------------------------------------------------------ events
    def drain_events(self) -> list[NavEvent]:
        """Events since the last call, in the order they happened."""
        out, self._events = self._events, []
        return out

    def _emit(self, events: list[NavEvent] | NavEvent) -> None:
        if isinstance(events, list):
            self._events.extend(events)
        else:
            self._events.append(events)

    # ------------------------------------------------------------------ sensor inputs
    def feed(self, sample: object) -> UpdateReport | None:
        """Dispatch one time-ordered sample of the shared types (IMU, attitude, baro, GNSS,
        fix, odometry) to its `on_*` input; frames are told with on_frame_captured/on_frame."""
        if isinstance(sample, ImuSample):
            self.on_imu(sample)
            return None
        if isinstance(sample, AttitudeSample):
            return self.on_attitude(sample)
        if isinstance(sample, BaroSample):
            return self.on_baro(sample)
        if isinstance(sample, GnssSample):
            return self.on_gnss(sample)
        if isinstance(sample, AbsoluteFix):
            return self.on_fix(sample)
        if isinstance(sample, OdometryDelta):
            return self.on_odometry(sample)
        raise TypeError(f"IntegrityMonitor.feed: unsupported sample type {type(sample).__name__}")

    def on_imu(self, imu: ImuSample) -> None:
        self.backend.propagate(imu)

    def on_attitude(self, attitude: AttitudeSample) -> UpdateReport:
        return self.backend.update_heading(attitude)

    def on_baro(self, baro: BaroSample) -> UpdateReport:
        return self.backend.update_baro(baro)

    def on_frame_captured(self, t_ns: int) -> None:
        """A camera frame was captured at t_ns (call before its processing results)."""
        self.backend.mark_frame(t_ns)
        self._t_last_captured_ns = t_ns

    def on_odometry(self, delta: OdometryDelta) -> UpdateReport:
        rep = self.backend.update_odometry(delta)
        if rep.accepted:
            self._t_last_odometry_ns = delta.t_ns
        return rep

    def on_fix(self, fix: AbsoluteFix) -> UpdateReport:
        """An absolute fix from registration (for a frame told with on_frame_captured)."""
        rep = self.backend.update_fix(fix)
        if rep.accepted:
            self._t_last_fix_ns = max(fix.t_ns, self._t_last_fix_ns or fix.t_ns)
            if not self._fix_times or fix.t_ns > self._fix_times[-1]:
                self._fix_times.append(fix.t_ns)
            self._frames_without_fix = 0
            self._t_first_failure_ns = self._t_last_failure_ns = None
            self._t_hint_requested_ns = None
            self._rejected_fixes.clear()
            if self._blackout_latched:
                self._blackout_latched = False
            alt = fix.alt_m
            if not (math.isfinite(fix.alt_var_m2) and math.isfinite(alt)):
                alt = self.frame.alt0_m - float(self.backend.estimate().p_ned_m[2])
            p_fix = np.asarray(self.frame.lla_to_ned(fix.lat_deg, fix.lon_deg, alt))[:2]
            self._emit(self.gnss_gate.on_anchor(fix.t_ns, p_fix,
                                                np.asarray(fix.cov_ne_m2, dtype=np.float64)))
            self.reference.on_fix(fix.t_ns, p_fix, np.asarray(fix.cov_ne_m2, dtype=np.float64))
        elif rep.reason.startswith("gated"):
            self._rejected_fixes.append((fix.t_ns, rep.innovation[:2].copy(),
                                         np.asarray(fix.cov_ne_m2, dtype=np.float64)))
            self._maybe_reacquire(fix.t_ns)
        return rep

    def on_frame(self, t_ns: int, *, blackout: bool) -> None:
        """A frame's processing is complete (after its on_odometry/on_fix calls).

        blackout: the frame showed no usable ground texture or tracking was lost (the vision
        pipeline's verdict). The label turns dead_reckoned with this very frame, and the
        frame counts towards a hint request like a failed registration (no fix can come
        from it).
        """
        if self._t_last_captured_ns is None or t_ns > self._t_last_captured_ns:
            self._t_last_captured_ns = t_ns
        if blackout:
            if not self._blackout_frame:
                self._blackout_since_ns = t_ns
            self._blackout_frame = True
            self._note_failed_frame(t_ns)
        else:
            self._blackout_frame = False
            self._blackout_since_ns = None
        self._update_status(t_ns, self.backend.estimate())

    def on_registration(self, t_ns: int, *, fixed: bool) -> None:
        """The registration attempted on the frame captured at t_ns has ended (after the
        on_fix of its fix, if it gave one): fixed says whether a fix was accepted. Attempts
        that failed count towards a hint request; frames the navigator chose not to register
        (the estimate is confident) are never told and never count."""
        if not fixed:
            self._note_failed_frame(t_ns)

    def _note_failed_frame(self, t_ns: int) -> None:
        """Count a frame without a usable fix once (a blackout frame that was also registered
        is told twice), unless a fix newer than it was accepted since; a failure more than
        `hint_run_gap_s` after the previous one starts a new run."""
        if t_ns in self._failed_frame_times or (self._t_last_fix_ns is not None
                                                and t_ns <= self._t_last_fix_ns):
            return
        self._failed_frame_times.append(t_ns)
        if self._t_last_failure_ns is not None \
                and (t_ns - self._t_last_failure_ns) * 1e-9 > self.config.hint_run_gap_s:
            self._frames_without_fix = 0
            self._t_first_failure_ns = self._t_last_failure_ns = None
        self._frames_without_fix += 1
        if self._t_first_failure_ns is None or t_ns < self._t_first_failure_ns:
            self._t_first_failure_ns = t_ns
        if self._t_last_failure_ns is None or t_ns > self._t_last_failure_ns:
            self._t_last_failure_ns = t_ns

    def on_gnss(self, gnss: GnssSample) -> UpdateReport | None:
        """One GNSS solution: tested always, fused only while trusted and no anchor is recent.

        Returns the backend's report (None when the sample was flagged or had no fix and was
        not even tested).
        """
        usable = (gnss.fix_type >= 3 and math.isfinite(gnss.lat_deg)
                  and math.isfinite(gnss.lon_deg) and math.isfinite(gnss.alt_m))
        rep = None
        if usable:
            rep = self.backend.update_gnss(gnss, fuse=False)
            if not math.isfinite(rep.nis):
                usable = False
        p_ne = v_ne = None
        var = math.nan
        if usable:
            p_ne = np.asarray(self.frame.lla_to_ned(gnss.lat_deg, gnss.lon_deg, gnss.alt_m))[:2]
            v_ne = np.asarray(gnss.v_ned_mps, dtype=np.float64)[:2]
            s = max(gnss.h_acc_m if math.isfinite(gnss.h_acc_m) else math.inf,
                    self.backend.config.gnss_min_sigma_m)
            var = s * s
        obs = GnssObservation(
            t_ns=gnss.t_ns, spoofing=gnss.spoofing, jamming=gnss.jamming, usable=usable,
            nis=rep.nis if rep is not None else math.nan,
            innovation_ne_m=rep.innovation[:2].copy() if rep is not None and usable else None,
            innovation_cov=rep.innovation_cov[:2, :2].copy() if rep is not None and usable
            else None,
            p_ne_m=p_ne, v_ne_mps=v_ne, var_m2=var,
            reference_failed=self._test_against_reference(gnss, p_ne, var))
        was_trusted = self.gnss_gate.trusted
        self._emit(self.gnss_gate.observe(obs))
        if was_trusted and not self.gnss_gate.trusted:
            self._on_gate_closed(gnss.t_ns)
        if (usable and self.gnss_gate.trusted and not gnss.spoofing and not gnss.jamming
                and self._anchor_age_s(gnss.t_ns) > self.config.gnss_fuse_after_anchor_age_s):
            rep = self.backend.update_gnss(gnss, fuse=True)
            if rep.accepted:
                self._t_last_gnss_fused_ns = gnss.t_ns
        self._last_gnss_report = rep
        return rep

    def _test_against_reference(self, gnss: GnssSample, p_ne: np.ndarray | None,
                                var_m2: float) -> str:
        """The GNSS-free reference's verdict on a usable, unflagged sample ("" if passed)."""
        if p_ne is None or gnss.spoofing or gnss.jamming:
            return ""
        v = self.backend.estimate().v_ned_mps[:2]
        return self.reference.test_gnss(gnss.t_ns, p_ne, var_m2, self.gnss_gate.trusted,
                                        v).failed

    def _on_gate_closed(self, t_ns: int) -> None:
        """The gate just closed. If GNSS was being fused and the closure is for spoofing, the
        estimate may have been dragged for as long as the spoof went unseen, by at most what
        the sequential test lets through (`drag_cover_cov`). Two honest answers, the tighter
        wins:
        - the GNSS-free reference from before the pull-off began (gnss_reference.py), whose
          covariance covers the odometry since: the estimate falls back onto it;
        - the estimate itself with its covariance grown by the drag cover, the reference then
          fused into it as an independent position (when they disagree beyond both
          covariances, the estimate was dragged further than the test allows: fall back).
        The second matters where the reference has coasted without odometry for long (off
        the imagery, a climb-out): ArduPlane SITL, a reference 233 m off with a 298 m radius
        replaced an estimate 7 m off, just as ArduPilot reset onto terrafix's position."""
        fused_recently = (self._t_last_gnss_fused_ns is not None
                          and (t_ns - self._t_last_gnss_fused_ns) * 1e-9 <= 5.0)
        if fused_recently and self.gnss_gate.spoof_closed:
            est = self.backend.estimate()
            fb = self.reference.fallback(t_ns, est.v_ned_mps[:2])
            if fb is not None and not est.lost:
                self._fall_back(t_ns, est, *fb)
        self.reference.on_gate_closed(t_ns)

    def _fall_back(self, t_ns: int, est: NavEstimate, p_fb: np.ndarray,
                   P_fb: np.ndarray) -> None:
        """See `_on_gate_closed`: est is the backend's estimate, (p_fb (2,), P_fb (2, 2)) the
        reference's fallback."""
        p_est = np.asarray(est.p_ned_m[:2], dtype=np.float64)
        P_dragged = np.asarray(est.cov_p_ned_m2[:2, :2], dtype=np.float64) \
            + self.reference.drag_cover_cov()
        if np.trace(P_dragged) < np.trace(P_fb):
            # the fused velocity carries a pull-off's rate too, with the GNSS's small
            # covariance: grown by what the sequential test lets through
            self.backend.reset_horizontal_position(
                p_est, P_dragged, est.v_ned_mps[:2],
                np.asarray(est.cov_v_ned_m2s2[:2, :2], dtype=np.float64)
                + self.reference.drag_velocity_cov(t_ns))
            rep = self.backend.apply_position_prior(t_ns, p_fb, P_fb)
            if rep.accepted:
                moved = float(np.hypot(*(self.backend.estimate().p_ned_m[:2] - p_est)))
                self._emit(FilterReset(
                    t_ns, "GNSS closed: covariance grown by what the spoof may have dragged, "
                    f"the GNSS-free reference fused (reference {np.hypot(*(p_fb - p_est)):.0f}"
                    " m away)", moved))
                return
        shift = float(np.hypot(*(p_fb - p_est)))
        vel = self.reference.velocity(t_ns)
        if vel is None:  # no recent odometry: keep the velocity, widen it
            d_v = np.eye(2) * self.reference.config.gap_velocity_sigma_mps ** 2
            vel = (est.v_ned_mps[:2], est.cov_v_ned_m2s2[:2, :2] + d_v * 4.0)
        self.backend.reset_horizontal_position(p_fb, P_fb, *vel)
        self._emit(FilterReset(t_ns, "GNSS closed: back onto the GNSS-free reference", shift))

    def on_hint(self, t_ns: int, lat_deg: float, lon_deg: float,
                radius_m: float) -> HintApplied:
        """Operator re-localisation hint (RELOC:lat,lon,radius): radius read as 95%."""
        if not (radius_m > 0 and math.isfinite(radius_m)):
            raise EstimationError(f"hint radius must be a finite positive number of metres, "
                                  f"got {radius_m!r}")
        est = self.backend.estimate()
        alt = self.frame.alt0_m - float(est.p_ned_m[2])
        p_ne = np.asarray(self.frame.lla_to_ned(lat_deg, lon_deg, alt))[:2]
        cov = np.eye(2) * (radius_m * radius_m / CHI2_2_95)
        nis = math.nan
        if not est.lost:
            rep = self.backend.apply_position_prior(t_ns, p_ne, cov)
            nis = rep.nis
            if rep.accepted:
                applied = HintApplied(t_ns, "fused", nis, radius_m)
                self._emit(applied)
                return applied
        shift = float(np.hypot(*(p_ne - est.p_ned_m[:2])))
        self.backend.reset_horizontal_position(p_ne, cov)
        self._rejected_fixes.clear()
        self._emit(FilterReset(t_ns, "operator hint", shift))
        applied = HintApplied(t_ns, "reset", nis, radius_m)
        self._emit(applied)
        return applied

    def restart(self, init: InitialState, reason: str) -> None:
        """Re-initialise the backend (warm start from the FC state after a companion
        restart, or after LOST)."""
        before = self.backend.estimate()
        self.backend.reinitialise(init)
        self._rejected_fixes.clear()
        self._lost_said = False
        shift = float(np.hypot(*(init.p_ned_m[:2] - before.p_ned_m[:2])))
        self._emit(FilterReset(init.t_ns, reason, shift))

    # ------------------------------------------------------------------ re-acquisition
    def _maybe_reacquire(self, t_ns: int) -> None:
        n = self.config.reacquire_after_rejected_fixes
        run = self._rejected_fixes[-n:]
        if len(run) < n:
            return
        ys = np.array([y for _, y, _ in run])
        spread = float(np.max(np.linalg.norm(ys - ys.mean(axis=0), axis=1)))
        if spread > self.config.reacquire_agreement_m:
            return
        est = self.backend.estimate()
        shift = ys.mean(axis=0)
        cov = run[-1][2] + np.cov(ys.T) + np.eye(2) * 1e-6
        self.backend.reset_horizontal_position(est.p_ned_m[:2] + shift, cov)
        self._rejected_fixes.clear()
        self._emit(FilterReset(t_ns, f"{n} consistent fixes rejected", float(np.hypot(*shift))))
        if self.gnss_gate.trusted and self._last_gnss_report is not None \
                and self._last_gnss_report.accepted:
            self._emit(self.gnss_gate.close(t_ns, "anchors contradict GNSS-aided estimate"))

    # ------------------------------------------------------------------ status
    def _anchor_age_s(self, t_ns: int) -> float:
        if self._t_last_fix_ns is None:
            return math.inf
        return max(0.0, (t_ns - self._t_last_fix_ns) * 1e-9)

    def _gnss_in_use(self, t_ns: int) -> bool:
        """Trusted GNSS fused within the last 2 s (what keeps a blackout from being blind)."""
        return (self.gnss_gate.trusted and self._t_last_gnss_fused_ns is not None
                and (t_ns - self._t_last_gnss_fused_ns) * 1e-9 <= 2.0)

    def _visual_blackout_since(self, t_ns: int) -> int | None:
        """Start of the current visual blackout, or None if frames with texture arrive."""
        if self._blackout_frame:
            return self._blackout_since_ns
        last = self._t_last_captured_ns
        if last is None:
            return self._t_start_ns
        if (t_ns - last) * 1e-9 > self.config.blackout_label_after_s:
            return last
        return None

    def _update_status(self, t_ns: int, est: NavEstimate) -> tuple[str, bool, float]:
        """Recompute label and failsafe at t_ns; emit events on changes."""
        cfg = self.config
        r95 = radius95_m(est.cov_p_ned_m2[:2, :2]) if not est.lost else math.inf
        since = self._visual_blackout_since(t_ns)
        blackout_s = (t_ns - since) * 1e-9 if since is not None else 0.0
        if est.lost and not self._lost_said:
            self._lost_said = True
            self._emit(FilterLost(t_ns, est.lost_reason))
        if (not self._blackout_latched and blackout_s >= cfg.blackout_failsafe_s
                and not self._gnss_in_use(t_ns)):
            self._blackout_latched = True
        reason = ""
        if est.lost:
            reason = "filter lost"
        elif r95 > cfg.failsafe_radius95_m:
            reason = f"r95 {r95:.0f}m>{cfg.failsafe_radius95_m:.0f}m"
        elif self._blackout_latched:
            reason = f"blackout {blackout_s:.0f}s"
        failsafe = bool(reason)
        if failsafe and not self._failsafe:
            self._emit(VisualBlackoutFailsafe(t_ns, reason, blackout_s, r95))
        elif not failsafe and self._failsafe:
            self._emit(FailsafeCleared(t_ns, "anchor" if self._anchor_age_s(t_ns) < 1.0
                                       else "estimate usable"))
        self._failsafe = failsafe

        label = self._next_label(t_ns, failsafe, since is not None and since <= t_ns)
        if label != self._label:
            self._emit(LabelChanged(t_ns, self._label, label))
            if _LABEL_RANK[label] < _LABEL_RANK[self._label]:
                self._t_downgraded_ns = t_ns
            self._label = label
        self._maybe_request_hint(t_ns, est, r95)
        self._watch(t_ns, not failsafe, reason)
        return label, failsafe, r95

    def _anchors_flow(self, t_ns: int) -> bool:
        """`satellite_anchored` may be entered: the last `anchored_enter_fixes` accepted fixes
        each within `anchored_hold_s` of the previous and of t_ns, all taken after the label
        was last made worse (a lost frame or a failsafe in between asks for a new stream)."""
        cfg = self.config
        times = self._fix_times
        if len(times) < cfg.anchored_enter_fixes or times[0] < self._t_downgraded_ns:
            return False
        if (t_ns - times[-1]) * 1e-9 > cfg.anchored_hold_s:
            return False
        return all((b - a) * 1e-9 <= cfg.anchored_hold_s
                   for a, b in zip(list(times)[:-1], list(times)[1:], strict=True))

    def _supported_label(self, t_ns: int, failsafe: bool, blackout: bool) -> str:
        """The best label the evidence at t_ns supports, given the label shown now (the
        satellite anchor is kept for `anchored_hold_s`, but entered only on a stream)."""
        cfg = self.config
        if failsafe:
            return SourceLabel.NO_FIX
        if blackout:
            return SourceLabel.DEAD_RECKONED  # a blackout overrides a still-young anchor
        if self._label == SourceLabel.SATELLITE_ANCHORED:
            if self._anchor_age_s(t_ns) <= cfg.anchored_hold_s:
                return SourceLabel.SATELLITE_ANCHORED
        elif self._anchors_flow(t_ns):
            return SourceLabel.SATELLITE_ANCHORED
        if self._t_last_odometry_ns is not None \
                and (t_ns - self._t_last_odometry_ns) * 1e-9 <= cfg.anchored_max_age_s:
            return SourceLabel.VISUAL_PROPAGATED
        return SourceLabel.DEAD_RECKONED

    def _next_label(self, t_ns: int, failsafe: bool, blackout: bool) -> str:
        """The label to show at t_ns: a worse one at once (N8: dead_reckoned with the first
        blackout frame, no_fix with the failsafe); a better one once the evidence has
        supported it (or better) for `label_upgrade_after_s` without a break. Leaving the
        failsafe goes to dead_reckoned at once (no_fix must not outlive the failsafe)."""
        supported = self._supported_label(t_ns, failsafe, blackout)
        rank = _LABEL_RANK[supported]
        for label, r in _LABEL_RANK.items():  # since when the evidence supports >= label
            if rank >= r:
                self._supported_since_ns.setdefault(label, t_ns)
            else:
                self._supported_since_ns.pop(label, None)
        current = self._label
        if current == SourceLabel.NO_FIX and not failsafe:
            return SourceLabel.DEAD_RECKONED
        if rank <= _LABEL_RANK[current]:
            return supported
        wait_ns = self.config.label_upgrade_after_s * 1e9
        best = current
        for label, since in self._supported_since_ns.items():
            if _LABEL_RANK[label] > _LABEL_RANK[best] and t_ns - since >= wait_ns:
                best = label
        return best

    def _maybe_request_hint(self, t_ns: int, est: NavEstimate, r95: float) -> None:
        """HintRequested when registration keeps failing or the radius is too wide (see the
        module doc), at most every `hint_repeat_s` while it lasts."""
        cfg = self.config
        failing = (self._frames_without_fix >= cfg.hint_after_frames
                   and self._t_first_failure_ns is not None
                   and self._t_last_failure_ns is not None
                   and (self._t_last_failure_ns - self._t_first_failure_ns) * 1e-9
                   >= cfg.hint_after_s)
        wide = math.isfinite(r95) and r95 > cfg.hint_radius95_m
        if not (failing or wide) or (
                self._t_hint_requested_ns is not None
                and (t_ns - self._t_hint_requested_ns) * 1e-9 < cfg.hint_repeat_s):
            return
        self._t_hint_requested_ns = t_ns
        t_nofix = self._t_last_fix_ns if self._t_last_fix_ns is not None else self._t_start_ns
        lat, lon, _ = self.frame.ned_to_lla(est.p_ned_m)
        self._emit(HintRequested(t_ns, self._frames_without_fix, (t_ns - t_nofix) * 1e-9,
                                 float(lat), float(lon), r95,
                                 "registration failing" if failing else "radius"))

    def _watch(self, t_ns: int, valid: bool, reason: str) -> None:
        if valid:
            self._t_last_valid_ns = t_ns
            if self._no_estimate_said:
                self._no_estimate_said = False
                self._emit(EstimateResumed(t_ns))
            return
        silent_s = (t_ns - self._t_last_valid_ns) * 1e-9
        if silent_s >= self.config.no_estimate_after_s and not self._no_estimate_said:
            self._no_estimate_said = True
            self._emit(NoEstimate(t_ns, silent_s, reason or "no output"))

    def watchdog(self, t_now_ns: int) -> None:
        """Call from the output scheduler: notices when no usable estimate has been
        produced for `no_estimate_after_s`, even if nothing else calls in."""
        self._watch(t_now_ns, False, "no solution computed")

    # ------------------------------------------------------------------ output
    def solution(self, t_ns: int) -> NavSolution:
        """The real-time solution at t_ns (≥ the backend time: moved along the velocity, its
        covariance grown accordingly; more than 1 s ahead it is a no-fix)."""
        est = self.backend.estimate()
        label, failsafe, _ = self._update_status(t_ns, est)
        dt = (t_ns - est.t_ns) * 1e-9
        p, P = est.p_ned_m, est.cov_p_ned_m2
        if 0.0 < dt <= 1.0:
            p = p + est.v_ned_mps * dt
            C = est.cov_pv_ned
            P = P + dt * (C + C.T) + est.cov_v_ned_m2s2 * dt * dt
        elif -1.0 <= dt < 0.0:
            p = p + est.v_ned_mps * dt  # asked slightly in the past: keep the (larger) P
        elif dt > 1.0 and not failsafe:
            failsafe, label = True, SourceLabel.NO_FIX
            self._watch(t_ns, False, f"no IMU for {dt:.1f} s")
        if self._gnss_in_use(t_ns):
            P = P.copy()
            P[:2, :2] += self.reference.doubt_cov()  # what a pull-off may have dragged
        lat, lon, alt = self.frame.ned_to_lla(p)
        R = quat_to_R(est.q_body_to_ned)
        return NavSolution(
            t_ns=t_ns, lat_deg=float(lat), lon_deg=float(lon), alt_m=float(alt),
            v_ned_mps=est.v_ned_mps.copy(), cov_p_ned_m2=P.copy(),
            cov_v_ned_m2s2=est.cov_v_ned_m2s2.copy(), yaw_rad=float(math.atan2(R[1, 0], R[0, 0])),
            label=label, anchor_age_s=self._anchor_age_s(t_ns),
            gnss_trusted=self.gnss_gate.trusted, failsafe=failsafe)

    def search_prior(self) -> SearchPrior:
        """Where registration should search for the next frame (see SearchPrior)."""
        est = self.backend.estimate()
        lat, lon, _ = self.frame.ned_to_lla(est.p_ned_m)
        r95 = radius95_m(est.cov_p_ned_m2[:2, :2]) if not est.lost else math.inf
        return SearchPrior(float(lat), float(lon), r95, not (est.lost or self._failsafe))

    @property
    def label(self) -> str:
        return self._label

    @property
    def failsafe(self) -> bool:
        return self._failsafe

