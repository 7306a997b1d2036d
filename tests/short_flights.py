"""Short simulated flights for the tests that run the flight controller and the onboard program
as separate processes (written under pytest's tmp folders, never into the repository)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def short_scenario_toml(name: str, duration_s: float, leg_m: float, jam_at_s: float,
                        frame_rate_hz: float, size_px: tuple[int, int]) -> str:
    """A synthetic-world scenario: two legs of `leg_m` at 300 m above ground, GNSS denied
    (and flagged) from `jam_at_s`, frames at `frame_rate_hz` of `size_px` = (width, height)."""
    return f"""
name = "{name}"
duration_s = {duration_s}
[world]
kind = "synthetic"
origin_lat_deg = 48.2
origin_lon_deg = 35.6
ground_alt_m = 120.0
[trajectory]
model = "kinematic"
start_alt_agl_m = 300.0
waypoints = [[{leg_m}, 0.0, 300.0], [{leg_m}, {leg_m}, 300.0]]
[[gnss.attacks]]
kind = "jamming"
start_s = {jam_at_s}
mode = "denied"
ramp_s = 0.0
flag = true
[camera]
frame_rate_hz = {frame_rate_hz}
width_px = {size_px[0]}
height_px = {size_px[1]}
"""


def simulate_with_cli(root: Path, scenario_toml: str, name: str, seed: int) -> Path:
    """`terrafix sim run` on the scenario (as an operator would); returns the dataset folder."""
    (root / f"{name}.toml").write_text(scenario_toml)
    out = root / "ds"
    subprocess.run([sys.executable, "-m", "terrafix.app.cli", "sim", "run", "--scenario",
                    str(root / f"{name}.toml"), "--out", str(out), "--seed", str(seed)],
                   check=True, capture_output=True)
    return out


def free_udp_port() -> int:
    """A UDP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
