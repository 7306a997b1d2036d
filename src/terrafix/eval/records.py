"""The on-disk records of a navigation run: `results.jsonl` and `events.jsonl`.

Replay (and later the live program's file outputs) writes one JSON object per output tick
and one per integrity event; evaluation reads them back into columns. Both sides use this
module so the writer and the reader cannot disagree about a key. JSON lines, not a binary
container, because a reviewer opens these with `jq`, pandas or a text editor, and a run killed
half-way still leaves every completed line readable.

A result record (keys):
    t_ns        int, monotonic ns from flight start (the dataset's clock)
    t_s         float, the same in seconds (for humans)
    lat_deg, lon_deg, alt_m   WGS84 position (null in an explicit no-fix)
    v_ned_mps   [3] m/s
    cov_p_ned_m2  [3][3] 1-sigma² position covariance in NED metres
    cov_v_ned_m2s2 [3][3]
    yaw_rad     float
    heading_rad, heading_sigma_rad  the navigator's calibrated heading and its 1-sigma (or null)
    label       one of terrafix.measurements.SourceLabel
    anchor_age_s  seconds since the last satellite anchor (null = never anchored)
    gnss_trusted  bool
    failsafe    bool (explicit no-fix)
    radius95_m  radius of the circle holding the horizontal 95% ellipse (null if unknown)
(`SolutionRecord`, whose JSON Schema `SOLUTION_SCHEMA` the flight log's /nav/solution topic
carries.) An event record: `t_ns`, `kind` and whatever fields the event carries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from terrafix.eval.errors import EvalError
from terrafix.eval.metrics import radius95_m
from terrafix.measurements import NavSolution, SourceLabel
from terrafix.recorder.schemas import dataclass_schema, doc, record_of

RESULTS_FILE = "results.jsonl"
EVENTS_FILE = "events.jsonl"
RUN_FILE = "run.json"

_LABEL_CODES = ("satellite_anchored", "visual_propagated", "dead_reckoned", "no_fix")
SOURCE_LABELS = (SourceLabel.SATELLITE_ANCHORED, SourceLabel.VISUAL_PROPAGATED,
                 SourceLabel.DEAD_RECKONED, SourceLabel.NO_FIX)


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class SolutionRecord:
    """One navigation solution at an output tick: what the autopilot's GPS_INPUT is made
    from (position, velocity, covariances in the flight's local NED frame, source label)."""

    t_ns: int = field(metadata=doc("time of the solution on the navigator's sample clock"))
    t_s: float = field(metadata=doc("the same in seconds"))
    lat_deg: float | None = field(metadata=doc("WGS84 latitude (null in an explicit no-fix)"))
    lon_deg: float | None = field(metadata=doc("WGS84 longitude (null in an explicit no-fix)"))
    alt_m: float | None = field(metadata=doc("altitude above mean sea level"))
    v_ned_mps: list[float] = field(metadata=doc("velocity north, east, down", shape=(3,)))
    cov_p_ned_m2: list[list[float]] = field(metadata=doc(
        "position covariance (1-sigma squared) in NED", shape=(3, 3)))
    cov_v_ned_m2s2: list[list[float]] = field(metadata=doc(
        "velocity covariance in NED", shape=(3, 3)))
    yaw_rad: float | None = field(metadata=doc("heading, from north towards east"))
    label: str = field(metadata=doc("source label (REQUIREMENTS N6)", choices=SOURCE_LABELS))
    anchor_age_s: float | None = field(metadata=doc(
        "time since the capture of the last accepted satellite fix (null: never anchored)"))
    gnss_trusted: bool = field(metadata=doc("the GNSS trust gate is open"))
    failsafe: bool = field(metadata=doc("explicit no-fix: the position must not be used"))
    radius95_m: float | None = field(metadata=doc(
        "radius of the circle holding the horizontal 95% error ellipse"))
    heading_rad: float | None = field(default=None, metadata=doc(
        "the navigator's calibrated heading (odometry attitude + heading calibration), from "
        "north towards east (null: none)"))
    heading_sigma_rad: float | None = field(default=None, metadata=doc(
        "1-sigma of heading_rad (null: none)"))


SOLUTION_SCHEMA = dataclass_schema(SolutionRecord,
                                   annotations={"x-terrafix-track": True})
"""/nav/solution: the track `terrafix fdr export -f geojson` draws (see recorder.export)."""


def solution_record(sol: NavSolution) -> dict[str, Any]:
    """One results.jsonl object for a NavSolution (non-finite numbers become null)."""
    finite_pos = all(math.isfinite(v) for v in (sol.lat_deg, sol.lon_deg, sol.alt_m))
    cov = np.asarray(sol.cov_p_ned_m2, dtype=np.float64)
    return record_of(SolutionRecord(
        t_ns=int(sol.t_ns),
        t_s=round(sol.t_ns * 1e-9, 6),
        lat_deg=sol.lat_deg if finite_pos else None,
        lon_deg=sol.lon_deg if finite_pos else None,
        alt_m=sol.alt_m if finite_pos else None,
        v_ned_mps=np.asarray(sol.v_ned_mps, dtype=np.float64).tolist(),
        cov_p_ned_m2=cov.tolist(),
        cov_v_ned_m2s2=np.asarray(sol.cov_v_ned_m2s2, dtype=np.float64).tolist(),
        yaw_rad=_finite_or_none(sol.yaw_rad),
        label=sol.label,
        anchor_age_s=_finite_or_none(sol.anchor_age_s),
        gnss_trusted=bool(sol.gnss_trusted),
        failsafe=bool(sol.failsafe),
        radius95_m=_finite_or_none(float(radius95_m(cov[None, :2, :2])[0])),
        heading_rad=_finite_or_none(sol.heading_rad),
        heading_sigma_rad=_finite_or_none(math.sqrt(sol.heading_var_rad2))
        if sol.heading_var_rad2 >= 0 else None,
    ))


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} into a JSON record")


