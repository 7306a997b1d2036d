"""The HTML evaluation report: one self-contained page next to its PNGs.

Plain HTML with inline CSS and relative image links, so the folder can be zipped, opened from
disk or attached to a review without a server.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from terrafix.eval.verdicts import VERDICT_CSS, verdict_table_html, verdicts

_CSS = """
body { font-family: sans-serif; margin: 0 auto; padding: 0.8em; max-width: 1200px; color: #222; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 10px; text-align: right; font-size: 0.9em; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
img { width: 100%; height: auto; border: 1px solid #ddd; margin-bottom: 1em; }
.fail { color: #b00; font-weight: bold; } .pass { color: #070; }
code { word-break: break-all; }
"""


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞"
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    if v is None:
        return "–"
    return html.escape(str(v))


def _kv_table(rows: dict[str, Any]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>"
                   for k, v in rows.items())
    return (f"<div class='scroll'><table><tr><th>metric</th><th>value</th></tr>{body}</table>"
            "</div>")


def _list_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in keys) + "</tr>"
                   for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def summary_figures(s: dict[str, Any]) -> dict[str, Any]:
    """The verdict figures an evaluation summary holds: accuracy against truth, and the live
    run's output, latency, drops and take-off load when live.json was there."""
    figures: dict[str, Any] = {k: s["accuracy"][k] for k in (
        "within_50m", "within_20m", "p_over_30m", "p_over_100m") if k in s.get("accuracy", {})}
    live = s.get("live") or {}
    for k in ("gps_input_rate_hz", "gps_input_max_gap_ms", "gps_input_jitter_ms",
              "latency_p95_ms", "latency_max_ms", "frame_drop_rate", "takeoff_load_s"):
        if k in live:
            figures[k] = live[k]
    return figures


def write_report(path: Path, summary: dict[str, Any], images: dict[str, str]) -> Path:
    """Write report.html at `path`. `summary` is the evaluation summary (see
    `terrafix.eval.evaluate`); `images` maps captions to PNG file names next to `path`."""
    s = summary
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport'"
             f" content='width=device-width, initial-scale=1'><title>terrafix evaluation"
             f"</title><style>{_CSS}{VERDICT_CSS}</style></head><body>",
             "<h1>terrafix navigation evaluation</h1>",
             f"<p>run: <code>{html.escape(str(s.get('run_dir', '')))}</code><br>"
             f"dataset: <code>{html.escape(str(s.get('dataset', '')))}</code></p>",
             "<h2>Verdicts</h2>" + verdict_table_html(verdicts(summary_figures(s), {
                 k: "as received by the flight controller" for k in (
                     "gps_input_rate_hz", "gps_input_max_gap_ms", "gps_input_jitter_ms")}))]
    if s.get("live"):
        live = {k: v for k, v in s["live"].items() if not isinstance(v, dict | list)}
        parts.append("<h2>Live run (what the flight controller accepted)</h2>"
                     + _kv_table(live))
    parts.append("<h2>Horizontal accuracy</h2>" + _kv_table(s["accuracy"]))
    parts.append("<h2>Covariance consistency</h2>" + _kv_table(s["consistency"]))
    parts.append("<h2>Labels and outputs</h2>" + _kv_table({
        **{f"share {k}": v for k, v in s["labels"].items()},
        "anchored share": s["anchored_share"], "no-fix share": s["no_fix_share"],
        "vertical p95 (m)": s["vertical_p95_m"],
        "output rate (Hz)": s["output"]["rate_hz"], "max output gap (s)": s["output"]["max_gap_s"],
        "ticks": s["output"]["n_ticks"]}))
    if s.get("run_stats"):
        parts.append("<h2>Run</h2>" + _kv_table(s["run_stats"]))
    parts.append("<h2>GNSS attacks</h2>" + _list_table(s["attacks"]))
    fc = s["false_closures"]
    parts.append(f"<p>False gate closures (outside every attack): <b>{fc['count']}</b> "
                 f"{_fmt(', '.join(f'{t:.1f} s' for t in fc['times_s']))}</p>")
    parts.append("<h2>Visual blackouts</h2>" + _list_table(s["blackouts"]))
    for caption, name in images.items():
        parts.append(f"<h2>{html.escape(caption)}</h2><img src='{html.escape(name)}' "
                     f"alt='{html.escape(caption)}'>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
