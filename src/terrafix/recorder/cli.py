"""`terrafix fdr ...`: look at a recorded flight folder (pyulog-style small tools).

info    header, footer counters, segments, topics, damage warnings (--json for scripts)
check   exit 0 only if the log has a clean footer (the post-flight upload gate)
export  jsonl | csv (one topic) | geojson (track)
plot    one-page PNG: record rates, track, chosen fields
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from terrafix.recorder.errors import RecorderError
from terrafix.recorder.export import export_csv, export_geojson, export_jsonl
from terrafix.recorder.reader import FlightLog, RecorderWarning, footer_problem

app = typer.Typer(
    help="Flight data recorder: inspect, export and plot a recorded flight folder.",
    no_args_is_help=True,
    add_completion=False,
)

Folder = Annotated[Path, typer.Argument(help="Flight folder (holds segment-*.mcap).")]


def _open(folder: Path) -> FlightLog:
    try:
        return FlightLog(folder)
    except RecorderError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def info_dict(log: FlightLog) -> dict[str, Any]:
    """Everything `info` shows, as plain data (the --json output)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecorderWarning)
        topics = log.scan_all()
    return {
        "folder": str(log.folder),
        "header": asdict(log.header),
        "footer": asdict(log.footer) if log.footer else None,
        "clean_footer": footer_problem(log.folder) is None,
        "segments": [
            {
                "name": s.name,
                "bytes": s.size_bytes,
                "messages": s.messages,
                "complete": s.complete,
                "damage": s.damage,
            }
            for s in log.scans.values()
        ],
        "topics": {
            name: {
                "schema": t.schema_name,
                "messages": t.messages,
                "first_t_ns": t.first_t_ns,
                "last_t_ns": t.last_t_ns,
            }
            for name, t in sorted(topics.items())
        },
        "warnings": list(log.warnings),
    }


def format_info(d: dict[str, Any]) -> str:
    """The human-readable `info` text."""
    h = d["header"]
    t0 = h["start_t_ns"]
    lines = [
        f"flight        {h['flight_id']}",
        f"software      {h['software_version']}",
        f"config hash   {h['config_hash']}",
        f"started (UTC) {h['start_utc']}",
        f"versions      record schemas {h['schema_version']}, format {h['format_version']}",
        "keys          "
        + (", ".join(f"{k}={v}" for k, v in sorted(h["key_fingerprints"].items())) or "-"),
    ]
    total = sum(s["bytes"] for s in d["segments"])
    lines.append(f"segments      {len(d['segments'])} ({total} bytes)")
    f = d["footer"]
    if f is None:
        lines.append("footer        MISSING (recording interrupted)")
    else:
        lines.append(
            f"footer        {'clean' if f['clean_shutdown'] else 'NOT CLEAN'}: "
            f"written {f['records_written']}, dropped {f['records_dropped']} "
            f"(overrun {f['dropped_overrun']}, disk {f['lost_disk']}), rejected {f['rejected']}, "
            f"rollovers {f['rollovers']}, bytes {f['bytes_written']}"
        )
    lines.append(f"upload gate   {'clean footer' if d['clean_footer'] else 'REFUSED'}")
    lines.append("topics:")
    width = max((len(n) for n in d["topics"]), default=5)
    for name, t in d["topics"].items():
        span = ""
        if t["first_t_ns"] is not None:
            span = f"{(t['first_t_ns'] - t0) / 1e9:10.3f} .. {(t['last_t_ns'] - t0) / 1e9:10.3f} s"
        lines.append(f"  {name:<{width}}  {t['messages']:>9}  {t['schema']:<28} {span}")
    for s in d["segments"]:
        if s["damage"]:
            lines.append(f"damage: {s['name']}: {s['damage']}")
    for w in d["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


@app.command()
def info(
    folder: Folder,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show a flight log's header, footer counters, segments and topics."""
    d = info_dict(_open(folder))
    if as_json:
        typer.echo(orjson.dumps(d, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(format_info(d))


@app.command()
def check(folder: Folder) -> None:
    """Exit 0 if the log was closed cleanly and is complete, else print why and exit 1."""
    problem = footer_problem(folder)
    if problem is not None:
        typer.echo(f"not clean: {problem}", err=True)
        raise typer.Exit(1)
    typer.echo("clean")


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    geojson = "geojson"


@app.command()
def export(
    folder: Folder,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.jsonl,
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic", "-t", help="Topic(s); csv needs exactly one; geojson: the track topic."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file ('-' = stdout).")] = Path(
        "-"
    ),
) -> None:
    """Export records as JSON lines, one topic as CSV, or the track as GeoJSON."""
    log = _open(folder)
    topics = list(topic or [])
    binary = fmt is not Format.csv
    stream: Any
    if str(out) == "-":
        stream = sys.stdout.buffer if binary else sys.stdout
    else:
        stream = open(out, "wb" if binary else "w", newline="" if not binary else None)  # noqa: SIM115
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RecorderWarning)
            if fmt is Format.jsonl:
                n = export_jsonl(log, stream, topics or None)
            elif fmt is Format.csv:
                if len(topics) != 1:
                    typer.echo("error: csv needs exactly one --topic", err=True)
                    raise typer.Exit(2)
                n = export_csv(log, topics[0], stream)
            else:
                n = export_geojson(log, stream, topics[0] if topics else None)
    except RecorderError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        if stream not in (sys.stdout, sys.stdout.buffer):
            stream.close()
        else:
            stream.flush()
    for w in log.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"{n} {'points' if fmt is Format.geojson else 'records'} exported", err=True)


@app.command()
def plot(
    folder: Folder,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")],
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="'topic:dotted.field' to plot over time (repeatable)."),
    ] = None,
    track: Annotated[
        str | None, typer.Option("--track", help="Topic with lat_deg/lon_deg for the track.")
    ] = None,
) -> None:
    """Plot record rates per topic, the track and chosen fields into one PNG."""
    from terrafix.recorder.plot import plot_flight  # matplotlib only when plotting

    log = _open(folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RecorderWarning)
            plot_flight(log, out, list(field or []), track)
    except RecorderError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {out}")
