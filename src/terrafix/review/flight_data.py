"""A recorded flight read back into what the review page shows, from the MCAP log alone.

One pass over the flight folder (`FlightLog.messages()`), every record sorted by topic. Topic
names are matched without their leading slash, so `/nav/solution` and `nav/solution` are one.
Topics that other components add (in-flight tiles, upload outcomes, PX4/MSP outputs) are
found by name, not assumed: a log that lacks them gives an empty list, and the page says so.
A torn log (kill -9, power loss) gives every record before the damage; the damage is kept in
`damage` for the page to state.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from terrafix.eval.records import ResultTrack, track_from_records
from terrafix.recorder import FlightLog, RecorderWarning
from terrafix.recorder.flight import FlightFooter, FlightHeader
from terrafix.recorder.topics import EVENTS_TOPIC, LOG_TOPIC
from terrafix.review.errors import ReviewError

SOLUTION_TOPIC = "nav/solution"
EVENT_TOPIC = "nav/event"
FRAME_TOPIC = "nav/frame"
CONFIG_TOPIC = "config"
LATENCY_TOPIC = "nav/latency"
TAKEOFF_TOPIC = "flight/takeoff"
STATUS_TOPIC = "flight/status"
SUMMARY_TOPIC = "flight/summary"
THERMAL_TOPIC = "system/thermal"
OUTPUT_NAMES = ("gps_input", "msp", "global_position_sensor", "position_output")
"""A topic whose name holds one of these is a position output to the autopilot (one record
per message sent): ArduPilot GPS_INPUT, iNav MSP2_SENSOR_GPS, PX4 GLOBAL_POSITION_SENSOR."""
TILE_NAMES = ("tile",)
UPLOAD_NAMES = ("upload",)


def _name(topic: str) -> str:
    return topic.lstrip("/")


@dataclass(slots=True)
class Record:
    """One message: its log time (companion monotonic ns) and decoded payload."""

    t_ns: int
    data: Any


@dataclass(slots=True)
class FlightData:
    """Everything the review needs, by topic. `topics`: record counts per topic seen."""

    folder: Path
    header: FlightHeader
    footer: FlightFooter | None
    damage: list[str]
    by_topic: dict[str, list[Record]] = field(default_factory=dict)

    def records(self, topic: str) -> list[Record]:
        return self.by_topic.get(topic, [])

    def payloads(self, topic: str) -> list[Any]:
        return [r.data for r in self.records(topic)]

    def matching(self, names: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[str]:
        """Topics whose name contains one of `names` (recorder-internal topics excluded)."""
        return sorted(t for t in self.by_topic
                      if any(n in t for n in names) and not t.startswith("fdr/")
                      and t not in exclude)

    @property
    def config(self) -> dict[str, Any] | None:
        recs = self.payloads(CONFIG_TOPIC)
        return recs[0] if recs and isinstance(recs[0], dict) else None

    @property
    def t0_ns(self) -> int:
        """The first record's time: the page's time axis starts there."""
        firsts = [r[0].t_ns for r in self.by_topic.values() if r]
        return min(firsts) if firsts else 0

    def track(self) -> ResultTrack | None:
        recs = [r.data for r in self.records(SOLUTION_TOPIC) if isinstance(r.data, dict)]
        if not recs:
            return None
        recs.sort(key=lambda d: int(d["t_ns"]))
        return track_from_records(recs, f"{self.folder}:{SOLUTION_TOPIC}")

    def output_topic(self) -> str | None:
        found = self.matching(OUTPUT_NAMES)
        return found[0] if found else None

    def output_times_ns(self) -> np.ndarray:
        """(N,) send times of the position output's messages (ns, sorted)."""
        topic = self.output_topic()
        if topic is None:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.array([r.t_ns for r in self.records(topic)], dtype=np.int64))

    def last(self, topic: str) -> dict[str, Any] | None:
        recs = self.payloads(topic)
        return recs[-1] if recs and isinstance(recs[-1], dict) else None


def load_flight(folder: str | Path) -> FlightData:
    """Read every readable record of the flight folder (see the module docstring)."""
    folder = Path(folder)
    try:
        log = FlightLog(folder)
    except Exception as exc:  # RecorderFormatError and OS errors: not a flight folder
        raise ReviewError(f"{folder}: cannot read the flight log ({exc}); expected a flight "
                          "folder of segment-*.mcap files (recorder.folder/<flight id>)"
                          ) from None
    by_topic: dict[str, list[Record]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecorderWarning)
        for msg in log.messages():
            try:
                data = msg.payload()
            except ValueError:
                data = None
            by_topic.setdefault(_name(msg.topic), []).append(Record(msg.t_ns, data))
    return FlightData(folder, log.header, log.footer, list(log.warnings), by_topic)


