"""STATUSTEXT hygiene and per-severity rate limiting; RELOC hint parsing and validation."""

import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.errors import RelocHintError
from terrafix.autopilot.ground_station import StatusTextLimiter, sanitize_statustext
from terrafix.autopilot.reloc_hint import (
    ack_text,
    hint_from_command,
    nack_text,
    parse_reloc_text,
)

WARN, CRIT = C.SEVERITY_WARNING, C.SEVERITY_CRITICAL


def test_statustext_is_ascii_and_at_most_50_characters():
    out = sanitize_statustext("  Höhe über Grund " + "x" * 80)
    assert len(out) == 50
    assert out.startswith("H?he ?ber Grund")
    assert all(32 <= ord(c) < 127 for c in out)


def test_unkeyed_messages_over_budget_are_dropped_and_counted():
    lim = StatusTextLimiter({WARN: 2.0})
    assert lim.offer(WARN, "a", 0.0) == "a"
    assert lim.offer(WARN, "b", 0.5) is None
    assert lim.offer(WARN, "c", 1.9) is None
    assert lim.suppressed == 2
    assert lim.offer(WARN, "d", 2.0) == "d"


def test_budgets_are_per_severity():
    lim = StatusTextLimiter({WARN: 2.0, CRIT: 1.0})
    assert lim.offer(WARN, "w", 0.0) == "w"
    assert lim.offer(CRIT, "c", 0.1) == "c"


def test_keyed_messages_coalesce_to_the_latest():
    lim = StatusTextLimiter({WARN: 2.0})
    assert lim.offer(WARN, "TF a->b", 0.0, key="label") == "TF a->b"
    assert lim.offer(WARN, "TF b->c", 0.5, key="label") is None
    assert lim.offer(WARN, "TF c->d", 1.0, key="label") is None
    assert lim.due(1.5) == []
    assert lim.due(2.0) == [(WARN, "TF c->d")]
    assert lim.suppressed == 0


def test_must_deliver_messages_are_never_lost_and_carry_a_count():
    lim = StatusTextLimiter({CRIT: 1.0})
    assert lim.offer(CRIT, "SPOOF: jump 900m", 0.0, key="spoof", must_deliver=True)
    for t in (0.1, 0.2, 0.3):
        assert lim.offer(CRIT, "SPOOF: jump 950m", t, key="spoof", must_deliver=True) is None
    assert lim.pending == 1
    assert lim.due(1.0) == [(CRIT, "SPOOF: jump 950m x3")]
    assert lim.suppressed == 0 and lim.pending == 0


def test_repeat_count_fits_in_50_characters():
    lim = StatusTextLimiter({CRIT: 1.0})
    long = "S" * 50
    lim.offer(CRIT, long, 0.0, must_deliver=True)
    lim.offer(CRIT, long, 0.1, must_deliver=True)
    lim.offer(CRIT, long, 0.2, must_deliver=True)
    [(_, text)] = lim.due(5.0)
    assert len(text) == 50 and text.endswith(" x2")


@pytest.mark.parametrize("text,expected", [
    ("RELOC:50.4501,30.5234,500", (50.4501, 30.5234, 500.0)),
    ("RELOC: -33.9,  151.2 , 25.5 ", (-33.9, 151.2, 25.5)),
    ("RELOC:0,0,10", (0.0, 0.0, 10.0)),
])
def test_valid_reloc_text(text, expected):
    h = parse_reloc_text(text, 5, (255, 190))
    assert (h.lat_deg, h.lon_deg, h.radius_m) == pytest.approx(expected)
    assert h.source == "STATUSTEXT" and h.sender == (255, 190) and h.t_ns == 5
    assert len(ack_text(h)) <= C.STATUSTEXT_MAX_CHARS


@pytest.mark.parametrize("text,reason", [
    ("RELOC:95,30,500", "lat 95 outside"),
    ("RELOC:50,-181,500", "lon -181 outside"),
    ("RELOC:50,30,5", "radius 5 m outside"),
    ("RELOC:50,30,90000", "radius 90000 m outside"),
    ("RELOC:50;30;500", "expected RELOC:<lat>,<lon>,<radius_m>"),
    ("RELOC:fifty,30,500", "expected RELOC"),
    ("RELOC:50,30", "expected RELOC"),
])
def test_invalid_reloc_text_gives_a_reason(text, reason):
    with pytest.raises(RelocHintError, match=reason) as e:
        parse_reloc_text(text, 0, (255, 190))
    assert len(nack_text(str(e.value))) <= C.STATUSTEXT_MAX_CHARS


def test_reloc_command_params_and_nan():
    h = hint_from_command((300.0, 0, 0, 0, 48.5, 35.1, 0), 1, (255, 190))
    assert (h.radius_m, h.lat_deg, h.lon_deg, h.source) == (300.0, 48.5, 35.1, "COMMAND_LONG")
    with pytest.raises(RelocHintError, match="non-finite"):
        hint_from_command((float("nan"), 0, 0, 0, 48.5, 35.1, 0), 1, (255, 190))