def _clean(obj: Any) -> Any:
    """Non-finite floats -> None, recursively (JSON has no inf/NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.floating):
        return _clean(float(obj))
    return obj


def dumps_record(record: dict[str, Any]) -> bytes:
    """One JSON line (with the newline)."""
    return orjson.dumps(_clean(record), default=_default) + b"\n"


class JsonlWriter:
    """Appends records to a .jsonl file, one line each, flushed per record so that a killed
    run leaves every completed record readable."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] = self.path.open("wb")
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(dumps_record(record))
        self.count += 1

    def write_many(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            self.write(r)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a .jsonl file; a truncated last line (killed writer) is skipped, any other
    malformed line is an error naming its line number."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path} not found: expected a .jsonl file written by replay")
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if i == len(lines):  # last line without newline: the writer was killed mid-record
                return
            raise EvalError(f"{path}:{i}: not a JSON object ({exc})") from None
        if not isinstance(obj, dict):
            raise EvalError(f"{path}:{i}: expected a JSON object, got {type(obj).__name__}")
        yield obj


@dataclass(frozen=True, slots=True)
class ResultTrack:
    """results.jsonl as columns (N ticks).

    t_ns: (N,) int64. lat_deg, lon_deg, alt_m: (N,) float64, NaN in a no-fix.
    v_ned_mps: (N, 3). cov_p_ned_m2: (N, 3, 3) 1-sigma². label: (N,) str.
    anchor_age_s: (N,) float64, inf = never anchored. gnss_trusted, failsafe: (N,) bool.
    """

    t_ns: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    alt_m: np.ndarray
    v_ned_mps: np.ndarray
    cov_p_ned_m2: np.ndarray
    label: np.ndarray
    anchor_age_s: np.ndarray
    gnss_trusted: np.ndarray
    failsafe: np.ndarray

    def __len__(self) -> int:
        return len(self.t_ns)

    @property
    def t_s(self) -> np.ndarray:
        return self.t_ns * 1e-9

    @property
    def has_position(self) -> np.ndarray:
        """(N,) bool: ticks that carry a usable position (not failsafe, finite)."""
        return ~self.failsafe & np.isfinite(self.lat_deg) & np.isfinite(self.lon_deg)


_REQUIRED = ("t_ns", "lat_deg", "lon_deg", "alt_m", "cov_p_ned_m2", "label", "gnss_trusted")


def _num(x: Any, default: float = math.nan) -> float:
    return default if x is None else float(x)


def track_from_records(records: Iterable[dict[str, Any]], source: str = "<records>"
                       ) -> ResultTrack:
    """Columns from result records (see the module docstring for the keys)."""
    rows = list(records)
    if not rows:
        raise EvalError(f"{source}: no result records")
    for k in _REQUIRED:
        if k not in rows[0]:
            raise EvalError(f"{source}: first record lacks key {k!r}; expected keys {_REQUIRED}")
    n = len(rows)
    t = np.array([int(r["t_ns"]) for r in rows], dtype=np.int64)
    if n > 1 and np.any(np.diff(t) < 0):
        i = int(np.argmax(np.diff(t) < 0))
        raise EvalError(f"{source}: t_ns goes backwards at record {i + 2} "
                        f"({t[i]} -> {t[i + 1]}); expected non-decreasing times")
    nan3 = [math.nan] * 3
    nan33 = [[math.nan] * 3] * 3
    cov = np.array([[[_num(v) for v in row] for row in (r.get("cov_p_ned_m2") or nan33)]
                    for r in rows], dtype=np.float64)
    if cov.shape != (n, 3, 3):
        raise EvalError(f"{source}: cov_p_ned_m2 must be 3x3 per record, got {cov.shape[1:]}")
    return ResultTrack(
        t_ns=t,
        lat_deg=np.array([_num(r["lat_deg"]) for r in rows]),
        lon_deg=np.array([_num(r["lon_deg"]) for r in rows]),
        alt_m=np.array([_num(r["alt_m"]) for r in rows]),
        v_ned_mps=np.array([[_num(v) for v in (r.get("v_ned_mps") or nan3)] for r in rows]),
        cov_p_ned_m2=cov,
        label=np.array([str(r["label"]) for r in rows]),
        anchor_age_s=np.array([_num(r.get("anchor_age_s"), math.inf) for r in rows]),
        gnss_trusted=np.array([bool(r["gnss_trusted"]) for r in rows]),
        failsafe=np.array([bool(r.get("failsafe", False)) for r in rows]),
    )


def load_results(path: Path) -> ResultTrack:
    """results.jsonl -> ResultTrack."""
    return track_from_records(iter_jsonl(path), str(path))


def load_events(path: Path) -> list[dict[str, Any]]:
    """events.jsonl -> list of event dicts (empty when the file does not exist: a run with
    no integrity event writes none)."""
    path = Path(path)
    if not path.exists():
        return []
    return list(iter_jsonl(path))


def label_codes(labels: np.ndarray) -> np.ndarray:
    """(N,) int codes of labels in the order anchored, visual, dead-reckoned, no-fix (-1 for
    anything else), for plotting a timeline."""
    lut = {name: i for i, name in enumerate(_LABEL_CODES)}
    return np.array([lut.get(str(x), -1) for x in labels], dtype=np.int64)


LABEL_ORDER = _LABEL_CODES
