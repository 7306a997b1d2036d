"""The navigation core: sensors in, `NavSolution`s and integrity events out.

One `Navigator` is what both the live program (`terrafix fly`) and the offline replay drive:
they feed it the same time-ordered inputs (IMU, FC attitude, barometer, GNSS, camera frames,
operator hints) and take its outputs; it does no I/O of its own (no sockets, no files, no
clocks other than the sample times), so a replay is the flight, minus the wires.

Per input:
- IMU: propagates the estimator (through the integrity layer).
- FC attitude: kept in a short buffer (frames need the attitude *at their capture time*,
  interpolated), and used as heading aiding by the estimator.
- barometer / GNSS: straight to the integrity layer (GNSS trust gate, failsafes).
- camera frame: the capture time is marked in the estimator at once (or earlier, by a
  `FrameCaptured` announcement in time order, after which the image itself may arrive later
  than newer samples: decoding under load must not cost the frame); the frame is processed
  as soon as an attitude sample at or after its capture time is available: visual odometry on
  every frame, registration (the absolute fix) on the frames the `RegistrationPolicy` picks,
  each measurement through the gated updates, then the frame's verdict (blackout or not)
  to the integrity layer. Frames are processed one by one as a stream, never batched.
- output ticks: every 1/output_rate_hz on the sample clock, the IMU-propagated solution.

Why registration is not run on every frame: one registration costs ~0.3-0.8 s of CPU on the
reference machine, odometry ~20 ms. While the estimate is confident (small 95% radius, recent
anchor) odometry + IMU hold it to well under a metre per second, so a fix every
`anchor_interval_s` keeps it anchored; when it is not confident, every frame is registered.

Startup (REQUIREMENTS N10): the state is initialised from the first trusted GNSS solution if
there is one (the FC's own trusted state), otherwise from the take-off origin (σ 5 m / 10 m)
at the barometric height; IMU samples before that are not used.
"""

from __future__ import annotations

import logging
import math
import time
import typing
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from terrafix.camera import Extrinsics, Intrinsics
from terrafix.config_files import load_toml_config, validate_config
from terrafix.estimation.backend import make_backend
from terrafix.estimation.config import EstimationConfig
from terrafix.estimation.events import NavEvent
from terrafix.estimation.integrity import IntegrityMonitor
from terrafix.estimation.outputs import SmoothedState, UpdateReport
from terrafix.estimation.warm_start import InitialState, attitude_prior
from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import R_to_quat, euler_to_R_body_to_ned, quat_slerp, quat_to_R
from terrafix.measurements import (
    AbsoluteFix,
    AttitudeSample,
    BaroSample,
    CameraFrame,
    FrameCaptured,
    GnssSample,
    ImuSample,
    NavSolution,
    OdometryDelta,
)
from terrafix.navigation.attitude import OdometryAttitude, OdometryAttitudeConfig
from terrafix.navigation.heading_calibration import (
    HeadingCalibrationConfig,
    OdometryHeadingCalibration,
)
from terrafix.navigation.registration_runner import (
    InlineRegistration,
    RegistrationJob,
    RegistrationRunner,
)
from terrafix.recorder.schemas import dataclass_schema, doc, one_of_schema, record_of
from terrafix.vision.odometry import OdometryConfig, VisualOdometry
from terrafix.vision.registration import RegistrationResult, VisualPositioner, VpsConfig

log = logging.getLogger(__name__)


GNSS_REFERENCE_LAG_S = 5.0
"""Trusted GNSS samples reach the odometry calibration this late (see
`Navigator._release_gnss_references`)."""


class NavigatorError(ValueError):
    """Bad navigator configuration or input, with the offending value."""


class _Cfg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegistrationPolicy(_Cfg):
    """Which frames are registered against the map (the expensive step)."""

    enabled: bool = True
    anchor_interval_s: float = Field(1.5, ge=0.0)
    """While confident, register a frame only when the last accepted fix is at least this
    old (0: every frame)."""
    retry_interval_s: float = Field(0.6, ge=0.0)
    """While confident, after a registration that gave no fix, wait at least this long before
    the next attempt (failures come in runs over featureless ground; each costs as much as
    a success)."""
    confident_radius95_m: float = Field(30.0, gt=0)
    """The estimate counts as confident below this 95% horizontal radius (and not in
    failsafe); otherwise every frame with texture is registered."""
    skip_textureless: bool = True
    """Frames the odometry found without texture (cloud, black lens) are not registered."""
    error_correlation_m: float = Field(200.0, ge=0)
    """Fixes of the same patch of ground share most of their error (the map and the world
    disagree locally by a metre or two, the same way for every frame that sees that patch:
    consecutive fixes correlate at 0.7-0.8 on the development flight). Each fix's covariance
    is multiplied by the number of fused fixes within this distance (itself included), so
    that averaging them cannot claim more than one of them knows. 0: independent fixes."""


class StartConfig(_Cfg):
    """Initial state (REQUIREMENTS N10)."""

    from_gnss: bool = True
    """Start from the first GNSS solution when the GNSS is trusted at start and not flagged."""
    sigma_h_m: float = Field(5.0, gt=0)
    sigma_v_m: float = Field(10.0, gt=0)
    sigma_vel_no_gnss_mps: float = Field(15.0, gt=0)
    """Velocity prior without GNSS (the speed is known, the direction only from the FC yaw)."""
    airspeed_mps: float = Field(18.0, ge=0)
    """Expected speed along the FC heading used as the velocity prior without GNSS."""
    sigma_roll_pitch_deg: float = Field(2.0, gt=0)
    sigma_yaw_deg: float = Field(10.0, gt=0)


