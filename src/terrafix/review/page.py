"""The review page's HTML: one self-contained file (inline CSS, no script, no network) that
reads on a phone (viewport meta, images at 100% width, wide tables scroll sideways)."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from terrafix.eval.verdicts import VERDICT_CSS

CSS = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 0.8em; max-width: 1100px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.4em; margin: 0.2em 0; } h2 { font-size: 1.15em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.4em 0 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; vertical-align: top; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; max-width: 100%; }
img { width: 100%; height: auto; border: 1px solid #ddd; margin: 0.3em 0 1em 0; }
.damage { background: #fff3cd; border: 2px solid #b8860b; padding: 0.6em; margin: 0.8em 0; }
.absent { color: #666; font-style: italic; }
.meta { color: #444; font-size: 0.9em; }
code { word-break: break-all; }
details pre { white-space: pre-wrap; word-break: break-all; font-size: 0.8em; }
"""


def esc(v: Any) -> str:
    return html.escape(str(v))


def fmt(v: Any) -> str:
    """A value for a table cell: numbers rounded for reading, NaN/None as a dash."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 0.01 else f"{v:.2f}"
    if v is None:
        return "–"
    return esc(v)


def kv_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><td>{esc(k)}</td><td class='num'>{fmt(v)}</td></tr>" for k, v in rows)
    return f"<div class='scroll'><table>{body}</table></div>"


def list_table(header: list[str], rows: list[list[Any]], limit: int = 400) -> str:
    if not rows:
        return "<p class='absent'>none</p>"
    more = ""
    if len(rows) > limit:
        more = f"<p class='meta'>{len(rows) - limit} more rows not shown.</p>"
        rows = rows[:limit]
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class='num'>{fmt(c)}</td>" if isinstance(c, int | float) and not isinstance(
            c, bool) else f"<td>{fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>{more}"


def image(name: str, caption: str) -> str:
    return f"<img src='{esc(name)}' alt='{esc(caption)}'>"


def absent(text: str) -> str:
    return f"<p class='absent'>{esc(text)}</p>"


def config_details(config: dict[str, Any] | None) -> str:
    if config is None:
        return absent("no config record in this log")
    text = json.dumps(config, indent=2, sort_keys=True)
    return f"<details><summary>full config in force</summary><pre>{esc(text)}</pre></details>"


def document(title: str, sections: list[str]) -> str:
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}{VERDICT_CSS}</style></head><body>"
            + "\n".join(sections) + "</body></html>\n")
