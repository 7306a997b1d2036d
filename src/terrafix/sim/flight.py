"""Simulate a whole flight from a scenario and write it as a dataset folder.

This is the simulator's composition root, a flat list of steps: world -> plan -> trajectory ->
sensors -> camera poses (checked against the imagery before anything is rendered) -> frames ->
files. Every random draw comes from a child of one `SeedSequence(seed)`, one child per
component, so changing e.g. the GNSS attacks does not change the IMU noise of the same seed.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terrafix.camera import CameraPose, NavCameraConfig
from terrafix.geo.frames import LocalFrame
from terrafix.progress import progress
from terrafix.sim.attitude import AttitudeErrorParams, simulate_attitude
from terrafix.sim.baro import BaroParams, simulate_baro
from terrafix.sim.dataset import truth_state_at, write_frame, write_streams
from terrafix.sim.effects import ImageEffects, blackout_frame
from terrafix.sim.errors import SimError, WorldError
from terrafix.sim.gnss import GnssAttack, GnssParams, simulate_gnss
from terrafix.sim.imu import ImuParams, simulate_imu
from terrafix.sim.scenario import Scenario
from terrafix.sim.streams import FrameIndex, TruthStream
from terrafix.sim.trajectory import GRAVITY_MPS2, FlightPlan, KinematicConfig, fly_kinematic
from terrafix.sim.world import OrthoWorld, SyntheticWorld, load_dgsamples_world

log = logging.getLogger(__name__)

# Child seed streams (fixed indices: adding a component must not shift the others).
_RNG_PLAN, _RNG_TRAJ, _RNG_IMU, _RNG_ATT, _RNG_BARO, _RNG_GNSS, _RNG_FRAMES = range(7)


def _rng(seed: int, component: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), component, *extra]))


@dataclass(frozen=True, slots=True)
class FlightSetup:
    """Everything resolved from a scenario before sensors and frames are simulated."""

    scenario: Scenario
    seed: int
    world: OrthoWorld | SyntheticWorld
    frame: LocalFrame
    plan: FlightPlan
    camera: NavCameraConfig
    effects: ImageEffects


def make_world(scenario: Scenario, seed: int) -> tuple[OrthoWorld | SyntheticWorld,
                                                       LocalFrame]:
    """The world and the flight's NED frame (origin = take-off point on the ground)."""
    w = scenario.world
    if w.kind == "dgsamples":
        world: OrthoWorld | SyntheticWorld = load_dgsamples_world(w.source, w.ground_alt_m)
        lat, lon = (w.origin_lat_deg, w.origin_lon_deg)
        if lat is None or lon is None:
            lat, lon = world.centre_wgs84
        base = LocalFrame(lat, lon, w.ground_alt_m)
    else:
        assert w.origin_lat_deg is not None and w.origin_lon_deg is not None
        anchor = LocalFrame(w.origin_lat_deg, w.origin_lon_deg, w.ground_alt_m)
        world = SyntheticWorld(seed if w.world_seed is None else w.world_seed, anchor)
        base = anchor
    dn, de = w.origin_offset_ne_m
    if dn or de:
        lat2, lon2, _ = base.ned_to_lla(np.array([dn, de, 0.0]))
        return world, LocalFrame(float(lat2), float(lon2), w.ground_alt_m)
    return world, base


def make_plan(scenario: Scenario, seed: int) -> FlightPlan:
    t = scenario.trajectory
    if t.random is not None:
        r = t.random
        rng = _rng(seed, _RNG_PLAN)
        pts: list[np.ndarray] = [np.array(t.start_ne_m, dtype=np.float64)]
        while len(pts) <= r.count:
            cand = rng.uniform(-r.radius_m, r.radius_m, 2)
            if np.hypot(*cand) <= r.radius_m and np.hypot(*(cand - pts[-1])) >= r.min_leg_m:
                pts.append(cand)
        wp = np.array(pts[1:])
        alt = rng.uniform(r.alt_agl_m[0], r.alt_agl_m[1], len(wp))
    else:
        arr = np.array(t.waypoints, dtype=np.float64)
        wp, alt = arr[:, :2], arr[:, 2]
    return FlightPlan(wp, alt, loop=t.loop, start_ne_m=t.start_ne_m,
                      start_alt_agl_m=t.start_alt_agl_m,
                      start_heading_rad=math.radians(t.start_heading_deg))


def setup_flight(scenario: Scenario, seed: int) -> FlightSetup:
    world, frame = make_world(scenario, seed)
    c = scenario.camera
    camera = NavCameraConfig(processing_width_px=c.width_px, processing_height_px=c.height_px,
                             frame_rate_hz=c.frame_rate_hz)
    e = c.effects
    effects = ImageEffects(e.vignetting, e.gain, e.gamma, e.blur_sigma_px, e.noise_sigma,
                           e.jpeg_quality, e.haze, e.cloud_cover)
    return FlightSetup(scenario, seed, world, frame, make_plan(scenario, seed), camera,
                       effects)