# --- figures -------------------------------------------------------------------------------
def output_figures(t_ns: np.ndarray) -> dict[str, float]:
    """Rate, gaps and jitter of a message stream (times in ns)."""
    if len(t_ns) < 2:
        return {"count": float(len(t_ns)), "gps_input_rate_hz": math.nan,
                "gps_input_max_gap_ms": math.nan, "gps_input_jitter_ms": math.nan,
                "gaps_over_250ms": math.nan}
    gaps_ms = np.diff(t_ns) / 1e6
    return {"count": float(len(t_ns)),
            "gps_input_rate_hz": float(1000.0 / gaps_ms.mean()),
            "gps_input_max_gap_ms": float(gaps_ms.max()),
            "gps_input_jitter_ms": float(gaps_ms.std()),
            "gaps_over_250ms": float(np.sum(gaps_ms > 250.0))}


def latency_figures(latency: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95/max of capture -> output, overall and per stage (ms)."""
    total = np.array([d["total_ms"] for d in latency if d.get("total_ms") is not None])
    if not len(total):
        return {}
    stages: dict[str, list[float]] = {}
    for d in latency:
        for k, v in (d.get("stage_ms") or {}).items():
            if v is not None:
                stages.setdefault(k, []).append(float(v))
    reg = np.array([d["total_ms"] for d in latency if d.get("registered")])
    return {
        "latency_p50_ms": float(np.percentile(total, 50)),
        "latency_p95_ms": float(np.percentile(total, 95)),
        "latency_max_ms": float(total.max()),
        "latency_registered_p95_ms": float(np.percentile(reg, 95)) if len(reg) else math.nan,
        "stage_p50_ms": {k: float(np.median(v)) for k, v in stages.items()},
        "stage_p95_ms": {k: float(np.percentile(v, 95)) for k, v in stages.items()},
        "n": len(total),
    }


def frame_drop_rate(fd: FlightData) -> tuple[float, str]:
    """Dropped share of the frames the camera delivered, and where the figure comes from:
    the closing summary when the flight closed, else the last status record, else the frame
    indices the navigator reported (a gap in the indices is a dropped frame)."""
    s = fd.last(SUMMARY_TOPIC)
    if s is not None and s.get("frame_drop_rate") is not None:
        return float(s["frame_drop_rate"]), "flight summary"
    st = fd.last(STATUS_TOPIC)
    if st is not None and st.get("frames_seen"):
        seen, done = int(st["frames_seen"]), int(st.get("frames_processed", 0))
        return max(0.0, (seen - done) / seen), "last status record (flight not closed)"
    idx = sorted({int(d["index"]) for d in fd.payloads(FRAME_TOPIC)
                  if isinstance(d, dict) and "index" in d})
    if len(idx) > 1:
        span = idx[-1] - idx[0] + 1
        return (span - len(idx)) / span, "frame indices in the log"
    return math.nan, "no frame records"


def recorder_figures(fd: FlightData) -> dict[str, Any]:
    """Counters from the footer (when the flight closed) and the drops marked in the stream
    (`dropped` events: `count` records of `producer`). unmarked_drops: dropped records the
    footer counts that no event marks (R1 says there must be none)."""
    marked = 0
    kinds: dict[str, int] = {}
    for d in fd.payloads(_name(EVENTS_TOPIC)):
        if not isinstance(d, dict):
            continue
        kind = str(d.get("kind", "?"))
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "dropped":
            marked += int(d.get("count", 0))
    out: dict[str, Any] = {"events_by_kind": kinds, "dropped_marked": marked,
                           "log_records": len(fd.records(_name(LOG_TOPIC)))}
    f = fd.footer
    if f is not None:
        out.update({
            "clean_shutdown": f.clean_shutdown, "records_written": f.records_written,
            "records_dropped": f.records_dropped, "dropped_overrun": f.dropped_overrun,
            "lost_disk": f.lost_disk, "rejected": f.rejected, "bytes_written": f.bytes_written,
            "rollovers": f.rollovers, "segments": len(f.segments),
            "degraded_episodes": f.degraded_episodes,
            "unmarked_drops": max(0, f.dropped_overrun - marked),
            "producers": {k: {"written": c.written, "dropped": c.dropped,
                              "lost_disk": c.lost_disk, "rejected": c.rejected}
                          for k, c in sorted(f.producers.items())}})
    return out
