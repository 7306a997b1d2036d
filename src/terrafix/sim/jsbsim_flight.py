"""Waypoint flights flown by JSBSim (a real fixed-wing flight dynamics model).

Why: the kinematic model (`terrafix.sim.trajectory`) is exact but idealised; JSBSim gives the
attitude and speed behaviour of a real airframe (phugoid, altitude-hold oscillation, sideslip
in gusts). The jsbsim 1.3.3 wheel does not bundle ArduPilot's Rascal110, so the bundled Cessna
172 variant "c172x" is used because it ships a working autopilot (heading, altitude and
airspeed hold); it flies at ~25 m/s, the top of the 15-25 m/s cruise range. Our guidance
(`trajectory.Guidance`, the same cross-track law as the kinematic model) sets the heading and
altitude set-points each step.

Truth convention: JSBSim integrates on a rotating WGS84 Earth; the dataset's world is the flat,
non-rotating NED plane of the take-off point with constant gravity. The truth is therefore built
from JSBSim's geodetic positions and attitudes only: positions are converted to the flight's NED
frame, attitudes are rotated from JSBSim's local NED into it, and velocity, angular rate and
specific force are the derivatives of smoothing-free quintic splines through those samples, so
that integrating the truth IMU reproduces the truth track exactly as for the kinematic model.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator

import numpy as np
from scipy.interpolate import make_interp_spline

from terrafix.geo.frames import LocalFrame, R_ecef_to_ned
from terrafix.geo.rotation import R_to_euler, R_to_quat, euler_to_R_body_to_ned, quat_to_R
from terrafix.sim.errors import SimError
from terrafix.sim.streams import TruthStream
from terrafix.sim.trajectory import GRAVITY_MPS2, FlightPlan, Guidance, KinematicConfig

FT = 0.3048
AIRCRAFT = "c172x"


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence JSBSim's C++ start-up banner (written to file descriptor 1)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _quat_rate_to_omega(q: np.ndarray, q_dot: np.ndarray) -> np.ndarray:
    """Body angular rate (N, 3) from unit quaternions (N, 4) and their derivatives:
    omega = 2 * vec(conj(q) x q_dot)."""
    w, x, y, z = q.T
    dw, dx, dy, dz = q_dot.T
    return 2.0 * np.column_stack((
        w * dx - x * dw - y * dz + z * dy,
        w * dy + x * dz - y * dw - z * dx,
        w * dz - x * dy + y * dx - z * dw,
    ))


def fly_jsbsim(plan: FlightPlan, duration_s: float, frame: LocalFrame,
               rng: np.random.Generator, rate_hz: float = 200.0, airspeed_mps: float = 25.0,
               wind_ned_mps: tuple[float, float, float] = (0.0, 0.0, 0.0),
               turbulence: bool = True) -> TruthStream:
    """Fly `plan` with JSBSim's c172x and its autopilot; truth at `rate_hz` (see module doc)."""
    import jsbsim

    if not (20.0 <= airspeed_mps <= 30.0):
        raise SimError(f"the JSBSim c172x flies 20..30 m/s, got {airspeed_mps}")
    with _quiet_stdout():
        fdm = jsbsim.FGFDMExec(None)
        fdm.set_debug_level(0)
        loaded = fdm.load_model(AIRCRAFT)
        # the bundled c172x declares a CSV output (JSBout172B.csv in the working directory):
        # a simulator run must not drop files where it is started
        fdm.set_output_filename(0, os.devnull)
    if not loaded:
        raise SimError(f"JSBSim could not load aircraft {AIRCRAFT!r}")
    dt = 1.0 / rate_hz
    fdm.set_dt(dt)
    lat0, lon0, _ = frame.ned_to_lla(np.array([plan.start_ne_m[0], plan.start_ne_m[1], 0.0]))
    ground_alt = frame.alt0_m
    fdm["ic/lat-geod-deg"] = float(lat0)
    fdm["ic/long-gc-deg"] = float(lon0)
    fdm["ic/h-sl-ft"] = (ground_alt + plan.start_alt_agl_m) / FT
    fdm["ic/psi-true-deg"] = math.degrees(plan.start_heading_rad)
    fdm["ic/vt-kts"] = airspeed_mps / 0.514444
    fdm["ic/gamma-deg"] = 0.0
    fdm["atmosphere/wind-north-fps"] = wind_ned_mps[0] / FT
    fdm["atmosphere/wind-east-fps"] = wind_ned_mps[1] / FT
    fdm["atmosphere/wind-down-fps"] = wind_ned_mps[2] / FT
    fdm["simulation/randomseed"] = int(rng.integers(1, 2**31 - 1))
    if turbulence:
        fdm["atmosphere/turb-type"] = 3  # Milspec (Dryden)
        fdm["atmosphere/turbulence/milspec/windspeed_at_20ft_ft_sec"] = 10.0
        fdm["atmosphere/turbulence/milspec/severity"] = 2
    if not fdm.run_ic():
        raise SimError("JSBSim failed to initialise")
    fdm["propulsion/set-running"] = -1
    fdm["fcs/mixture-cmd-norm"] = 1.0
    fdm["simulation/do_simple_trim"] = 1
    fdm["ap/airspeed_setpoint"] = airspeed_mps / 0.514444
    fdm["ap/airspeed_hold"] = 1
    fdm["ap/altitude_hold"] = 1
    fdm["ap/heading_hold"] = 1

    guid = Guidance(plan, KinematicConfig(), 0, np.array(plan.start_ne_m, dtype=np.float64))
    n_steps = round(duration_s * rate_hz) + 1
    raw = np.empty((n_steps, 6))
    origin_lat, origin_lon = frame.lat0_deg, frame.lon0_deg
    cos_lat = math.cos(math.radians(origin_lat))
    for k in range(n_steps):
        lat = fdm["position/lat-geod-deg"]
        lon = fdm["position/long-gc-deg"]
        raw[k] = (lat, lon, fdm["position/geod-alt-ft"] * FT, fdm["attitude/phi-rad"],
                  fdm["attitude/theta-rad"], fdm["attitude/psi-rad"])
        # Guidance in a flat approximation of the NED frame (metres, good to << 1 m here).
        n = math.radians(lat - origin_lat) * 6_371_000.0
        e = math.radians(lon - origin_lon) * 6_371_000.0 * cos_lat
        course, agl = guid.course_and_altitude(n, e)
        vn, ve = fdm["velocities/v-north-fps"] * FT, fdm["velocities/v-east-fps"] * FT
        # Heading that makes good the desired course in the known wind (crab angle).
        cross = -wind_ned_mps[0] * math.sin(course) + wind_ned_mps[1] * math.cos(course)
        crab = math.asin(max(-0.9, min(0.9, cross / max(math.hypot(vn, ve), 1.0))))
        fdm["ap/heading_setpoint"] = math.degrees(course - crab) % 360.0
        fdm["ap/altitude_setpoint"] = (ground_alt + agl) / FT
        if k < n_steps - 1 and not fdm.run():
            raise SimError(f"JSBSim stopped at t={k * dt:.2f} s")
        if fdm["position/h-agl-ft"] * FT < 30.0:
            raise SimError(f"JSBSim aircraft descended below 30 m above ground at "
                           f"t={k * dt:.2f} s")
    return _truth_from_geodetic(raw, dt, frame)


