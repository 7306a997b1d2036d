"""`terrafix eval DIR [--dataset D]`: score a replay folder against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def _f(v: Any, unit: str = "", pct: bool = False) -> str:
    if v is None:
        return "–"
    return f"{100.0 * v:.1f}%" if pct else f"{v:.2f}{unit}"


def print_summary(s: dict[str, Any]) -> None:
    """A short human table of the headline numbers."""
    a, c = s["accuracy"], s["consistency"]
    typer.echo(f"ticks {s['output']['n_ticks']}  scored {a['n']}  "
               f"no-fix {_f(s['no_fix_share'], pct=True)}  "
               f"anchored {_f(s['anchored_share'], pct=True)}")
    typer.echo(f"horizontal: <=5 m {_f(a['within_5m'], pct=True)}  "
               f"<=20 m {_f(a['within_20m'], pct=True)}  <=50 m {_f(a['within_50m'], pct=True)}"
               f"  p95 {_f(a['p95_m'], ' m')}  max {_f(a['max_m'], ' m')}")
    typer.echo(f"consistency: inside 95% ellipse {_f(c['inside_95'], pct=True)}  "
               f"NEES(2D) {_f(c['nees_mean'])}  NEES(3D) {_f(c['nees_3d_mean'])}")
    for d in s["attacks"]:
        typer.echo(f"attack {d['kind']} at {d['start_s']:.1f} s: "
                   + (f"detected after {_f(d['latency_s'], ' s')}, GNSS offset "
                      f"{_f(d['offset_at_detection_m'], ' m')}" if d["detected"]
                      else "NOT detected"))
    typer.echo(f"false gate closures: {s['false_closures']['count']}")
    for b in s["blackouts"]:
        typer.echo(f"blackout at {b['start_s']:.1f} s: dead_reckoned after "
                   f"{_f(b['label_latency_s'], ' s')}")


def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="Replay output folder (holds results.jsonl).")],
    dataset: Annotated[Path | None, typer.Option(
        "--dataset", "-d", help="Flight dataset (default: the one named in run.json).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of RUN_DIR.")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots",
                                        help="Draw PNGs and report.html.")] = True,
) -> None:
    """Score a replay folder against ground truth and write an HTML report.

    Accuracy (% within 5/20/50 m, p95, max), covariance consistency (95% ellipse, NEES),
    GNSS attack detection and false gate closures, blackout label latency; writes
    summary.json, PNGs and report.html.
    """
    from terrafix.eval.errors import EvalError
    from terrafix.eval.evaluate import REPORT_FILE, SUMMARY_FILE, EvalConf, EvalPaths, main

    try:
        summary = main(EvalConf(plots=plots), EvalPaths(run_dir, dataset, out))
    except EvalError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    print_summary(summary)
    where = out or run_dir
    typer.echo(f"wrote {where / SUMMARY_FILE}" + (f" and {where / REPORT_FILE}" if plots else ""))