def fly(setup: FlightSetup) -> TruthStream:
    """The truth trajectory of the scenario."""
    t = setup.scenario.trajectory
    if t.model == "jsbsim":
        from terrafix.sim.jsbsim_flight import fly_jsbsim

        return fly_jsbsim(setup.plan, setup.scenario.duration_s, setup.frame,
                          _rng(setup.seed, _RNG_TRAJ), rate_hz=t.rate_hz,
                          airspeed_mps=t.airspeed_mps, wind_ned_mps=t.wind_ned_mps)
    cfg = KinematicConfig(rate_hz=t.rate_hz, airspeed_mps=t.airspeed_mps,
                          max_bank_rad=math.radians(t.max_bank_deg),
                          wind_ned_mps=t.wind_ned_mps,
                          turbulence_bank_rad=math.radians(t.turbulence_bank_deg))
    return fly_kinematic(setup.plan, setup.scenario.duration_s, setup.frame,
                         _rng(setup.seed, _RNG_TRAJ), cfg)


def frame_times_ns(duration_s: float, rate_hz: float) -> np.ndarray:
    """Capture times of the navigation camera: k / rate from t = 0 (int64 ns)."""
    n = math.floor(duration_s * rate_hz + 1e-9) + 1
    return np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64)


def camera_poses(setup: FlightSetup, truth: TruthStream, t_ns: np.ndarray
                 ) -> list[CameraPose]:
    ext = setup.camera.extrinsics
    poses = []
    for t in t_ns.tolist():
        s = truth_state_at(truth, t)
        poses.append(CameraPose.from_body(s.p_ned_m, s.R_body_to_ned, ext))
    return poses


def check_footprints(setup: FlightSetup, poses: list[CameraPose], t_ns: np.ndarray) -> None:
    """Refuse a plan whose camera footprint leaves the imagery at any frame."""
    intr = setup.camera.processing_intrinsics()
    for pose, t in zip(poses, t_ns.tolist(), strict=True):
        setup.world.check_footprint(pose, intr, setup.frame, what=f"frame at t={t * 1e-9:.2f} s")


def _blackout_at(scenario: Scenario, t_s: float) -> str | None:
    for b in scenario.camera.blackouts:
        if b.start_s <= t_s < b.end_s:
            return b.kind
    return None


