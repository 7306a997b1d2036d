"""`terrafix sim` commands: run a scenario into a dataset folder, list and show scenarios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from terrafix.sim.errors import SimError

app = typer.Typer(help="Flight simulator: scenarios -> flight datasets.", no_args_is_help=True)


@app.command("run")
def run(
    scenario: Annotated[str, typer.Option(
        "--scenario", "-s", help="Shipped scenario name (see `sim list`) or a .toml file.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Dataset folder to write (replaced if it already holds a dataset).")],
    seed: Annotated[int, typer.Option(
        "--seed", help="Random seed; the same seed gives a byte-identical dataset.")] = 1,
    duration_s: Annotated[float | None, typer.Option(
        "--duration", help="Override the scenario's duration (seconds).")] = None,
) -> None:
    """Simulate a flight and write its dataset (format: docs/dataset.md)."""
    from terrafix.sim.flight import simulate_flight
    from terrafix.sim.scenario import load_scenario, with_duration

    try:
        sc = load_scenario(scenario)
        if duration_s is not None:
            sc = with_duration(sc, duration_s)
        path = simulate_flight(sc, seed, out)
    except SimError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(path))


@app.command("list")
def list_scenarios() -> None:
    """List the shipped scenarios."""
    from terrafix.sim.scenario import load_scenario, shipped_scenarios

    for name in shipped_scenarios():
        typer.echo(f"{name:16s} {load_scenario(name).description}")


@app.command("show")
def show(scenario: Annotated[str, typer.Argument(help="Scenario name or .toml file.")]
         ) -> None:
    """Print a scenario with every default resolved (JSON)."""
    from terrafix.sim.scenario import load_scenario

    try:
        sc = load_scenario(scenario)
    except SimError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(sc.model_dump(mode="json"), indent=2, sort_keys=True))
