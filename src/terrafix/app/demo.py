"""`terrafix demo` (v0): simulate the demo flight and draw an overview of it.

Why this exists before the onboard pipeline: it shows in one picture that the simulated world
is the one the map describes — the trajectory and camera footprints over the map imagery
(WorldView-2, 2014-06, the map provider's image), and frames rendered from WorldView-3 (2014-10,
the camera's world) beside the map seen from the same pose. Later versions grow this into the
full onboard run on the simulated flight. Outputs are generated, never committed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from terrafix.sim.dataset import FlightDataset, load_dataset

log = logging.getLogger(__name__)


def _footprint_px(ds: FlightDataset, map_world, t_ns: int) -> np.ndarray:
    """Footprint corners (4, 2) of the frame at t_ns in map pixels."""
    return map_world.footprint_px(ds.camera_pose_at(t_ns), ds.intrinsics, ds.local_frame)


def draw_overview(ds: FlightDataset, out_png: Path, n_frames: int = 3,
                  footprint_every_s: float = 10.0) -> Path:
    """Overview figure of a flight over the dgsamples imagery (see module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    from terrafix.sim.world import load_dgsamples_world

    map_world = load_dgsamples_world("wv2", ds.ground_alt_m)
    tr = ds.truth
    u, v = map_world.lla_to_pixel(tr.lat_deg, tr.lon_deg)
    fig = plt.figure(figsize=(16, 9), dpi=110)
    grid = fig.add_gridspec(n_frames, 3, width_ratios=[2.2, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(map_world.image, cmap="gray", vmin=0, vmax=255)
    sc = ax.scatter(u[::20], v[::20], c=tr.t_ns[::20] * 1e-9, s=2, cmap="plasma")
    fig.colorbar(sc, ax=ax, fraction=0.035, pad=0.01, label="flight time (s)")
    fix = np.isfinite(ds.gnss.lat_deg)
    gu, gv = map_world.lla_to_pixel(ds.gnss.lat_deg[fix], ds.gnss.lon_deg[fix])
    ax.plot(gu, gv, ".", ms=2, color="lime", label="GNSS fixes (until jammed)")
    t_frames = ds.frames.t_ns
    step = max(1, round(footprint_every_s * ds.meta["camera"]["frame_rate_hz"]))
    for i in range(0, len(t_frames), step):
        ax.add_patch(Polygon(_footprint_px(ds, map_world, int(t_frames[i])), closed=True,
                             fill=False, lw=0.7, ec="cyan", alpha=0.8))
    ax.plot(u[0], v[0], "w^", ms=9, label="take-off point / start")
    picks = np.linspace(len(t_frames) * 0.15, len(t_frames) * 0.85, n_frames).astype(int)
    colours = ["yellow", "orange", "red", "magenta", "white"]
    for k, i in enumerate(picks):
        ax.add_patch(Polygon(_footprint_px(ds, map_world, int(t_frames[i])), closed=True,
                             fill=False, lw=2.0, ec=colours[k % len(colours)]))
    ax.set_title(f"{ds.meta['scenario']['name']}: truth track (coloured by time) and camera "
                 f"footprints every {footprint_every_s:.0f} s over the map (WorldView-2)",
                 fontsize=9)
    ax.legend(loc="lower left", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    for k, i in enumerate(picks):
        t = int(t_frames[i])
        frame = ds.load_frame(int(i)).image
        pose = ds.camera_pose_at(t)
        map_view = map_world.render(pose, ds.intrinsics, ds.local_frame)
        state = ds.truth_at(t)
        agl = -state.p_ned_m[2] + ds.ground_down_m
        for col, (img, title) in enumerate((
                (frame, f"frame {i} (t={t * 1e-9:.1f} s, {agl:.0f} m AGL) - WorldView-3"),
                (map_view, "map (WorldView-2) seen from the same pose"))):
            a = fig.add_subplot(grid[k, col + 1])
            a.imshow(img, cmap="gray", vmin=0, vmax=255)
            a.set_title(title, fontsize=7, color="black")
            for spine in a.spines.values():
                spine.set_edgecolor(colours[k % len(colours)])
                spine.set_linewidth(2.0)
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def run_demo(out: Path, seed: int = 1, scenario: str = "demo") -> Path:
    """Simulate the demo flight into out/dataset and write out/overview.png."""
    from terrafix.sim.flight import simulate_flight
    from terrafix.sim.scenario import load_scenario

    dataset_dir = simulate_flight(load_scenario(scenario), seed, out / "dataset")
    return draw_overview(load_dataset(dataset_dir), out / "overview.png")


def main(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "demo-output"),
    seed: Annotated[int, typer.Option("--seed", help="Simulation seed.")] = 1,
) -> None:
    """Simulate the demo flight over the real imagery and write an overview figure."""
    png = run_demo(out, seed)
    typer.echo(f"dataset: {out / 'dataset'}")
    typer.echo(f"overview: {png}")