def _truth_from_geodetic(raw: np.ndarray, dt: float, frame: LocalFrame) -> TruthStream:
    """Truth in the flight's flat NED frame from (N, 6) lat, lon, alt, roll, pitch, yaw."""
    n = len(raw)
    t_ns = np.round(np.arange(n) * dt * 1e9).astype(np.int64)
    t = t_ns * 1e-9
    lat, lon, alt = raw[:, 0], raw[:, 1], raw[:, 2]
    p = frame.lla_to_ned(lat, lon, alt)
    R_origin = frame.R_ecef_to_ned()
    q = np.empty((n, 4))
    for k in range(n):
        R_local = euler_to_R_body_to_ned(*raw[k, 3:6])
        R = R_origin @ R_ecef_to_ned(lat[k], lon[k]).T @ R_local
        qk = R_to_quat(R)
        if k and np.dot(qk, q[k - 1]) < 0:  # keep the quaternion sign continuous
            qk = -qk
        q[k] = qk
    p_spline = make_interp_spline(t, p, k=5)
    q_spline = make_interp_spline(t, q, k=5)
    v = p_spline(t, 1)
    a = p_spline(t, 2)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    omega = _quat_rate_to_omega(qn, q_spline(t, 1))
    Rs = np.stack([quat_to_R(qk) for qk in qn])
    f_body = np.einsum("kji,kj->ki", Rs, a - np.array([0.0, 0.0, GRAVITY_MPS2]))
    euler = np.array([R_to_euler(Rk) for Rk in Rs])
    q_out = np.where(qn[:, :1] < 0, -qn, qn)
    return TruthStream(t_ns=t_ns, lat_deg=lat.copy(), lon_deg=lon.copy(), alt_m=alt.copy(),
                       p_ned_m=p, v_ned_mps=v, q_body_to_ned=q_out, euler_rad=euler,
                       omega_body_radps=omega, f_body_mps2=f_body)
