"""Integrity scoring: GNSS attack detection, false gate closures, blackout label latency.

Ground truth of the attacks comes from the dataset itself (`gnss.csv` carries the simulator's
`attack` label per sample, `meta.json` the visual blackouts), so the scorer never relies on
what the navigator claims. The trust gate's state is the `gnss_trusted` column of the results:
a *closure* is a tick where it turns from trusted to untrusted.

- Detection latency of an attack: first tick at or after the attack start with the gate
  closed, minus the start (0 when the gate was already closed as the attack began).
- Offset at detection: how far the GNSS position the receiver reported (the spoofed one) was
  from the truth at that moment — the quantity the pull-off bar limits to 50 m.
- A false closure: a closure while no attack is active.
- Blackout label latency: first tick after a blackout starts whose label is `dead_reckoned`
  (or the explicit no-fix) minus the blackout start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from terrafix.eval.errors import EvalError
from terrafix.eval.records import ResultTrack
from terrafix.measurements import SourceLabel


@dataclass(frozen=True, slots=True)
class Interval:
    """A labelled time interval [start_ns, end_ns) on the flight clock."""

    kind: str
    start_ns: int
    end_ns: int

    def contains(self, t_ns: int | np.ndarray) -> bool | np.ndarray:
        return (t_ns >= self.start_ns) & (t_ns < self.end_ns)


def attack_intervals(t_ns: np.ndarray, attack: np.ndarray) -> list[Interval]:
    """Contiguous runs of the per-sample attack label (anything but "none"/"") -> intervals.

    An interval ends at the first sample after the run (or one sample period after the last
    sample of the flight), i.e. when the receiver is seen clean again."""
    t = np.asarray(t_ns, dtype=np.int64)
    a = np.asarray(attack).astype(str)
    if len(t) != len(a):
        raise EvalError(f"attack labels ({len(a)}) and times ({len(t)}) differ in length")
    out: list[Interval] = []
    period = int(np.median(np.diff(t))) if len(t) > 1 else 0
    i = 0
    while i < len(a):
        kind = a[i]
        if kind in ("none", "", "nan"):
            i += 1
            continue
        j = i
        while j + 1 < len(a) and a[j + 1] == kind:
            j += 1
        end = int(t[j + 1]) if j + 1 < len(t) else int(t[j]) + period
        out.append(Interval(kind, int(t[i]), end))
        i = j + 1
    return out


def blackout_intervals(meta: dict[str, Any]) -> list[Interval]:
    """Visual blackouts declared in a dataset's meta.json.

    Accepted shapes: `meta["events"]` entries with type (or kind) "visual_blackout" and
    start_s/end_s (what the simulator writes), or the scenario copied under
    `meta["scenario"]["camera"]["blackouts"]`."""
    found: list[tuple[float, float]] = []
    for ev in meta.get("events", []) or []:
        if isinstance(ev, dict) and "visual_blackout" in (ev.get("type"), ev.get("kind")):
            found.append((float(ev["start_s"]), float(ev["end_s"])))
    scen = meta.get("scenario") or {}
    cam = scen.get("camera", {}) if isinstance(scen, dict) else {}
    for b in cam.get("blackouts", []) or []:
        found.append((float(b["start_s"]), float(b["end_s"])))
    uniq = sorted(set(found))
    return [Interval("blackout", round(s * 1e9), round(e * 1e9)) for s, e in uniq]


def gate_closures(track: ResultTrack) -> np.ndarray:
    """Times (K,) int64 ns of ticks where gnss_trusted turns from True to False."""
    g = track.gnss_trusted.astype(bool)
    idx = np.flatnonzero(g[:-1] & ~g[1:]) + 1
    return track.t_ns[idx]


@dataclass(frozen=True, slots=True)
class AttackDetection:
    """How one GNSS attack was handled. Times in seconds from flight start."""

    kind: str
    start_s: float
    end_s: float
    detected: bool
    latency_s: float
    already_closed: bool
    offset_at_detection_m: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gnss_offset_at(t_ns: int, gnss_t_ns: np.ndarray, gnss_ne_m: np.ndarray,
                    truth_ne_m: np.ndarray) -> float:
    """Horizontal distance between the last GNSS sample at or before t_ns and the truth at
    that sample's time (NaN when the receiver had no fix)."""
    i = int(np.searchsorted(gnss_t_ns, t_ns, side="right")) - 1
    if i < 0:
        return math.nan
    d = gnss_ne_m[i] - truth_ne_m[i]
    return float(math.hypot(d[0], d[1])) if np.all(np.isfinite(d)) else math.nan


