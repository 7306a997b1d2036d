"""The requirement verdicts shared by the review page, the eval report and the console."""

from __future__ import annotations

import math

from terrafix.eval.verdicts import verdict_lines, verdict_table_html, verdicts


def test_each_bound_is_the_requirement_s_and_absent_figures_give_no_row() -> None:
    rows = {v.figure: v for v in verdicts({
        "gps_input_rate_hz": 4.9, "gps_input_max_gap_ms": 250.0, "gps_input_jitter_ms": 50.0,
        "latency_p95_ms": 399.0, "frame_drop_rate": 0.11, "recorder_clean": True})}
    assert rows["GPS_INPUT rate"].passed is False  # 5-10 Hz (A1)
    assert rows["GPS_INPUT max gap"].passed is True  # <= 250 ms
    assert rows["GPS_INPUT jitter (std of gaps)"].passed is False  # < 50 ms
    assert rows["capture → output latency p95"].passed is True  # < 400 ms (A5)
    assert rows["frames dropped"].passed is False and rows["frames dropped"].shown == "11 %"
    assert rows["log closed with a clean footer"].shown == "yes"
    assert "capture → output latency max" not in rows  # not measured: no row, no fake pass
    assert {v.requirement for v in rows.values()} == {"A1", "A5", "R4"}


def test_an_unmeasurable_value_is_not_judged() -> None:
    (row,) = verdicts({"takeoff_load_s": math.nan})
    assert row.passed is None and row.outcome == "n/a" and row.shown == "–"
    (row,) = verdicts({"takeoff_load_s": None})
    assert row.passed is None


def test_table_and_console_lines_say_pass_and_fail() -> None:
    rows = verdicts({"takeoff_load_s": 6.0, "latency_max_ms": 120.0},
                    notes={"takeoff_load_s": "cold disk"})
    html = verdict_table_html(rows)
    assert "<b>1 pass</b>" in html and "1 fail" in html and "cold disk" in html
    lines = verdict_lines(rows)
    assert lines[0].startswith("A5  pass capture → output latency max: 120 ms")
    assert lines[1].startswith("A5  FAIL take-off load") and "cold disk" in lines[1]
