"""Scenario files: TOML validated by pydantic, resolved into the simulator's parameter objects.

A scenario says where the flight happens (world), how it flies (trajectory), what the sensors do
(including GNSS attacks) and what the camera sees (rate, effects, visual blackouts). Unknown keys
and out-of-range values are errors naming the field. Shipped scenarios live next to this module
in `scenarios/*.toml` and are addressed by name (`demo`, `long-synthetic`, ...).
"""

from __future__ import annotations

import itertools
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from terrafix.sim.errors import ScenarioError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorldSpec(_Model):
    """kind "dgsamples": the real WorldView imagery (`source` wv3 or wv2); kind "synthetic": the
    procedural world (`world_seed`, default: the flight seed). Origin (take-off point) defaults
    to the imagery centre for dgsamples and to origin_lat/lon for synthetic."""

    kind: Literal["dgsamples", "synthetic"]
    source: Literal["wv3", "wv2"] = "wv3"
    world_seed: int | None = None
    ground_alt_m: float = Field(1520.0, ge=-500.0, le=9000.0)
    origin_lat_deg: float | None = Field(None, ge=-80.0, le=84.0)
    origin_lon_deg: float | None = Field(None, ge=-180.0, le=180.0)
    origin_offset_ne_m: tuple[float, float] = (0.0, 0.0)


class RandomPattern(_Model):
    """Random waypoints (seeded by the flight seed) within radius_m of the take-off point."""

    count: int = Field(12, ge=2, le=500)
    radius_m: float = Field(3000.0, gt=100.0, le=100000.0)
    min_leg_m: float = Field(400.0, ge=50.0)
    alt_agl_m: tuple[float, float] = (150.0, 400.0)


class TrajectorySpec(_Model):
    """How the aircraft flies. Waypoints are [north_m, east_m, alt_agl_m] from the take-off
    point; alternatively `random` generates them. model "jsbsim" (c172x, 20-30 m/s) uses the
    airspeed, wind and waypoints; its bank limit is the c172x autopilot's own (30 deg) and its
    turbulence is JSBSim's Dryden model."""

    model: Literal["kinematic", "jsbsim"] = "kinematic"
    rate_hz: float = Field(200.0, ge=200.0, le=1000.0)
    airspeed_mps: float = Field(18.0, ge=15.0, le=25.0)
    max_bank_deg: float = Field(35.0, gt=0.0, le=45.0)
    wind_ned_mps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    turbulence_bank_deg: float = Field(2.0, ge=0.0, le=10.0)
    start_heading_deg: float = 0.0
    start_alt_agl_m: float = Field(200.0, ge=100.0, le=1000.0)
    start_ne_m: tuple[float, float] = (0.0, 0.0)
    loop: bool = True
    waypoints: list[tuple[float, float, Annotated[float, Field(ge=100.0, le=1000.0)]]] = []
    random: RandomPattern | None = None

    @model_validator(mode="after")
    def _one_plan(self) -> TrajectorySpec:
        if bool(self.waypoints) == (self.random is not None):
            raise ValueError("give exactly one of 'waypoints' or 'random'")
        return self


class ImuSpec(_Model):
    ideal: bool = False
    rate_hz: float = Field(200.0, ge=100.0, le=1000.0)


class AttitudeSpec(_Model):
    rate_hz: float = Field(50.0, ge=10.0, le=200.0)
    roll_pitch_sigma_deg: float = Field(0.5, ge=0.0, le=5.0)
    yaw_sigma_deg: float = Field(2.5, ge=0.0, le=20.0)


class BaroSpec(_Model):
    rate_hz: float = Field(20.0, ge=1.0, le=100.0)


class AttackSpec(_Model):
    """One GNSS attack; `end_s` omitted = until the end of the flight."""

    kind: Literal["jamming", "jump", "pulloff", "meaconing"]
    start_s: float = Field(ge=0.0)
    end_s: float | None = None
    flag: bool = True
    flag_delay_s: float = Field(0.0, ge=0.0)
    mode: Literal["denied", "degraded"] = "denied"
    ramp_s: float = Field(5.0, ge=0.0)
    degraded_sigma_m: float = Field(12.0, gt=0.0)
    offset_ned_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rate_mps: float = Field(1.0, ge=0.5, le=2.0)
    bearing_deg: float = 90.0
    delay_s: float = Field(5.0, gt=0.0, le=600.0)
    delay_ramp_s: float = Field(0.0, ge=0.0, le=600.0)
    """meaconing: the replay delay grows from 0 to delay_s over this time (0: at once)."""


class GnssSpec(_Model):
    rate_hz: float = Field(5.0, ge=5.0, le=10.0)
    attacks: list[AttackSpec] = []