class NavigatorConfig(_Cfg):
    """The navigation config (TOML). Every value in force is logged at start-up."""

    output_rate_hz: float = Field(10.0, ge=1.0, le=50.0)
    estimation: EstimationConfig = EstimationConfig()
    odometry_enabled: bool = True
    odometry: OdometryConfig = OdometryConfig()
    heading_calibration: HeadingCalibrationConfig = HeadingCalibrationConfig()
    registration: RegistrationPolicy = RegistrationPolicy()
    vps: VpsConfig = VpsConfig()
    start: StartConfig = StartConfig()
    attitude_wait_s: float = Field(0.1, gt=0)
    """A frame waits at most this long for an attitude sample after its capture time before
    it is processed with the latest attitude."""
    attitude_history_s: float = Field(3.0, gt=0)
    odometry_attitude: OdometryAttitudeConfig = OdometryAttitudeConfig()
    """The attitude the odometry projects its frames with (navigation.attitude): tilt from the FC,
    heading from the gyro and the images."""

    @property
    def backend(self) -> str:
        return self.estimation.estimator.backend

    def with_backend(self, backend: str) -> NavigatorConfig:
        """A copy with the estimator backend replaced ("eskf" | "isam2")."""
        if backend not in ("eskf", "isam2"):
            raise NavigatorError(f"backend must be 'eskf' or 'isam2', got {backend!r}")
        est = self.estimation.estimator.model_copy(update={"backend": backend})
        return self.model_copy(update={
            "estimation": self.estimation.model_copy(update={"estimator": est})})

    @staticmethod
    def from_toml(path: str | Path) -> NavigatorConfig:
        return load_toml_config(NavigatorConfig, path, "navigation config", NavigatorError)

    @staticmethod
    def from_dict(data: dict[str, Any], source: str = "<dict>") -> NavigatorConfig:
        return validate_config(NavigatorConfig, data, source, "navigation config",
                               NavigatorError)


@dataclass(frozen=True, slots=True)
class FlightContext:
    """What the navigator must know about this flight and airframe.

    frame: the flight's NED frame (origin = take-off point). ground_alt_m: altitude of the
    (flat) ground, m AMSL. intrinsics: nav camera at processing resolution; extrinsics:
    camera-to-body calibration.
    """

    frame: LocalFrame
    ground_alt_m: float
    intrinsics: Intrinsics
    extrinsics: Extrinsics


@dataclass(frozen=True, slots=True)
class OperatorHint:
    """A re-localisation hint (RELOC:lat,lon,radius), radius read as a 95% bound."""

    t_ns: int
    lat_deg: float
    lon_deg: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class FrameReport:
    """What happened to one camera frame: its odometry, its registration against the map
    and the verdict told to the integrity layer (recorder, evaluation).

    vo: the odometry delta (None for a reference frame); vo_update: its estimator report.
    registered: registration was attempted; fix_reason: why it was rejected ("" if accepted);
    fix_lat/lon_deg: the fix (NaN if none); fix_update: the estimator's report on the fix.
    blackout: the verdict told to the integrity layer. vo_ms / registration_ms: CPU time.
    """

    t_ns: int = field(metadata=doc("capture time on the navigator's sample clock"))
    index: int = field(metadata=doc("frame number"))
    vo_tracking: bool | None = field(metadata=doc(
        "odometry tracked the previous frame (null: a reference frame, no odometry)"))
    vo_reason: str = field(metadata=doc("why odometry lost track ('' if it did not)"))
    vo_n_tracks: int = field(metadata=doc("feature tracks kept"))
    vo_accepted: bool | None = field(metadata=doc(
        "the estimator accepted the odometry delta (null: none was offered)"))
    registered: bool = field(metadata=doc("registration against the map was attempted"))
    fix_accepted_by_vision: bool = field(metadata=doc("registration produced a fix"))
    fix_reason: str = field(metadata=doc("why there is no fused fix ('' if fused)"))
    fix_lat_deg: float = field(metadata=doc("WGS84 latitude of the fix (null: no fix)"))
    fix_lon_deg: float = field(metadata=doc("WGS84 longitude of the fix (null: no fix)"))
    fix_cov_ne_m2: np.ndarray | None = field(metadata=doc(
        "horizontal covariance of the fix, north-east (null: no fix)", shape=(2, 2)))
    fix_fused: bool | None = field(metadata=doc(
        "the estimator fused the fix (null: no fix offered)"))
    fix_nis: float = field(metadata=doc("normalised innovation squared of the fix", unit=""))
    blackout: bool = field(metadata=doc("verdict: no usable ground texture and no fix"))
    vo_ms: float = field(metadata=doc("odometry CPU time"))
    registration_ms: float = field(metadata=doc("registration wall time"))

    def record(self) -> dict[str, Any]:
        """A JSON-able dict (kind "frame"), described by FRAME_REPORT_SCHEMA."""
        return {"kind": "frame", **record_of(self, _FRAME_RECORD_NAMES)}


_FRAME_RECORD_NAMES = {"fix_lat_deg": "lat_deg", "fix_lon_deg": "lon_deg"}

FRAME_REPORT_SCHEMA = dataclass_schema(
    FrameReport, renames=_FRAME_RECORD_NAMES,
    extra={"kind": {"const": "frame", "description": "record kind"}})
"""/nav/frame (and the frame records of a replay's events.jsonl)."""


