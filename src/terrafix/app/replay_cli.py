"""`terrafix replay DATASET --out DIR`: the command (kept light: the navigation stack is
imported only when the command runs, so `terrafix --help` stays fast)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def replay_command(
    dataset: Annotated[Path, typer.Argument(help="Flight dataset folder (terrafix sim run).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Navigation config (TOML); defaults otherwise.")] = None,
    backend: Annotated[str | None, typer.Option(
        help="Estimator backend: eskf or isam2 (overrides the config).")] = None,
    map_cache: Annotated[Path | None, typer.Option(
        help="Provisioned cache to register against (default: built under build/maps).")
    ] = None,
    registration: Annotated[bool, typer.Option(
        "--registration/--no-registration", help="Absolute fixes on or off.")] = True,
    duration: Annotated[float | None, typer.Option(
        help="Replay only the first SECONDS of the flight.")] = None,
    flight_tiles: Annotated[Path | None, typer.Option(
        help="Make in-flight tiles from the frames into FOLDER/<dataset name>/.")] = None,
) -> None:
    """Run the navigation core on a simulator dataset, as fast as it can.

    Writes results.jsonl (one record per output tick), events.jsonl and run.json into OUT.
    """
    from terrafix.app.replay import ReplayConf, ReplayPaths, main
    from terrafix.eval.records import RESULTS_FILE, RUN_FILE
    from terrafix.navigation.navigator import NavigatorConfig, NavigatorError
    from terrafix.sim.errors import SimError

    try:
        cfg = NavigatorConfig.from_toml(config) if config else NavigatorConfig()
        if backend is not None:
            cfg = cfg.with_backend(backend)
        if not registration:
            cfg = cfg.model_copy(update={"registration": cfg.registration.model_copy(
                update={"enabled": False})})
        from terrafix.mapping.tile_feed import FlightTilesConfig

        tiles = None if flight_tiles is None else FlightTilesConfig(
            enabled=True, folder=flight_tiles, drop_when_busy=False)
        path = main(ReplayConf(cfg, map_cache, duration_s=duration, flight_tiles=tiles),
                    ReplayPaths(dataset, out))
    except (NavigatorError, SimError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    info = json.loads((path / RUN_FILE).read_text())
    st = info["stats"]
    typer.echo(f"{st['flight_s']:.0f} s of flight in {st['wall_s']:.1f} s "
               f"({st['replay_speed_x']:.2f}x real time), {st['solutions']} solutions, "
               f"{st['fixes_fused']}/{st['registrations']} fixes fused, "
               f"odometry {st['vo_accepted']}/{st['frames']} frames")
    if info.get("flight_tiles"):
        ft = info["flight_tiles"]
        typer.echo(f"flight tiles: {ft['tiles_stored']} stored in {ft['root']} "
                   f"({ft['frames_eligible']}/{ft['frames_judged']} frames eligible)")
    typer.echo(f"wrote {path / RESULTS_FILE}")