class EffectsSpec(_Model):
    """Image effects of the rendered frames (0 / None switches one off)."""

    vignetting: float = Field(0.25, ge=0.0, le=0.9)
    gain: tuple[float, float] = (0.85, 1.15)
    gamma: tuple[float, float] = (0.85, 1.15)
    blur_sigma_px: tuple[float, float] = (0.0, 0.8)
    noise_sigma: float = Field(2.0, ge=0.0, le=30.0)
    jpeg_quality: int | None = Field(90, ge=10, le=100)
    haze: float = Field(0.0, ge=0.0, le=0.9)
    cloud_cover: float = Field(0.0, ge=0.0, le=0.9)


class BlackoutSpec(_Model):
    """A total visual blackout: frames carry no ground texture (full cloud or a black lens)."""

    start_s: float = Field(ge=0.0)
    end_s: float
    kind: Literal["cloud", "black"] = "cloud"


class CameraSpec(_Model):
    frame_rate_hz: float = Field(3.0, gt=0.0, le=30.0)
    width_px: int = Field(1280, ge=64, le=5472)
    height_px: int = Field(960, ge=48, le=3648)
    render_frames: bool = True
    effects: EffectsSpec = EffectsSpec()
    blackouts: list[BlackoutSpec] = []


class Scenario(_Model):
    """A complete flight scenario (see the shipped `scenarios/*.toml`)."""

    name: str = Field(min_length=1)
    description: str = ""
    duration_s: float = Field(gt=0.0, le=8 * 3600.0)
    utc_start: str = "2024-06-01T16:00:00Z"
    world: WorldSpec
    trajectory: TrajectorySpec
    imu: ImuSpec = ImuSpec()
    attitude: AttitudeSpec = AttitudeSpec()
    baro: BaroSpec = BaroSpec()
    gnss: GnssSpec = GnssSpec()
    camera: CameraSpec = CameraSpec()

    @model_validator(mode="after")
    def _events_in_flight(self) -> Scenario:
        for i, a in enumerate(self.gnss.attacks):
            end = self.duration_s if a.end_s is None else a.end_s
            if not (a.start_s < end <= self.duration_s + 1e-9):
                raise ValueError(f"gnss.attacks[{i}]: need start_s < end_s <= duration_s "
                                 f"({self.duration_s}), got {a.start_s}..{a.end_s}")
        spans = sorted((a.start_s, self.duration_s if a.end_s is None else a.end_s)
                       for a in self.gnss.attacks)
        for (_s0, e0), (s1, _) in itertools.pairwise(spans):
            if s1 < e0:
                raise ValueError(f"gnss.attacks overlap: one starts at {s1} s before the "
                                 f"previous ends at {e0} s")
        for i, b in enumerate(self.camera.blackouts):
            if not (b.start_s < b.end_s <= self.duration_s + 1e-9):
                raise ValueError(f"camera.blackouts[{i}]: need start_s < end_s <= duration_s, "
                                 f"got {b.start_s}..{b.end_s}")
        if self.world.kind == "synthetic" and (self.world.origin_lat_deg is None
                                               or self.world.origin_lon_deg is None):
            raise ValueError("world.origin_lat_deg and world.origin_lon_deg are required for a "
                             "synthetic world")
        return self

    def attack_end_s(self, i: int) -> float:
        a = self.gnss.attacks[i]
        return self.duration_s if a.end_s is None else a.end_s


def with_duration(scenario: Scenario, duration_s: float) -> Scenario:
    """The scenario shortened (or lengthened) to `duration_s`: attacks and blackouts that start
    after the end are dropped, those that run past it are cut at the end."""
    data = scenario.model_dump(mode="json")
    data["duration_s"] = duration_s
    attacks = []
    for a in data["gnss"]["attacks"]:
        if a["start_s"] < duration_s:
            if a["end_s"] is not None:
                a["end_s"] = min(a["end_s"], duration_s)
            attacks.append(a)
    data["gnss"]["attacks"] = attacks
    blackouts = []
    for b in data["camera"]["blackouts"]:
        if b["start_s"] < duration_s:
            b["end_s"] = min(b["end_s"], duration_s)
            blackouts.append(b)
    data["camera"]["blackouts"] = blackouts
    return parse_scenario(data, f"{scenario.name} with duration {duration_s} s")


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid scenario {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {loc}: {err['msg']}{shown}")
    return "\n".join(lines)


def parse_scenario(data: dict[str, Any], source: str = "<dict>") -> Scenario:
    """Validate a scenario mapping; ScenarioError names every bad field."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_errors(exc, source)) from None


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with terrafix."""
    folder = resources.files("terrafix.sim") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (e.g. "demo") or a TOML file path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ScenarioError(f"scenario file {p} not found")
        try:
            text, source = p.read_text(encoding="utf-8"), str(p)
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"cannot read scenario file {p}: {exc}") from None
    else:
        res = resources.files("terrafix.sim") / "scenarios" / f"{name_or_path}.toml"
        if not res.is_file():
            raise ScenarioError(f"unknown scenario {str(name_or_path)!r}; shipped: "
                                f"{shipped_scenarios()} (or give a .toml path)")
        text, source = res.read_text(encoding="utf-8"), f"{name_or_path}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {source} is not valid TOML: {exc}") from None
    return parse_scenario(data, source)

