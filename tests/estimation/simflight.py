"""Simulated flights (terrafix.sim models) and a replay driver for the estimation tests.

The simulator's trajectory, IMU (ICM-42688-P), FC attitude, barometer and GNSS (with attacks)
are used as they are; fixes and odometry are synthesised from the truth with realistic noise
(fix σ 2–5 m with its reported covariance, occasional 350 m outliers, registration latency),
because the vision pipeline is not what these tests measure. Frames are not rendered.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from terrafix.estimation.backend import make_backend
from terrafix.estimation.config import EstimatorConfig, IntegrityConfig
from terrafix.estimation.events import NavEvent
from terrafix.estimation.integrity import IntegrityMonitor
from terrafix.estimation.warm_start import InitialState, attitude_prior
from terrafix.geo.frames import LocalFrame
from terrafix.measurements import (
    AbsoluteFix,
    AttitudeSample,
    BaroSample,
    GnssSample,
    ImuSample,
    NavSolution,
    OdometryDelta,
)
from terrafix.sim.attitude import AttitudeErrorParams, simulate_attitude
from terrafix.sim.baro import BaroParams, simulate_baro
from terrafix.sim.gnss import GnssAttack, GnssParams, simulate_gnss
from terrafix.sim.imu import ImuParams, simulate_imu
from terrafix.sim.streams import AttitudeStream, BaroStream, GnssStream, ImuStream, TruthStream
from terrafix.sim.trajectory import FlightPlan, KinematicConfig, fly_kinematic

FRAME = LocalFrame(48.45, 35.05, 150.0)


@dataclass(frozen=True)
class SimFlight:
    truth: TruthStream
    imu: ImuStream
    attitude: AttitudeStream
    baro: BaroStream
    gnss: GnssStream
    frame: LocalFrame = FRAME

    def p_true(self, t_ns: int | np.ndarray) -> np.ndarray:
        t = np.atleast_1d(np.asarray(t_ns, dtype=np.float64))
        out = np.column_stack([np.interp(t, self.truth.t_ns.astype(np.float64),
                                         self.truth.p_ned_m[:, j]) for j in range(3)])
        return out[0] if np.ndim(t_ns) == 0 else out

    def v_true(self, t_ns: int) -> np.ndarray:
        t = float(t_ns)
        return np.array([np.interp(t, self.truth.t_ns.astype(np.float64),
                                   self.truth.v_ned_mps[:, j]) for j in range(3)])


@functools.lru_cache(maxsize=16)
def make_flight(seed: int, duration_s: float, attacks: tuple[GnssAttack, ...] = (),
                wind_ne: tuple[float, float] = (0.0, 0.0)) -> SimFlight:
    """A seeded flight over random waypoints (35° bank limit, turbulence), all sensors."""
    rng = np.random.default_rng(seed)
    wps = rng.uniform(-1500.0, 1500.0, (6, 2))
    plan = FlightPlan(wps, rng.uniform(150.0, 400.0, 6), start_heading_rad=rng.uniform(-3, 3))
    cfg = KinematicConfig(wind_ned_mps=(wind_ne[0], wind_ne[1], 0.0))
    truth = fly_kinematic(plan, duration_s, FRAME, rng, cfg)
    imu, _ = simulate_imu(truth, ImuParams(), rng)
    att = simulate_attitude(truth, AttitudeErrorParams(), rng)
    baro = simulate_baro(truth, BaroParams(), rng)
    gnss = simulate_gnss(truth, FRAME, GnssParams(), list(attacks), rng)
    return SimFlight(truth, imu, att, baro, gnss)


@dataclass(frozen=True)
class VisionPlan:
    """What the synthetic vision pipeline delivers.

    fixes_until_s: no fixes after this time (inf: always); fix_gaps: (t0, t1) spans without
    fixes; blackouts: (t0, t1) spans of total visual blackout (no fix, no odometry, frames
    flagged); outlier_rate: share of fixes 350 m off; latency_s: registration latency;
    odometry: deliver VO deltas; odo_sigma_frac: VO noise as a fraction of the displacement.
    """

    frame_rate_hz: float = 3.0
    fixes: bool = True
    fix_gaps: tuple[tuple[float, float], ...] = ()
    blackouts: tuple[tuple[float, float], ...] = ()
    outlier_rate: float = 0.02
    latency_s: float = 0.0
    odometry: bool = True
    odo_sigma_frac: float = 0.02
    odo_sigma_min_m: float = 0.2


@dataclass
class RunLog:
    """Per output tick: t, estimate, covariance, label, trust, failsafe and the truth."""

    t_ns: list[int] = field(default_factory=list)
    p_est: list[np.ndarray] = field(default_factory=list)
    p_true: list[np.ndarray] = field(default_factory=list)
    cov: list[np.ndarray] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    trusted: list[bool] = field(default_factory=list)
    failsafe: list[bool] = field(default_factory=list)
    events: list[NavEvent] = field(default_factory=list)
    fix_reports: list = field(default_factory=list)
    gnss_reports: list = field(default_factory=list)
    outliers: int = 0
    outliers_accepted: int = 0
    navigator: IntegrityMonitor | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = np.array(self.t_ns) * 1e-9
        err = np.array(self.p_est) - np.array(self.p_true)
        return t, err, np.array(self.cov)


def _in_spans(t_s: float, spans: tuple[tuple[float, float], ...]) -> bool:
    return any(a <= t_s < b for a, b in spans)


def initial_state(flight: SimFlight, rng: np.random.Generator, sigma_h: float = 5.0,
                  sigma_v: float = 10.0, sigma_vel: float = 0.5) -> InitialState:
    """Prior at the first IMU sample with errors drawn from its own covariance (an honest
    prior), attitude from the FC's first ATTITUDE."""
    t0 = int(flight.imu.t_ns[0])
    e = flight.attitude.euler_rad[0]
    q, cov_att = attitude_prior(AttitudeSample(t0, *map(float, e)), math.radians(2.0),
                                math.radians(10.0))
    p = flight.p_true(t0) + rng.normal(0, 1, 3) * np.array([sigma_h, sigma_h, sigma_v])
    v = flight.v_true(t0) + rng.normal(0, sigma_vel, 3)
    return InitialState(t0, p, v, q, np.diag([sigma_h**2, sigma_h**2, sigma_v**2]),
                        np.eye(3) * sigma_vel**2, cov_att)


