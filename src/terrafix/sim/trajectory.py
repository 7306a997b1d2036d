"""Kinematic coordinated-turn fixed-wing trajectories with exact ground truth.

Why a kinematic model: the estimator and vision code need a truth whose positions, velocities,
attitudes, angular rates and specific forces are *mutually consistent* (integrating the truth IMU
must give back the truth track), which a point-mass model with analytic derivatives guarantees.
JSBSim (`terrafix.sim.jsbsim_flight`) gives more realistic dynamics for the same plans.

Model (state x = n, e, d, psi, gamma, gamma', phi, phi'; constant air-relative speed V, heading
psi, flight-path angle gamma, bank phi; constant wind w_ned):
    n' = V cos(gamma) cos(psi) + w_n,  e' = V cos(gamma) sin(psi) + w_e,  d' = -V sin(gamma) + w_d
    psi' = g tan(phi) / V   (coordinated turn),  gamma'' = u_gamma,  phi'' = u_phi
The angular accelerations u are held constant over one output step and x is advanced with RK4,
so the stored samples are the exact solution to ~1e-9 m and angular rates and specific force are
continuous (an IMU integrator then converges at its own order); they are evaluated analytically
at each sample. Attitude: roll = phi, yaw = psi, pitch = gamma + alpha with an angle
of attack alpha = alpha_trim * n_z (load factor 1/cos(phi)). The world is flat and non-rotating
with constant gravity GRAVITY_MPS2 along +down (documented in docs/dataset.md).

Guidance (what the autopilot would do): the aircraft flies straight legs between waypoints with
a cross-track law (desired course = leg course - atan(k * cross_track)), a course-rate command
turned into a bank command, first-order bank and flight-path-angle loops with rate limits, and
seeded Gauss-Markov "turbulence" added to the bank and flight-path commands so that attitude is
never perfectly level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from terrafix.geo.frames import LocalFrame
from terrafix.geo.rotation import R_to_quat, euler_to_R_body_to_ned
from terrafix.sim.errors import SimError
from terrafix.sim.streams import TruthStream

GRAVITY_MPS2 = 9.80665


@dataclass(frozen=True, slots=True)
class FlightPlan:
    """Waypoints to fly, in the flight's NED frame (origin = take-off point on the ground).

    waypoints_ne_m: (K, 2) north/east metres. alt_agl_m: (K,) target height above the (flat)
    ground at each waypoint. loop: after the last waypoint fly to the first again.
    The aircraft starts at start_ne_m, start_alt_agl_m, heading start_heading_rad (already
    airborne at cruise speed: the climb-out is not simulated).
    """

    waypoints_ne_m: np.ndarray
    alt_agl_m: np.ndarray
    loop: bool = True
    start_ne_m: tuple[float, float] = (0.0, 0.0)
    start_alt_agl_m: float = 200.0
    start_heading_rad: float = 0.0

    def __post_init__(self) -> None:
        wp = np.asarray(self.waypoints_ne_m, dtype=np.float64)
        alt = np.asarray(self.alt_agl_m, dtype=np.float64)
        if wp.ndim != 2 or wp.shape[1] != 2 or len(wp) < 1:
            raise SimError(f"waypoints_ne_m must be (K>=1, 2), got shape {wp.shape}")
        if alt.shape != (len(wp),):
            raise SimError(f"alt_agl_m must have one value per waypoint ({len(wp)}), "
                           f"got shape {alt.shape}")
        if np.any(alt <= 0) or self.start_alt_agl_m <= 0:
            raise SimError(f"altitudes above ground must be > 0 m, got {alt.tolist()} and "
                           f"start {self.start_alt_agl_m}")
        object.__setattr__(self, "waypoints_ne_m", wp)
        object.__setattr__(self, "alt_agl_m", alt)


@dataclass(frozen=True, slots=True)
class KinematicConfig:
    """Aircraft and autopilot parameters of the kinematic model (SI units).

    Defaults: a small fixed-wing at ~65 km/h, 35° bank limit, bank rate 30°/s.
    turbulence_*: 1-sigma of the Gauss-Markov perturbation (correlation time
    turbulence_tau_s) added to the bank and flight-path-angle commands.
    """

    rate_hz: float = 200.0
    airspeed_mps: float = 18.0
    max_bank_rad: float = math.radians(35.0)
    max_roll_rate_radps: float = math.radians(30.0)
    bank_tau_s: float = 0.6
    rate_tau_s: float = 0.15
    max_gamma_rad: float = math.radians(8.0)
    max_gamma_rate_radps: float = math.radians(3.0)
    gamma_tau_s: float = 1.0
    alt_gain_per_s: float = 0.15
    course_gain_per_s: float = 0.6
    cross_track_gain_per_m: float = 0.02
    accept_radius_m: float = 30.0
    alpha_trim_rad: float = math.radians(2.0)
    wind_ned_mps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    turbulence_bank_rad: float = math.radians(2.0)
    turbulence_gamma_rad: float = math.radians(0.5)
    turbulence_tau_s: float = 2.0

    def __post_init__(self) -> None:
        if not (100.0 <= self.rate_hz <= 2000.0):
            raise SimError(f"truth rate must be 100..2000 Hz, got {self.rate_hz}")
        if not (8.0 <= self.airspeed_mps <= 60.0):
            raise SimError(f"airspeed must be 8..60 m/s for a small fixed-wing, "
                           f"got {self.airspeed_mps}")
        if not (0.0 < self.max_bank_rad < math.radians(60.0)):
            raise SimError(f"max bank must be in (0, 60) degrees, got "
                           f"{math.degrees(self.max_bank_rad)}")


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


@dataclass(slots=True)
class Guidance:
    """Waypoint sequencing and cross-track guidance (mutable state of one flight; shared by the
    kinematic model and the JSBSim autopilot driver)."""

    plan: FlightPlan
    cfg: KinematicConfig
    target: int = 0
    prev_ne: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def commands(self, n: float, e: float, agl: float, course: float, vg: float
                 ) -> tuple[float, float]:
        """(bank command, flight-path-angle command) for the current state."""
        desired, target_agl = self.course_and_altitude(n, e)
        course_rate = self.cfg.course_gain_per_s * _wrap(desired - course)
        bank = math.atan(vg * course_rate / GRAVITY_MPS2)
        bank = max(-self.cfg.max_bank_rad, min(self.cfg.max_bank_rad, bank))
        gamma = self.cfg.alt_gain_per_s * (target_agl - agl) / max(vg, 1.0)
        gamma = max(-self.cfg.max_gamma_rad, min(self.cfg.max_gamma_rad, gamma))
        return bank, gamma

    def course_and_altitude(self, n: float, e: float) -> tuple[float, float]:
        """(desired ground course, target height above ground) at position (n, e),
        advancing to the next waypoint when this one is reached or passed."""
        wps = self.plan.waypoints_ne_m
        tn, te = wps[self.target]
        pn, pe = self.prev_ne
        leg_n, leg_e = tn - pn, te - pe
        leg_len = math.hypot(leg_n, leg_e)
        if leg_len < 1e-6:
            leg_n, leg_e, leg_len = tn - n, te - e, max(math.hypot(tn - n, te - e), 1e-6)
        un, ue = leg_n / leg_len, leg_e / leg_len
        along = (n - pn) * un + (e - pe) * ue
        if math.hypot(tn - n, te - e) < self.cfg.accept_radius_m or along >= leg_len:
            self._advance()
            return self.course_and_altitude(n, e)
        cross = -(n - pn) * ue + (e - pe) * un  # right of the leg positive
        leg_course = math.atan2(ue, un)
        desired = leg_course - math.atan(self.cfg.cross_track_gain_per_m * cross)
        return desired, float(self.plan.alt_agl_m[self.target])

    def _advance(self) -> None:
        self.prev_ne = self.plan.waypoints_ne_m[self.target].copy()
        nxt = self.target + 1
        if nxt >= len(self.plan.waypoints_ne_m):
            if not self.plan.loop:
                # Hold the last leg's direction: extend it far ahead.
                last = self.plan.waypoints_ne_m[self.target]
                before = self.plan.waypoints_ne_m[self.target - 1] \
                    if self.target > 0 else np.zeros(2)
                d = last - before
                d = d / max(float(np.linalg.norm(d)), 1e-6)
                self.plan = FlightPlan(np.vstack([self.plan.waypoints_ne_m, last + 1e6 * d]),
                                       np.append(self.plan.alt_agl_m, self.plan.alt_agl_m[-1]),
                                       False, self.plan.start_ne_m, self.plan.start_alt_agl_m,
                                       self.plan.start_heading_rad)
            else:
                nxt = 0
        self.target = nxt


def _deriv(x: list[float], u: tuple[float, float], V: float,
           w: tuple[float, float, float]) -> list[float]:
    _, _, _, psi, gamma, gamma_dot, phi, phi_dot = x
    cg = math.cos(gamma)
    return [V * cg * math.cos(psi) + w[0], V * cg * math.sin(psi) + w[1],
            -V * math.sin(gamma) + w[2], GRAVITY_MPS2 * math.tan(phi) / V, gamma_dot, u[0],
            phi_dot, u[1]]


def _rk4(x: list[float], u: tuple[float, float], V: float, w: tuple[float, float, float],
         dt: float) -> list[float]:
    k1 = _deriv(x, u, V, w)
    k2 = _deriv([a + 0.5 * dt * b for a, b in zip(x, k1, strict=True)], u, V, w)
    k3 = _deriv([a + 0.5 * dt * b for a, b in zip(x, k2, strict=True)], u, V, w)
    k4 = _deriv([a + dt * b for a, b in zip(x, k3, strict=True)], u, V, w)
    return [a + dt / 6.0 * (b + 2 * c + 2 * d + e)
            for a, b, c, d, e in zip(x, k1, k2, k3, k4, strict=True)]


def _clamp(x: float, limit: float) -> float:
    return max(-limit, min(limit, x))


def fly_kinematic(plan: FlightPlan, duration_s: float, frame: LocalFrame,
                  rng: np.random.Generator, config: KinematicConfig | None = None
                  ) -> TruthStream:
    """Fly `plan` for `duration_s` and return the truth at `config.rate_hz`.

    `frame` is the flight's NED frame; its origin altitude is the (flat) ground altitude AMSL,
    so height above ground is -d. `rng` drives the turbulence only (deterministic per seed).
    """
    cfg = config or KinematicConfig()
    if duration_s <= 0:
        raise SimError(f"duration must be > 0 s, got {duration_s}")
    dt = 1.0 / cfg.rate_hz
    n_steps = round(duration_s * cfg.rate_hz) + 1
    step_ns = 1e9 / cfg.rate_hz
    t_ns = np.round(np.arange(n_steps) * step_ns).astype(np.int64)
    w = (float(cfg.wind_ned_mps[0]), float(cfg.wind_ned_mps[1]), float(cfg.wind_ned_mps[2]))
    V = cfg.airspeed_mps
    guid = Guidance(plan, cfg, 0, np.array(plan.start_ne_m, dtype=np.float64))

    # Turbulence: exact discretisation of a first-order Gauss-Markov process.
    a = math.exp(-dt / cfg.turbulence_tau_s)
    s = math.sqrt(1.0 - a * a)
    shocks = rng.standard_normal((n_steps, 2))
    tb, tg = 0.0, 0.0

    # Second-order bank and flight-path loops (input = angular acceleration, held over a step)
    # keep angular rates and specific force continuous, as on a real airframe.
    x = [plan.start_ne_m[0], plan.start_ne_m[1], -plan.start_alt_agl_m,
         plan.start_heading_rad, 0.0, 0.0, 0.0, 0.0]
    states = np.empty((n_steps, 8))
    for k in range(n_steps):
        n, e, d, psi, gamma, gamma_dot, phi, phi_dot = x
        vn = V * math.cos(gamma) * math.cos(psi) + w[0]
        ve = V * math.cos(gamma) * math.sin(psi) + w[1]
        bank_c, gamma_c = guid.commands(n, e, -d, math.atan2(ve, vn), math.hypot(vn, ve))
        tb = a * tb + s * cfg.turbulence_bank_rad * shocks[k, 0]
        tg = a * tg + s * cfg.turbulence_gamma_rad * shocks[k, 1]
        bank_c = _clamp(bank_c + tb, cfg.max_bank_rad)
        gamma_c = _clamp(gamma_c + tg, cfg.max_gamma_rad)
        roll_rate_c = _clamp((bank_c - phi) / cfg.bank_tau_s, cfg.max_roll_rate_radps)
        gamma_rate_c = _clamp((gamma_c - gamma) / cfg.gamma_tau_s, cfg.max_gamma_rate_radps)
        u = ((gamma_rate_c - gamma_dot) / cfg.rate_tau_s,
             (roll_rate_c - phi_dot) / cfg.rate_tau_s)
        states[k] = x
        x = _rk4(x, u, V, w, dt)
        x[3] = _wrap(x[3])
    return _truth_from_states(t_ns, states, V, w, cfg.alpha_trim_rad, frame)


def _truth_from_states(t_ns: np.ndarray, states: np.ndarray, V: float,
                       wind: tuple[float, float, float], alpha_trim: float,
                       frame: LocalFrame) -> TruthStream:
    """Evaluate attitude, angular rate and specific force analytically at every sample."""
    n, e, d, psi, gamma, gamma_dot, phi, phi_dot = states.T
    g = GRAVITY_MPS2
    cg, sg, cp, sp = np.cos(gamma), np.sin(gamma), np.cos(psi), np.sin(psi)
    psi_dot = g * np.tan(phi) / V
    v_ned = np.column_stack((V * cg * cp + wind[0], V * cg * sp + wind[1], -V * sg + wind[2]))
    a_ned = np.column_stack((
        -V * sg * gamma_dot * cp - V * cg * sp * psi_dot,
        -V * sg * gamma_dot * sp + V * cg * cp * psi_dot,
        -V * cg * gamma_dot,
    ))
    alpha = alpha_trim / np.cos(phi)
    alpha_dot = alpha_trim * np.sin(phi) / np.cos(phi) ** 2 * phi_dot
    theta = gamma + alpha
    theta_dot = gamma_dot + alpha_dot
    roll, pitch, yaw = phi, theta, psi
    cr, sr, cth, sth = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch)
    omega = np.column_stack((
        phi_dot - psi_dot * sth,
        theta_dot * cr + psi_dot * sr * cth,
        -theta_dot * sr + psi_dot * cr * cth,
    ))
    R = np.stack([euler_to_R_body_to_ned(r, p, y) for r, p, y in zip(roll, pitch, yaw,
                                                                        strict=True)])
    f_ned = a_ned - np.array([0.0, 0.0, g])
    f_body = np.einsum("kji,kj->ki", R, f_ned)
    q = np.stack([R_to_quat(Rk) for Rk in R])
    p_ned = np.column_stack((n, e, d))
    lat, lon, alt = frame.ned_to_lla(p_ned)
    return TruthStream(
        t_ns=t_ns, lat_deg=np.asarray(lat), lon_deg=np.asarray(lon), alt_m=np.asarray(alt),
        p_ned_m=p_ned, v_ned_mps=v_ned, q_body_to_ned=q,
        euler_rad=np.column_stack((roll, pitch, yaw)), omega_body_radps=omega,
        f_body_mps2=f_body,
    )
