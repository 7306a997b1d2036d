"""Small simulator datasets for the navigator and replay tests (written under pytest's tmp
folders, never into the repository).

`synthetic_flight`: procedural farmland, 640x480 frames at 3 Hz, GNSS jammed early, an
optional visual blackout: exercises odometry, labels and blackouts quickly.
`demo_flight`: the real-imagery demo loop, shortened, GNSS jammed early: exercises
registration against the WorldView-2 map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from terrafix.sim.flight import simulate_flight
from terrafix.sim.scenario import load_scenario, parse_scenario


def synthetic_scenario(duration_s: float = 36.0, jam_at_s: float = 5.0,
                       blackout: tuple[float, float] | None = (24.0, 30.0),
                       render_frames: bool = True) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "name": "test-synthetic", "duration_s": duration_s,
        "world": {"kind": "synthetic", "origin_lat_deg": 48.2, "origin_lon_deg": 35.6,
                  "ground_alt_m": 120.0},
        "trajectory": {"airspeed_mps": 18.0, "start_alt_agl_m": 220.0,
                       "start_heading_deg": 30.0,
                       "waypoints": [[300.0, 200.0, 230.0], [350.0, -250.0, 210.0],
                                     [-100.0, -300.0, 240.0]]},
        "gnss": {"attacks": [{"kind": "jamming", "start_s": jam_at_s, "mode": "denied",
                              "ramp_s": 2.0}]},
        "camera": {"width_px": 640, "height_px": 480, "render_frames": render_frames},
    }
    if blackout is not None:
        sc["camera"]["blackouts"] = [{"start_s": blackout[0], "end_s": blackout[1],
                                      "kind": "cloud"}]
    return sc


def synthetic_flight(out: Path, seed: int = 3, **kw: Any) -> Path:
    return simulate_flight(parse_scenario(synthetic_scenario(**kw), "test"), seed, out)


def demo_flight(out: Path, seed: int = 5, duration_s: float = 30.0,
                jam_at_s: float = 4.0) -> Path:
    data = load_scenario("demo").model_dump(mode="json")
    data["duration_s"] = duration_s
    data["gnss"]["attacks"][0]["start_s"] = jam_at_s
    return simulate_flight(parse_scenario(data, "demo-short"), seed, out)
