"""Requirement verdicts: each REQUIREMENTS figure a flight shows, its value, pass or fail.

One implementation for the flight review page (`terrafix review`, from the flight log), the
evaluation report (`terrafix eval`, from the replay outputs, truth and `live.json`) and the
console: each takes a flat dict of measured figures and gets back the rows whose figure it
holds, so a figure missing from a source (no truth, no live run, a torn log) gives no row
instead of a fake pass. The bounds are the numbers of ../shared/REQUIREMENTS.md; `unit`
and `scale` say how the value is shown.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Check:
    """One requirement figure: `key` in the figures dict, the requirement id, what is
    measured, the bound as written, and the test on the raw value."""

    key: str
    requirement: str
    figure: str
    bound: str
    unit: str
    test: Callable[[float], bool]
    scale: float = 1.0
    """Shown value = raw value * scale (fractions as %)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One row of the verdict table. passed: None when the value cannot be judged (NaN)."""

    requirement: str
    figure: str
    bound: str
    value: float
    unit: str
    passed: bool | None
    note: str = ""

    @property
    def shown(self) -> str:
        if not math.isfinite(self.value):
            return "–"
        if self.unit == "yes/no":
            return "yes" if self.value == 1.0 else "no"
        v = self.value
        text = f"{v:.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.2f}"
        return f"{text} {self.unit}".strip()

    @property
    def outcome(self) -> str:
        return {True: "pass", False: "FAIL", None: "n/a"}[self.passed]


CHECKS: tuple[Check, ...] = (
    Check("gps_input_rate_hz", "A1", "GPS_INPUT rate", "5–10 Hz", "Hz",
          lambda v: 5.0 <= v <= 10.0 + 0.05),
    Check("gps_input_max_gap_ms", "A1", "GPS_INPUT max gap", "≤ 250 ms", "ms",
          lambda v: v <= 250.0),
    Check("gps_input_jitter_ms", "A1", "GPS_INPUT jitter (std of gaps)", "< 50 ms", "ms",
          lambda v: v < 50.0),
    Check("latency_p95_ms", "A5", "capture → output latency p95", "< 400 ms", "ms",
          lambda v: v < 400.0),
    Check("latency_max_ms", "A5", "capture → output latency max", "≤ 500 ms", "ms",
          lambda v: v <= 500.0),
    Check("frame_drop_rate", "A5", "frames dropped", "≤ 10 %", "%", lambda v: v <= 0.10,
          scale=100.0),
    Check("takeoff_load_s", "A5", "take-off load (cache, models, signing)", "≤ 5 s", "s",
          lambda v: v <= 5.0),
    Check("spoof_rejections_unrecorded", "N9", "spoof rejections missing from the record",
          "0 (every rejection recorded)", "", lambda v: v == 0),
    Check("recorder_unmarked_drops", "R1", "recorder drops not marked in the stream",
          "0 (every drop counted and marked)", "", lambda v: v == 0),
    Check("recorder_clean", "R4", "log closed with a clean footer", "yes", "yes/no",
          lambda v: v == 1.0),
    Check("reprojection_rmse_max_px", "N4", "reprojection RMSE of accepted fixes (max)",
          "< 2.5 px", "px", lambda v: v < 2.5),
    Check("within_50m", "N7", "error ≤ 50 m", "≥ 80 % of ticks", "%", lambda v: v >= 0.80,
          scale=100.0),
    Check("within_20m", "N7", "error ≤ 20 m", "≥ 50 % of ticks", "%", lambda v: v >= 0.50,
          scale=100.0),
    Check("p_over_30m", "N7", "P(error > 30 m)", "< 1 %", "%", lambda v: v < 0.01,
          scale=100.0),
    Check("p_over_100m", "N7", "P(error > 100 m)", "< 0.1 %", "%", lambda v: v < 0.001,
          scale=100.0),
)


def _as_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        return float(v)
    if v is None:
        return math.nan
    return None


def verdicts(figures: Mapping[str, Any], notes: Mapping[str, str] | None = None
             ) -> list[Verdict]:
    """The verdict rows for the figures present (in CHECKS order). A figure given as None or
    NaN is shown as not judgeable ("n/a"), not as a pass."""
    notes = notes or {}
    rows = []
    for c in CHECKS:
        if c.key not in figures:
            continue
        raw = _as_float(figures[c.key])
        if raw is None:
            continue
        passed = c.test(raw) if math.isfinite(raw) else None
        rows.append(Verdict(c.requirement, c.figure, c.bound, raw * c.scale, c.unit, passed,
                            notes.get(c.key, "")))
    return rows


def verdict_table_html(rows: list[Verdict]) -> str:
    """The table at the top of both reports (classes pass/fail/na, styled by VERDICT_CSS)."""
    if not rows:
        return "<p>No requirement figure could be measured from these inputs.</p>"
    n_fail = sum(r.passed is False for r in rows)
    n_pass = sum(r.passed is True for r in rows)
    head = (f"<p class='verdict-summary'><b>{n_pass} pass</b>, <b class='v-fail'>{n_fail} fail"
            f"</b>, {len(rows) - n_pass - n_fail} not judgeable</p>")
    body = "".join(
        f"<tr class='{_css(r)}'><td>{html.escape(r.requirement)}</td>"
        f"<td class='outcome'>{r.outcome}</td><td>{html.escape(r.figure)}</td>"
        f"<td>{html.escape(r.shown)}</td><td>{html.escape(r.bound)}</td>"
        f"<td>{html.escape(r.note)}</td></tr>" for r in rows)
    return (f"{head}<div class='scroll'><table class='verdicts'><tr><th>req.</th>"
            f"<th>verdict</th><th>figure</th><th>value</th><th>required</th><th>note</th></tr>"
            f"{body}</table></div>")


def _css(r: Verdict) -> str:
    return {True: "v-pass", False: "v-fail", None: "v-na"}[r.passed]


VERDICT_CSS = """
table.verdicts td, table.verdicts th { text-align: left; color: #222; font-weight: normal; }
table.verdicts th { font-weight: bold; }
table.verdicts td.outcome { font-weight: bold; text-align: center; }
tr.v-pass td.outcome { color: #fff; background: #2a7a2a; }
tr.v-fail td.outcome { color: #fff; background: #b00020; }
tr.v-na td.outcome { color: #444; background: #ddd; }
.verdict-summary .v-fail { color: #b00020; }
"""


def verdict_lines(rows: list[Verdict]) -> list[str]:
    """One console line per verdict (`A1  GPS_INPUT rate  10.0 Hz  (5–10 Hz)  pass`)."""
    return [f"{r.requirement:<3} {r.outcome:<4} {r.figure}: {r.shown} (required {r.bound})"
            + (f" - {r.note}" if r.note else "") for r in rows]