def replay(flight: SimFlight, vision: VisionPlan, *, seed: int, backend: str = "eskf",
           estimator: EstimatorConfig | None = None, integrity: IntegrityConfig | None = None,
           use_gnss: bool = True, use_attitude: bool = True, output_hz: float = 5.0,
           gnss_trusted: bool = True, until_s: float | None = None,
           hooks: dict[float, object] | None = None) -> RunLog:
    """Drive an IntegrityMonitor over the flight in time order, as the replay loop will.

    hooks: {time_s: callable(navigator, t_ns)} run once when the replay passes time_s.
    """
    rng = np.random.default_rng(10_000 + seed)
    cfg = (estimator or EstimatorConfig()).model_copy(update={"backend": backend})
    nav = IntegrityMonitor(make_backend(cfg, flight.frame, initial_state(flight, rng)),
                    integrity or IntegrityConfig(), gnss_trusted=gnss_trusted)
    log = RunLog(navigator=nav)
    frame_ns = round(1e9 / vision.frame_rate_hz)
    out_ns = round(1e9 / output_hz)
    t_imu = flight.imu.t_ns
    end_ns = int(t_imu[-1]) if until_s is None else min(int(t_imu[-1]), round(until_s * 1e9))

    # time-ordered non-IMU events: (t_ns, order, kind, payload)
    events: list[tuple[int, int, str, object]] = []
    for i, t in enumerate(flight.baro.t_ns):
        events.append((int(t), 1, "baro", BaroSample(int(t), float(flight.baro.alt_m[i]))))
    if use_attitude:
        for i, t in enumerate(flight.attitude.t_ns):
            e = flight.attitude.euler_rad[i]
            events.append((int(t), 1, "att", AttitudeSample(int(t), *map(float, e))))
    if use_gnss:
        g = flight.gnss
        for i, t in enumerate(g.t_ns):
            events.append((int(t), 1, "gnss", GnssSample(
                int(t), float(g.lat_deg[i]), float(g.lon_deg[i]), float(g.alt_m[i]),
                np.asarray(g.v_ned_mps[i], dtype=np.float64), float(g.h_acc_m[i]),
                float(g.v_acc_m[i]), int(g.fix_type[i]), int(g.num_sats[i]),
                bool(g.jamming[i]), bool(g.spoofing[i]))))
    t_prev_frame: int | None = None
    latency_ns = round(vision.latency_s * 1e9)
    for t in range(int(t_imu[0]) + frame_ns, end_ns, frame_ns):
        ts = t * 1e-9
        blackout = _in_spans(ts, vision.blackouts)
        events.append((t, 0, "capture", t))
        odo = None
        if vision.odometry and not blackout and t_prev_frame is not None:
            d = (flight.p_true(t) - flight.p_true(t_prev_frame))[:2]
            s = max(vision.odo_sigma_frac * float(np.hypot(*d)), vision.odo_sigma_min_m)
            odo = OdometryDelta(t_prev_frame, t, d + rng.normal(0, s, 2), np.eye(2) * s * s,
                                True, 300)
        elif not blackout and t_prev_frame is None:
            odo = None
        fix = None
        if vision.fixes and not blackout and not _in_spans(ts, vision.fix_gaps):
            sn, se = rng.uniform(2.0, 5.0, 2)
            rho = rng.uniform(-0.5, 0.5)
            cov = np.array([[sn * sn, rho * sn * se], [rho * sn * se, se * se]])
            p = flight.p_true(t).copy()
            p[:2] += rng.multivariate_normal(np.zeros(2), cov)
            outlier = rng.random() < vision.outlier_rate
            if outlier:
                a = rng.uniform(0, 2 * math.pi)
                p[:2] += 350.0 * np.array([math.cos(a), math.sin(a)])
            lat, lon, alt = flight.frame.ned_to_lla(p)
            fix = (AbsoluteFix(t, float(lat), float(lon), float(alt), cov, math.inf,
                               float(lat), float(lon), 1.0, 150, 0.5), outlier)
        events.append((t + latency_ns, 2, "result", (t, blackout, odo, fix)))
        t_prev_frame = None if blackout else t
    for t in range(int(t_imu[0]) + out_ns, end_ns, out_ns):
        events.append((t, 3, "output", t))
    for ts_hook, fn in (hooks or {}).items():
        events.append((round(ts_hook * 1e9), 4, "hook", fn))
    events.sort(key=lambda e: (e[0], e[1]))

    k = 0
    n_ev = len(events)
    acc, gyr = flight.imu.accel_body_mps2, flight.imu.gyro_body_radps
    for i in range(len(t_imu)):
        ti = int(t_imu[i])
        if ti > end_ns:
            break
        nav.on_imu(ImuSample(ti, acc[i], gyr[i]))
        while k < n_ev and events[k][0] <= ti:
            _, _, kind, payload = events[k]
            k += 1
            if kind == "baro" or kind == "att":
                nav.feed(payload)
            elif kind == "gnss":
                log.gnss_reports.append((payload, nav.on_gnss(payload)))
            elif kind == "capture":
                nav.on_frame_captured(payload)
            elif kind == "result":
                t_f, blackout, odo, fix = payload
                if odo is not None:
                    nav.on_odometry(odo)
                if fix is not None:
                    f, outlier = fix
                    rep = nav.on_fix(f)
                    log.fix_reports.append((rep, outlier))
                    log.outliers += int(outlier)
                    log.outliers_accepted += int(outlier and rep.accepted)
                if vision.fixes and not blackout:
                    # every textured frame is registered here: a frame in a fix gap is an
                    # attempt that failed (what counts towards a hint request)
                    nav.on_registration(t_f, fixed=fix is not None and rep.accepted)
                nav.on_frame(t_f, blackout=blackout)
            elif kind == "output":
                sol: NavSolution = nav.solution(payload)
                log.t_ns.append(payload)
                log.p_est.append(np.asarray(flight.frame.lla_to_ned(sol.lat_deg, sol.lon_deg,
                                                                    sol.alt_m)))
                log.p_true.append(flight.p_true(payload))
                log.cov.append(sol.cov_p_ned_m2)
                log.label.append(sol.label)
                log.trusted.append(sol.gnss_trusted)
                log.failsafe.append(sol.failsafe)
            elif kind == "hook":
                payload(nav, ti)
        log.events.extend(nav.drain_events())
    return log


def horizontal_nees(err: np.ndarray, cov: np.ndarray) -> np.ndarray:
    e, c = err[:, :2], cov[:, :2, :2]
    return np.einsum("ni,nij,nj->n", e, np.linalg.inv(c), e)