def score_attacks(track: ResultTrack, attacks: Iterable[Interval], gnss_t_ns: np.ndarray,
                  gnss_ne_m: np.ndarray, truth_at_gnss_ne_m: np.ndarray
                  ) -> list[AttackDetection]:
    """Detection of each attack by the trust gate.

    gnss_t_ns: (G,) receiver sample times; gnss_ne_m: (G, 2) what it reported (NaN when no
    fix); truth_at_gnss_ne_m: (G, 2) the truth at those times."""
    out = []
    t = track.t_ns
    g = track.gnss_trusted.astype(bool)
    for a in attacks:
        before = np.flatnonzero(t < a.start_ns)
        already = bool(len(before) and not g[before[-1]])
        inside = np.flatnonzero((t >= a.start_ns) & (t < a.end_ns) & ~g)
        if already:
            t_det, detected = a.start_ns, True
        elif len(inside):
            t_det, detected = int(t[inside[0]]), True
        else:
            t_det, detected = -1, False
        out.append(AttackDetection(
            kind=a.kind, start_s=a.start_ns * 1e-9, end_s=a.end_ns * 1e-9, detected=detected,
            latency_s=(t_det - a.start_ns) * 1e-9 if detected else math.nan,
            already_closed=already,
            offset_at_detection_m=_gnss_offset_at(t_det, gnss_t_ns, gnss_ne_m,
                                                  truth_at_gnss_ne_m) if detected
            else math.nan,
        ))
    return out


def false_closures(track: ResultTrack, attacks: Iterable[Interval]) -> np.ndarray:
    """Closure times (K,) ns that fall outside every attack interval."""
    closures = gate_closures(track)
    spans = list(attacks)
    if not spans:
        return closures
    inside = np.zeros(len(closures), dtype=bool)
    for a in spans:
        inside |= (closures >= a.start_ns) & (closures < a.end_ns)
    return closures[~inside]


@dataclass(frozen=True, slots=True)
class BlackoutResponse:
    """Label reaction to one visual blackout (seconds from flight start)."""

    start_s: float
    end_s: float
    label_latency_s: float
    failsafe_after_s: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


_DEGRADED = (SourceLabel.DEAD_RECKONED, SourceLabel.NO_FIX)


def score_blackouts(track: ResultTrack, blackouts: Iterable[Interval]) -> list[BlackoutResponse]:
    """Latency from each blackout start to the first degraded label (NaN if never), and to
    the failsafe (NaN if it never came within the blackout)."""
    out = []
    t = track.t_ns
    degraded = np.isin(track.label, _DEGRADED) | track.failsafe
    for b in blackouts:
        inside = (t >= b.start_ns) & (t < b.end_ns)
        first = np.flatnonzero(inside & degraded)
        fs = np.flatnonzero(inside & track.failsafe)
        out.append(BlackoutResponse(
            start_s=b.start_ns * 1e-9, end_s=b.end_ns * 1e-9,
            label_latency_s=(int(t[first[0]]) - b.start_ns) * 1e-9 if len(first) else math.nan,
            failsafe_after_s=(int(t[fs[0]]) - b.start_ns) * 1e-9 if len(fs) else math.nan,
        ))
    return out
