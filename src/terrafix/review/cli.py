"""`terrafix review FLIGHT_DIR [-o DIR] [--truth DATASET]`: the flight review page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def review_command(
    flight_dir: Annotated[Path, typer.Argument(
        help="Flight log folder (recorder.folder/<flight id>, holding segment-*.mcap).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default FLIGHT_DIR/review).")] = None,
    truth: Annotated[Path | None, typer.Option(
        "--truth", help="Simulator dataset of the flight: adds the error against truth.")
    ] = None,
) -> None:
    """Build the flight review page (review.html + PNGs) from the flight log alone.

    Verdicts against the requirements the log can show, the track over the cached map,
    95% radius and anchor age, labels, GNSS trust and every integrity event, registration
    outcomes, autopilot output rate and gaps, latency by stage, recorder counters, in-flight
    tiles and upload when recorded, thermal state. A damaged log is read up to the damage.
    """
    from terrafix.eval.verdicts import verdict_lines
    from terrafix.review.build import build_review
    from terrafix.review.errors import ReviewError

    try:
        result = build_review(flight_dir, out, truth)
    except ReviewError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for w in result.damage:
        typer.echo(f"damaged log, read up to the damage: {w}")
    for line in verdict_lines(result.verdicts):
        typer.echo(line)
    typer.echo(f"review: {result.page}")