def event_record(ev: NavEvent) -> dict[str, Any]:
    """An integrity event as a JSON-able dict with its `kind` (class name) and status text
    (described by NAV_EVENT_SCHEMA)."""
    d: dict[str, Any] = {"kind": type(ev).__name__}
    d.update(record_of(ev))
    d["severity"] = ev.severity
    d["mandatory"] = ev.MANDATORY
    d["statustext"] = ev.statustext()
    return d


def _event_schema(cls: type) -> dict[str, Any]:
    return dataclass_schema(cls, extra={
        "kind": {"const": cls.__name__, "description": "event class"},
        "severity": {"const": cls.severity,  # type: ignore[attr-defined]
                     "description": "MAVLink severity name of its STATUSTEXT"},
        "mandatory": {"const": cls.MANDATORY,  # type: ignore[attr-defined]
                      "description": "must reach the ground station even when rate-limited"},
        "statustext": {"type": "string", "maxLength": 50,
                       "description": "the STATUSTEXT line sent to the ground station"}})


NAV_EVENT_SCHEMA = one_of_schema(
    "terrafix.NavEvent",
    "An integrity event (estimation.events): GNSS trust, spoof rejections, labels, "
    "failsafes, hints, resets. `kind` names the event class.",
    [_event_schema(cls) for cls in typing.get_args(NavEvent)])
"""/nav/event (and the event records of a replay's events.jsonl)."""


@dataclass(slots=True)
class NavigatorStats:
    """Counters of a run (for run.json and the benchmark)."""

    frames: int = 0
    vo_tracking: int = 0
    vo_accepted: int = 0
    registrations: int = 0
    fixes_from_vision: int = 0
    fixes_fused: int = 0
    solutions: int = 0
    vo_ms_total: float = 0.0
    registration_ms_total: float = 0.0
    registrations_skipped_busy: int = 0
    odometry_heading_updates: int = 0
    """Frame pairs whose measured heading change went into the odometry's heading."""
    odometry_heading_resets: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "vo_tracking": self.vo_tracking,
                "vo_accepted": self.vo_accepted, "registrations": self.registrations,
                "fixes_from_vision": self.fixes_from_vision, "fixes_fused": self.fixes_fused,
                "solutions": self.solutions,
                "vo_ms_mean": self.vo_ms_total / max(self.frames, 1),
                "registration_ms_mean": self.registration_ms_total / max(self.registrations, 1),
                "registrations_skipped_busy": self.registrations_skipped_busy,
                "odometry_heading_updates": self.odometry_heading_updates,
                "odometry_heading_resets": self.odometry_heading_resets,
                "registration_reject_reasons": dict(sorted(self.reasons.items()))}


@dataclass(slots=True)
class _FrameWork:
    """A frame between its odometry and the end of its registration (if any)."""

    t_ns: int
    index: int
    delta: OdometryDelta | None
    vo_rep: UpdateReport | None
    vo_ms: float
    registered: bool = False
    done: bool = False
    verdict_given: bool = False
    blackout: bool = False
    result: RegistrationResult | None = None
    fix_rep: UpdateReport | None = None
    registration_ms: float = 0.0


def _no_locate(*_: object) -> RegistrationResult:
    raise NavigatorError("registration requested without a visual positioner")


def _fix_reason(result: RegistrationResult | None, rep: UpdateReport | None) -> str:
    if result is None:
        return ""
    if result.fix is None:
        return result.reason
    return "" if rep is None or rep.accepted else rep.reason