def build_meta(setup: FlightSetup, imu_params: ImuParams, att_params: AttitudeErrorParams,
               baro_params: BaroParams, gnss_params: GnssParams,
               attacks: list[GnssAttack]) -> dict[str, Any]:
    sc = setup.scenario
    intr = setup.camera.processing_intrinsics()
    ext = setup.camera.extrinsics
    world = setup.world
    if isinstance(world, OrthoWorld):
        world_meta: dict[str, Any] = {
            "name": world.name, "kind": "orthophoto", "source": world.info.source,
            "acquired": world.info.acquired, "gsd_m": world.res_m, "crs_epsg": world.crs_epsg}
    else:
        world_meta = {"name": world.name, "kind": "synthetic", "source": "procedural",
                      "seed": world.seed, "gsd_m": world.res_m, "extent_m": world.extent_m,
                      "anchor": {"lat_deg": world.anchor.lat0_deg,
                                 "lon_deg": world.anchor.lon0_deg}}
    world_meta["bounds_wgs84"] = list(world.bounds_wgs84)
    events: list[dict[str, Any]] = []
    for a in attacks:
        d = a.to_dict()
        d.update(type="gnss_attack", start_ns=round(a.start_s * 1e9),
                 end_ns=round(a.end_s * 1e9))
        events.append(d)
    for b in sc.camera.blackouts:
        events.append({"type": "visual_blackout", "kind": b.kind, "start_s": b.start_s,
                       "end_s": b.end_s, "start_ns": round(b.start_s * 1e9),
                       "end_ns": round(b.end_s * 1e9)})
    events.sort(key=lambda ev: (ev["start_ns"], ev["type"]))
    return {
        "scenario": sc.model_dump(mode="json"),
        "seed": setup.seed,
        "utc_start": sc.utc_start,
        "duration_s": sc.duration_s,
        "world": world_meta,
        "origin": {"lat_deg": setup.frame.lat0_deg, "lon_deg": setup.frame.lon0_deg,
                   "alt_m": setup.frame.alt0_m},
        "ground_alt_m": world.ground_alt_m,
        "gravity_mps2": GRAVITY_MPS2,
        "camera": {
            "width": intr.width, "height": intr.height, "fx": intr.fx, "fy": intr.fy,
            "cx": intr.cx, "cy": intr.cy, "dist": list(intr.dist),
            "R_cam_to_body": ext.R_cam_to_body.tolist(),
            "p_cam_in_body": ext.p_cam_in_body.tolist(),
            "frame_rate_hz": setup.camera.frame_rate_hz,
            "sensor": {"width_px": setup.camera.sensor_width_px,
                       "height_px": setup.camera.sensor_height_px,
                       "pixel_pitch_um": setup.camera.pixel_pitch_um,
                       "focal_mm": setup.camera.focal_mm},
            "effects": setup.effects.to_dict(),
        },
        "sensors": {"imu": imu_params.to_dict() | {"rate_hz": sc.trajectory.rate_hz},
                    "attitude": att_params.to_dict(), "baro": baro_params.to_dict(),
                    "gnss": gnss_params.to_dict()},
        "events": events,
        "plan": {"waypoints_ne_m": setup.plan.waypoints_ne_m.tolist(),
                 "alt_agl_m": setup.plan.alt_agl_m.tolist(), "loop": setup.plan.loop},
    }


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise SimError(f"output {out} exists and is not a folder")
        entries = list(out.iterdir())
        if entries and not (out / "meta.json").is_file():
            raise SimError(f"output folder {out} is not empty and holds no dataset; "
                           f"refusing to overwrite")
        for p in entries:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def simulate_flight(scenario: Scenario, seed: int, out: str | Path) -> Path:
    """Simulate `scenario` with `seed` and write the dataset folder `out` (replacing a previous
    dataset there). Refuses (WorldError) before writing if a footprint leaves the imagery."""
    out = Path(out)
    setup = setup_flight(scenario, seed)
    log.info("sim: %s seed %d, world %s, %.0f s", scenario.name, seed, setup.world.name,
             scenario.duration_s)
    truth = fly(setup)
    agl = -truth.p_ned_m[:, 2] + setup.world.ground_down_m(setup.frame)
    if agl.min() < 50.0:
        raise SimError(f"trajectory goes down to {agl.min():.0f} m above ground (< 50 m)")
    t_frames = frame_times_ns(scenario.duration_s, scenario.camera.frame_rate_hz) \
        if scenario.camera.render_frames else np.zeros(0, dtype=np.int64)
    poses = camera_poses(setup, truth, t_frames)
    if scenario.camera.render_frames:
        try:
            check_footprints(setup, poses, t_frames)
        except WorldError as exc:
            raise WorldError(f"scenario {scenario.name!r} (seed {seed}) cannot be flown over "
                             f"{setup.world.name}: {exc}") from None

    imu_params = ImuParams.ideal() if scenario.imu.ideal else ImuParams()
    imu, _ = simulate_imu(truth, imu_params, _rng(seed, _RNG_IMU))
    att_params = AttitudeErrorParams(
        rate_hz=scenario.attitude.rate_hz,
        roll_pitch_sigma_rad=math.radians(scenario.attitude.roll_pitch_sigma_deg),
        yaw_sigma_rad=math.radians(scenario.attitude.yaw_sigma_deg))
    attitude = simulate_attitude(truth, att_params, _rng(seed, _RNG_ATT))
    baro_params = BaroParams(rate_hz=scenario.baro.rate_hz)
    baro = simulate_baro(truth, baro_params, _rng(seed, _RNG_BARO))
    gnss_params = GnssParams(rate_hz=scenario.gnss.rate_hz)
    attacks = [GnssAttack(kind=a.kind, start_s=a.start_s, end_s=scenario.attack_end_s(i),
                          flag=a.flag, flag_delay_s=a.flag_delay_s, mode=a.mode,
                          ramp_s=a.ramp_s, degraded_sigma_m=a.degraded_sigma_m,
                          offset_ned_m=a.offset_ned_m, rate_mps=a.rate_mps,
                          bearing_deg=a.bearing_deg, delay_s=a.delay_s,
                          delay_ramp_s=a.delay_ramp_s)
               for i, a in enumerate(scenario.gnss.attacks)]
    gnss = simulate_gnss(truth, setup.frame, gnss_params, attacks, _rng(seed, _RNG_GNSS))

    _prepare_out(out)
    intr = setup.camera.processing_intrinsics()
    files = []
    with progress(f"sim {scenario.name}", len(t_frames), "frames") as bar:
        for i, (t, pose) in enumerate(zip(t_frames.tolist(), poses, strict=True)):
            rng = _rng(seed, _RNG_FRAMES, i)
            blackout = _blackout_at(scenario, t * 1e-9)
            if blackout is not None:
                img = blackout_frame(intr.height, intr.width, blackout, rng)
            else:
                img = setup.world.render(pose, intr, setup.frame, setup.effects, rng)
            files.append(write_frame(out, i, img))
            bar.advance()
    frames = FrameIndex(t_ns=t_frames, index=np.arange(len(t_frames), dtype=np.int64),
                        file=np.array(files, dtype=str))
    meta = build_meta(setup, imu_params, att_params, baro_params, gnss_params, attacks)
    write_streams(out, meta, truth, imu, attitude, baro, gnss, frames)
    log.info("sim: wrote %s (%d frames)", out, len(files))
    return out