class Navigator:
    """Feed time-ordered inputs with `feed`; take `drain_solutions()`, `drain_events()`,
    `drain_frame_reports()` and `drain_smoothed()` as often as convenient."""

    def __init__(self, config: NavigatorConfig, context: FlightContext,
                 positioner: VisualPositioner | None = None,
                 runner: RegistrationRunner | None = None) -> None:
        """positioner: the visual positioner (None: no registration). runner: where its
        matches run (default: inline, as a replay wants; the live program passes a
        `ThreadedRegistration`)."""
        self.config = config
        self.context = context
        self.positioner = positioner
        self.runner: RegistrationRunner = runner if runner is not None else \
            InlineRegistration(positioner.locate if positioner is not None else _no_locate)
        self._can_register = positioner is not None or runner is not None
        self._last_delta: OdometryDelta | None = None
        self._in_flight: dict[int, _FrameWork] = {}
        self._t_last_verdict_ns = -(1 << 62)
        self.vo = VisualOdometry(context.intrinsics, context.extrinsics, config.odometry) \
            if config.odometry_enabled else None
        self.integrity: IntegrityMonitor | None = None
        self.stats = NavigatorStats()
        self._period_ns = round(1e9 / config.output_rate_hz)
        self._next_tick_ns: int | None = None
        self._attitude: deque[tuple[int, np.ndarray, AttitudeSample]] = deque()
        self._heading = OdometryHeadingCalibration(config.heading_calibration)
        self._gnss_refs: deque[tuple[int, np.ndarray, float]] = deque()
        self._t_last_gnss_ref_ns = -(10**18)
        self._gnss_vel_refs: deque[tuple[int, int, np.ndarray, float]] = deque()
        """(t0_ns, t1_ns, Doppler displacement (2,), per-axis variance) windows, queued
        like _gnss_refs."""
        self._vel_window: tuple[int, int, np.ndarray, np.ndarray] | None = None
        """(t0_ns, t_last_ns, v_last (2,), displacement so far (2,)) of the open window."""
        self._cf = OdometryAttitude(config.odometry_attitude)
        self._heading_var_reported = 0.0
        self._last_baro: BaroSample | None = None
        self._last_gnss: GnssSample | None = None
        self._pending: deque[CameraFrame] = deque()
        self._captured: dict[int, tuple[int, bool]] = {}
        """Announced frames: index -> (capture t_ns, marked in the estimator)."""
        self._solutions: list[NavSolution] = []
        self._events: list[NavEvent] = []
        self._reports: list[FrameReport] = []
        self._smoothed: list[SmoothedState] = []
        self._t_last_fix_ns: int | None = None
        self._t_last_attempt_ns: int | None = None
        self._recent_fixes: deque[tuple[int, np.ndarray]] = deque()
        self._t_ns = -1

    # ------------------------------------------------------------------ outputs
    def drain_solutions(self) -> list[NavSolution]:
        out, self._solutions = self._solutions, []
        return out

    def drain_events(self) -> list[NavEvent]:
        if self.integrity is not None:
            self._events.extend(self.integrity.drain_events())
        out, self._events = self._events, []
        return out

    def drain_frame_reports(self) -> list[FrameReport]:
        out, self._reports = self._reports, []
        return out

    def drain_smoothed(self) -> list[SmoothedState]:
        if self.integrity is not None:
            self._smoothed.extend(self.integrity.backend.drain_smoothed())
        out, self._smoothed = self._smoothed, []
        return out

    @property
    def initialised(self) -> bool:
        return self.integrity is not None

    def current_solution(self) -> NavSolution | None:
        """The solution at the newest input's time, with every measurement fused so far (the
        live program hands this to the GPS_INPUT sender between output ticks, so a fix reaches
        the autopilot as soon as it is fused, not at the next tick); None before
        initialisation. Not an output tick: it is not counted or recorded as one."""
        if self.integrity is None:
            return None
        return self._with_heading(self.integrity.solution(
            max(self._t_ns, self.integrity.backend.estimate().t_ns)))

    def _with_heading(self, sol: NavSolution) -> NavSolution:
        """The solution with the navigator's own heading (NavSolution.heading_rad): the
        odometry attitude's yaw at the solution's time turned by the heading calibration's
        offset (ψ_true = ψ_odometry + θ: the angle that turns the odometry's track onto the
        absolute one) with that offset's variance, which already holds what the gyro and the
        images added since (`_account_heading_noise`). Unchanged before the first FC
        attitude."""
        R = self._cf.at(sol.t_ns)
        if R is None:
            return sol
        yaw = math.remainder(math.atan2(R[1, 0], R[0, 0]) + self._heading.theta_rad,
                             2.0 * math.pi)
        return replace(sol, heading_rad=yaw, heading_var_rad2=self._heading.var_rad2)

    # ------------------------------------------------------------------ input
    @property
    def late_gnss_limit_ns(self) -> int:
        """How much older than the newest input a GNSS sample may be and still be used."""
        return int(self.config.estimation.estimator.max_extrapolation_s * 1e9)

    def _on_gnss(self, sample: GnssSample) -> None:
        self._last_gnss = sample
        if self.integrity is not None:
            self.integrity.on_gnss(sample)
            self._maybe_gnss_reference(sample)

    def feed(self, sample: object) -> None:
        """One input, in time order: ImuSample, AttitudeSample, BaroSample, GnssSample,
        CameraFrame or OperatorHint (anything with t_ns, lat_deg, lon_deg, radius_m)."""
        known = (ImuSample, AttitudeSample, BaroSample, GnssSample, CameraFrame, FrameCaptured)
        if not isinstance(sample, known) and not all(
                hasattr(sample, a) for a in ("t_ns", "lat_deg", "lon_deg", "radius_m")):
            raise NavigatorError(f"unsupported input {type(sample).__name__}; expected "
                                 f"ImuSample, AttitudeSample, BaroSample, GnssSample, "
                                 f"FrameCaptured, CameraFrame or an operator hint")
        t = int(sample.t_ns)  # type: ignore[attr-defined]
        announced = self._captured.get(sample.index) if isinstance(sample, CameraFrame) \
            else None
        if announced is not None and announced[0] == t:
            # announced at its capture time (FrameCaptured): its image may come late; it is
            # dropped if the navigator could not mark it then (not initialised yet)
            del self._captured[sample.index]  # type: ignore[attr-defined]
            if announced[1]:
                self._pending.append(sample)  # type: ignore[arg-type]
                self._process_ready_frames(self._t_ns)
            return
        if t < self._t_ns:
            if isinstance(sample, GnssSample) and self._t_ns - t <= self.late_gnss_limit_ns:
                if self._last_gnss is not None and t <= self._last_gnss.t_ns:
                    return  # the same fix reported again (a stream faster than the receiver)
                # a receiver's report is stamped at its fix and reaches the companion after
                # the IMU samples of that instant (ArduPilot's GPS_RAW_INT: 100-250 ms): the
                # estimator and the GNSS-free reference take it at its own time (moved along
                # the velocity, or interpolated), so it is tested and fused where it was
                self._on_gnss(sample)
                return
            raise NavigatorError(f"inputs must come in time order: {type(sample).__name__} at "
                                 f"t_ns {t} after {self._t_ns}")
        self._t_ns = t
        self._emit_ticks_before(t)
        if self._in_flight:
            self._apply_registrations()
        if isinstance(sample, ImuSample):
            self._on_imu(sample)
        elif isinstance(sample, AttitudeSample):
            self._on_attitude(sample)
        elif isinstance(sample, BaroSample):
            self._last_baro = sample
            if self.integrity is not None:
                self.integrity.on_baro(sample)
        elif isinstance(sample, GnssSample):
            self._on_gnss(sample)
        elif isinstance(sample, CameraFrame):
            if self._mark_capture(t, sample.index):
                self._pending.append(sample)
        elif isinstance(sample, FrameCaptured):
            self._captured[sample.index] = (t, self._mark_capture(t, sample.index))
            while len(self._captured) > 2 * self.config.estimation.estimator.max_clones:
                    del self._captured[next(iter(self._captured))]  # images that never came
        elif self.integrity is not None:  # an operator hint
            self.integrity.on_hint(t, float(sample.lat_deg),  # type: ignore[attr-defined]
                                   float(sample.lon_deg),  # type: ignore[attr-defined]
                                   float(sample.radius_m))  # type: ignore[attr-defined]
        self._process_ready_frames(t)

    def flush(self, wait_s: float = 10.0) -> None:
        """End of input: process frames still waiting for their attitude, and fuse the
        registration still in flight (waiting up to wait_s for it)."""
        while self._pending:
            self._process_frame(self._pending.popleft())
        wait_idle = getattr(self.runner, "wait_idle", None)
        if self._in_flight and wait_idle is not None:
            wait_idle(wait_s)
        self._apply_registrations()

    def poll(self) -> None:
        """Fuse registrations that finished since the last input (the live program calls
        this while it waits for samples, so a fix is not held back until the next one)."""
        if self._in_flight:
            self._apply_registrations()

    def close(self) -> None:
        """Stop the registration runner (a match in flight is abandoned)."""
        self.runner.close()

    # ------------------------------------------------------------------ per input
    def _emit_ticks_before(self, t_ns: int) -> None:
        if self.integrity is None or self._next_tick_ns is None:
            return
        while self._next_tick_ns < t_ns:
            self._solutions.append(self._with_heading(self.integrity.solution(
                self._next_tick_ns)))
            self.stats.solutions += 1
            self._next_tick_ns += self._period_ns

    def _maybe_gnss_reference(self, g: GnssSample) -> None:
        """Trusted GNSS (gate open, not flagged, 3D fix), once a second, as a heading
        reference for the odometry (queued until the odometry track reaches its time)."""
        assert self.integrity is not None
        usable = (self.integrity.gnss_gate.trusted and not g.spoofing and not g.jamming
                  and g.fix_type >= 3 and math.isfinite(g.lat_deg))
        self._integrate_gnss_velocity(g, usable)
        if not usable or g.t_ns - self._t_last_gnss_ref_ns < 1_000_000_000:
            return
        self._t_last_gnss_ref_ns = g.t_ns
        p = np.asarray(self.context.frame.lla_to_ned(g.lat_deg, g.lon_deg, g.alt_m))[:2]
        s = max(g.h_acc_m, self.config.estimation.estimator.gnss_min_sigma_m)
        self._gnss_refs.append((g.t_ns, p, s * s))

    def _integrate_gnss_velocity(self, g: GnssSample, usable: bool) -> None:
        """Trusted receiver velocities integrated (trapezoid) into windows of the
        calibration's `velocity_window_s`, queued as Doppler displacements; a sample that
        is not usable, or a gap over 0.5 s, ends the window unfinished."""
        v = np.asarray(g.v_ned_mps, dtype=np.float64)[:2]
        w = self._vel_window
        if not usable or not np.all(np.isfinite(v)):
            self._vel_window = None
            return
        if w is None or g.t_ns <= w[1] or g.t_ns - w[1] > 500_000_000:
            self._vel_window = (g.t_ns, g.t_ns, v, np.zeros(2))
            return
        t0, t_last, v_last, d = w
        d = d + 0.5 * (v_last + v) * ((g.t_ns - t_last) * 1e-9)
        cal = self._heading.config
        window_s = (g.t_ns - t0) * 1e-9
        if window_s >= cal.velocity_window_s:
            n = max(1.0, window_s / max((g.t_ns - t_last) * 1e-9, 1e-3))
            var = cal.gnss_velocity_sigma_mps ** 2 * window_s * window_s / n
            self._gnss_vel_refs.append((t0, g.t_ns, d, var))
            self._vel_window = (g.t_ns, g.t_ns, v, np.zeros(2))
        else:
            self._vel_window = (t0, g.t_ns, v, d)

    def _release_gnss_references(self, t_ns: int) -> None:
        """Hand the calibration the queued GNSS references that are GNSS_REFERENCE_LAG_S old,
        while the gate still trusts the GNSS and the GNSS-free reference's sequential test
        is quiet; drop them otherwise. A pull-off the tests have not yet caught must not
        turn the odometry towards itself (the reference runs on these deltas).

        Until the calibration's heading is informative enough to be applied, the references
        are handed over whatever the sequential test says: before that the test's excess is
        mostly the FC's own heading error, and one beyond the allowance (one sigma of the
        prior) makes the statistic grow on a straight leg. Starving the calibration then
        kept it from learning the very error the test was seeing, until the gate closed on
        genuine GNSS (development seed 204, FC heading 5.3 deg off: closed at 32.8 s, the
        GNSS lost for the rest of the flight; dead reckoning from 30 s on the same seed
        drifted 6-7 % of the distance). The price is that a pull-off in the first seconds
        of a flight, before the calibration has settled, can be taken in part for heading."""
        assert self.integrity is not None
        lag = round(GNSS_REFERENCE_LAG_S * 1e9)
        ref = self.integrity.reference
        vouched = (self.integrity.gnss_gate.trusted
                   and (ref.cusum.statistic_m < 0.25 * ref.cusum.threshold_m
                        or not self._heading.heading_applied))
        while self._gnss_refs and self._gnss_refs[0][0] <= t_ns - lag:
            r = self._gnss_refs.popleft()
            if vouched:
                self._heading.add_reference(*r)
        while self._gnss_vel_refs and self._gnss_vel_refs[0][1] <= t_ns - lag:
            w = self._gnss_vel_refs.popleft()
            if vouched:
                self._heading.add_velocity_reference(*w)
        if not vouched:
            self._gnss_refs.clear()
            self._gnss_vel_refs.clear()
            self._vel_window = None

    def _on_imu(self, imu: ImuSample) -> None:
        self._cf.on_gyro(imu.t_ns, imu.gyro_body_radps)
        if self.integrity is None:
            self._try_initialise(imu.t_ns)
            if self.integrity is None:
                return
        self.integrity.on_imu(imu)

    def _on_attitude(self, att: AttitudeSample) -> None:
        R = euler_to_R_body_to_ned(att.roll_rad, att.pitch_rad, att.yaw_rad)
        self._attitude.append((att.t_ns, R, att))
        self._cf.on_fc(att.t_ns, R)
        horizon = att.t_ns - round(self.config.attitude_history_s * 1e9)
        while len(self._attitude) > 2 and self._attitude[0][0] < horizon:
            self._attitude.popleft()
        if self.integrity is not None:
            self.integrity.on_attitude(att)

    def _mark_capture(self, t_ns: int, index: int) -> bool:
        """Clone the state at a frame's capture time; False before initialisation (nothing
        to anchor the frame to yet: it is dropped)."""
        if self.integrity is None:
            return False
        self.integrity.on_frame_captured(t_ns)
        return True

    def _process_ready_frames(self, t_now_ns: int) -> None:
        wait = round(self.config.attitude_wait_s * 1e9)
        while self._pending:
            f = self._pending[0]
            att_ready = bool(self._attitude) and self._attitude[-1][0] >= f.t_ns
            if not att_ready and t_now_ns < f.t_ns + wait:
                return
            self._pending.popleft()
            self._process_frame(f)

    # ------------------------------------------------------------------ initialisation
    def _try_initialise(self, t_ns: int) -> None:
        if not self._attitude or self._last_baro is None:
            return
        att = self._attitude[-1][2]
        cfg = self.config.start
        frame = self.context.frame
        integ_cfg = self.config.estimation.integrity
        g = self._last_gnss
        use_gnss = (cfg.from_gnss and integ_cfg.gnss_trusted_at_start and g is not None
                    and g.fix_type >= 3 and not g.spoofing and not g.jamming
                    and math.isfinite(g.lat_deg) and (t_ns - g.t_ns) < 1_000_000_000)
        q, cov_att = attitude_prior(att, math.radians(cfg.sigma_roll_pitch_deg),
                                    math.radians(cfg.sigma_yaw_deg))
        if use_gnss:
            assert g is not None
            p = np.asarray(frame.lla_to_ned(g.lat_deg, g.lon_deg, g.alt_m), dtype=np.float64)
            sh = max(g.h_acc_m, self.config.estimation.estimator.gnss_min_sigma_m)
            sv = max(g.v_acc_m, self.config.estimation.estimator.gnss_min_sigma_m)
            v = np.asarray(g.v_ned_mps, dtype=np.float64).copy()
            cov_p = np.diag([sh * sh, sh * sh, sv * sv])
            cov_v = np.eye(3) * self.config.estimation.estimator.gnss_velocity_sigma_mps ** 2
            if not math.isfinite(v[2]):
                # GPS_RAW_INT carries no climb rate: level flight assumed, with a loose sigma
                v[2] = 0.0
                cov_v[2, 2] = max(cov_v[2, 2], 3.0 ** 2)
            how = "first GNSS solution"
        else:
            height = self._last_baro.alt_m - frame.alt0_m
            p = np.array([0.0, 0.0, -height])
            yaw = att.yaw_rad
            v = cfg.airspeed_mps * np.array([math.cos(yaw), math.sin(yaw), 0.0])
            cov_p = np.diag([cfg.sigma_h_m ** 2, cfg.sigma_h_m ** 2, cfg.sigma_v_m ** 2])
            cov_v = np.eye(3) * cfg.sigma_vel_no_gnss_mps ** 2
            how = "take-off origin"
        init = InitialState(t_ns, p, v, q, cov_p, cov_v, cov_att)
        backend = make_backend(self.config.estimation.estimator, frame, init)
        self.integrity = IntegrityMonitor(backend, integ_cfg,
                                          reference=self.config.estimation.gnss_reference)
        self._next_tick_ns = (t_ns // self._period_ns + 1) * self._period_ns
        log.info("navigator initialised at t=%.3f s from the %s (backend %s)", t_ns * 1e-9, how,
                 self.config.backend)

    # ------------------------------------------------------------------ frames
    def _attitude_at(self, t_ns: int) -> np.ndarray:
        """FC attitude R_body_to_ned at t_ns, interpolated (slerp) between the samples that
        bracket it, else the nearest sample."""
        buf = self._attitude
        if not buf:
            raise NavigatorError("no FC attitude received: cannot process a frame")
        prev = nxt = None
        for t, R, _ in reversed(buf):
            if t >= t_ns:
                nxt = (t, R)
            else:
                prev = (t, R)
                break
        if prev is None:
            return buf[0][1] if nxt is None else nxt[1]
        if nxt is None:
            return prev[1]
        a = (t_ns - prev[0]) / max(nxt[0] - prev[0], 1)
        return quat_to_R(quat_slerp(R_to_quat(prev[1]), R_to_quat(nxt[1]), a))

    def _height(self) -> tuple[float, float, float]:
        """(altitude AMSL, height above ground, its variance) of the current estimate."""
        assert self.integrity is not None
        est = self.integrity.backend.estimate()
        alt = self.context.frame.alt0_m - float(est.p_ned_m[2])
        return alt, alt - self.context.ground_alt_m, float(est.cov_p_ned_m2[2, 2])

    def _should_register(self, t_ns: int, delta: OdometryDelta | None) -> bool:
        pol = self.config.registration
        if not pol.enabled or not self._can_register or self.integrity is None:
            return False
        if pol.skip_textureless and delta is not None and not delta.tracking \
                and delta.reason.startswith("no texture"):
            return False
        prior = self.integrity.search_prior()
        confident = prior.confident and prior.radius95_m <= pol.confident_radius95_m
        if not confident or self._t_last_fix_ns is None:
            return True
        if self._t_last_attempt_ns is not None and \
                (t_ns - self._t_last_attempt_ns) * 1e-9 < pol.retry_interval_s:
            return False
        return (t_ns - self._t_last_fix_ns) * 1e-9 >= pol.anchor_interval_s

    def _decorrelated(self, fix: AbsoluteFix, p_ne: np.ndarray) -> AbsoluteFix:
        """The fix with its covariance scaled by the number of recent fused fixes that share
        its ground (see RegistrationPolicy.error_correlation_m)."""
        corr = self.config.registration.error_correlation_m
        if corr <= 0:
            return fix
        while self._recent_fixes and fix.t_ns - self._recent_fixes[0][0] > 120 * 10**9:
            self._recent_fixes.popleft()
        n = 1 + sum(1 for _, p in self._recent_fixes if np.linalg.norm(p - p_ne) < corr)
        return replace(fix, cov_ne_m2=np.asarray(fix.cov_ne_m2) * n)

    def _process_frame(self, frame: CameraFrame) -> None:
        """Odometry now; registration started (inline or on the worker); the frame's verdict
        to the integrity layer as soon as it no longer depends on a fix still in flight.

        With a concurrent runner the match is started before the odometry (both then run at
        once on a multi-core computer; the texture test uses the previous frame's odometry,
        since blackouts come in runs); inline, it runs after the odometry so that a replay
        is the same whatever the machine."""
        integ = self.integrity
        assert integ is not None
        self.stats.frames += 1
        R_fc = self._attitude_at(frame.t_ns)
        alt, height, var_h = self._height()
        est = integ.backend.estimate()
        work = _FrameWork(frame.t_ns, frame.index, None, None, 0.0)
        if self.runner.concurrent:
            self._maybe_register(work, frame, R_fc, alt, self._last_delta)
        delta: OdometryDelta | None = None
        vo_rep: UpdateReport | None = None
        t0 = time.perf_counter()
        if self.vo is not None and height > 1.0:
            ref = self.vo.reference_t_ns
            from_fc = self.config.odometry_attitude.relative_rotation == "fc"
            if from_fc:
                R_vo = R_fc
                R_ref = self._attitude_at(ref) if ref is not None else None
            else:
                R_vo = self._cf.at(frame.t_ns)
                R_ref = self._cf.at(ref) if ref is not None else None
            R_rel = None if R_vo is None or R_ref is None else R_ref.T @ R_vo
            # the FC's ATTITUDE difference errs like any FC attitude pair, not like the gyro
            axes = None if from_fc or R_vo is None else self._cf.tilt_axes_at(frame.t_ns)
            delta = self.vo.process(frame, R_fc if R_vo is None else R_vo, height, var_h,
                                    est.v_ned_mps, R_rel,
                                    self.vo.config.attitude_rel_sigma_rad if from_fc else None,
                                    axes)
            if delta is not None:
                self.stats.vo_tracking += int(delta.tracking)
                if delta.tracking and R_rel is not None and not from_fc:
                    st = self.vo.last_stats
                    self.stats.odometry_heading_updates += int(self._cf.on_visual_yaw(
                        delta.t_prev_ns, delta.t_ns, st.heading_error_rad,
                        st.heading_error_var_rad2))
                self._account_heading_noise(frame.t_ns)
                self._heading.add_delta(delta)
                self._release_gnss_references(frame.t_ns)
                if delta.tracking:
                    corrected = self._heading.correct(delta)
                    vo_rep = integ.on_odometry(corrected)
                    self.stats.vo_accepted += int(vo_rep.accepted)
                    integ.reference.on_odometry(
                        corrected.t_prev_ns, corrected.t_ns, corrected.delta_ne_m,
                        corrected.cov_ne_m2, self._heading.sigma_rad,
                        math.sqrt(self._heading.var_log_scale),
                        integ.backend.estimate().v_ned_mps[:2], corrected.tilt_error_ne_m)
        vo_ms = (time.perf_counter() - t0) * 1e3
        self.stats.vo_ms_total += vo_ms
        work.delta, work.vo_rep, work.vo_ms = delta, vo_rep, vo_ms
        self._last_delta = delta
        if not self.runner.concurrent:
            self._maybe_register(work, frame, R_fc, alt, delta)
        self._apply_registrations()
        if not work.registered or work.done or (delta is not None and delta.tracking):
            # the verdict does not wait for a fix: odometry tracking is not a blackout
            # whatever the fix says; an unregistered frame has no fix coming
            self._give_verdict(work)
        if not work.registered:
            self._report(work)

    def _account_heading_noise(self, t_ns: int) -> None:
        """Hand the heading calibration what the odometry's heading has gained in variance;
        when that makes it less certain than the FC's own heading, put it back on the FC's
        (rare: minutes of gyro without images)."""
        total = self._cf.heading_var_rad2(t_ns)
        self._heading.add_heading_noise(max(0.0, total - self._heading_var_reported))
        self._heading_var_reported = max(total, self._heading_var_reported)
        if self._heading.worse_than_prior:
            turned = self._cf.reset_yaw_to_fc()
            self._heading.reset_heading()
            self._heading_var_reported = self._cf.heading_var_rad2(t_ns)
            self.stats.odometry_heading_resets += 1
            log.info("odometry heading put back on the FC's (turned %.2f°): its integrated "
                     "uncertainty exceeded the FC heading's", math.degrees(turned))

    def _maybe_register(self, work: _FrameWork, frame: CameraFrame, R_fc: np.ndarray,
                        alt: float, delta: OdometryDelta | None) -> None:
        """Start the frame's match when the policy wants one and the runner is free."""
        assert self.integrity is not None
        if not self._should_register(frame.t_ns, delta):
            return
        prior = self.integrity.search_prior()
        pr = (prior.lat_deg, prior.lon_deg, prior.radius95_m) if prior.confident else None
        if self.runner.submit(RegistrationJob(frame, R_fc, alt, pr)):
            work.registered = True
            self._t_last_attempt_ns = frame.t_ns
            self.stats.registrations += 1
            self._in_flight[frame.index] = work
        else:
            self.stats.registrations_skipped_busy += 1

    def _apply_registrations(self) -> None:
        """Fuse the fixes the runner has finished (at their frames' capture times)."""
        integ = self.integrity
        if integ is None:
            return
        for done in self.runner.poll():
            work = self._in_flight.pop(done.job.frame.index, None)
            if work is None:
                continue
            work.done = True
            work.registration_ms = done.wall_ms
            self.stats.registration_ms_total += done.wall_ms
            result = done.result
            work.result = result
            if result is None:
                key = f"registration failed: {done.error}"[:40]
                self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
            elif result.fix is not None:
                self.stats.fixes_from_vision += 1
                f = result.fix
                p_fix = np.asarray(self.context.frame.lla_to_ned(
                    f.lat_deg, f.lon_deg, f.alt_m))[:2]
                work.fix_rep = integ.on_fix(self._decorrelated(f, p_fix))
                if work.fix_rep.accepted:
                    self.stats.fixes_fused += 1
                    if self._t_last_fix_ns is None or f.t_ns > self._t_last_fix_ns:
                        self._t_last_fix_ns = f.t_ns
                    self._recent_fixes.append((f.t_ns, p_fix))
                    self._heading.add_reference(
                        f.t_ns, p_fix, float(np.linalg.eigvalsh(f.cov_ne_m2)[-1]))
            else:
                key = result.reason.split(":")[0][:40]
                self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
            # an attempt that gave no fused fix counts towards a hint request; frames not
            # registered because the estimate is confident are never told (no failure)
            integ.on_registration(work.t_ns, fixed=work.fix_rep is not None
                                  and work.fix_rep.accepted)
            if not work.verdict_given:
                self._give_verdict(work)
            self._report(work)

    def _give_verdict(self, work: _FrameWork) -> None:
        """Tell the integrity layer the frame is complete: blackout when the odometry lost
        track and no fix was fused. A verdict that comes after a newer frame's is dropped
        (the newer one already said how the vision stands)."""
        assert self.integrity is not None
        work.verdict_given = True
        if work.t_ns < self._t_last_verdict_ns:
            return
        self._t_last_verdict_ns = work.t_ns
        fused_fix = work.fix_rep is not None and work.fix_rep.accepted
        work.blackout = (work.delta is not None and not work.delta.tracking and not fused_fix)
        self.integrity.on_frame(work.t_ns, blackout=work.blackout)

    def _report(self, work: _FrameWork) -> None:
        delta, result, fix_rep = work.delta, work.result, work.fix_rep
        fix = result.fix if result is not None else None
        self._reports.append(FrameReport(
            t_ns=work.t_ns, index=work.index,
            vo_tracking=None if delta is None else delta.tracking,
            vo_reason="" if delta is None else delta.reason,
            vo_n_tracks=0 if delta is None else delta.n_tracks,
            vo_accepted=None if work.vo_rep is None else work.vo_rep.accepted,
            registered=work.registered, fix_accepted_by_vision=fix is not None,
            fix_reason=_fix_reason(result, fix_rep),
            fix_lat_deg=fix.lat_deg if fix is not None else math.nan,
            fix_lon_deg=fix.lon_deg if fix is not None else math.nan,
            fix_cov_ne_m2=None if fix is None else np.asarray(fix.cov_ne_m2),
            fix_fused=None if fix_rep is None else fix_rep.accepted,
            fix_nis=math.nan if fix_rep is None else fix_rep.nis,
            blackout=work.blackout, vo_ms=work.vo_ms, registration_ms=work.registration_ms))
