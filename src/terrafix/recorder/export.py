"""Exports of a flight log for tools that do not read MCAP: JSON lines, CSV, a GeoJSON track.

JSON lines keep every record exactly (the payload bytes are copied, not re-encoded). CSV is one
topic at a time (columns differ per topic): nested objects become dotted columns, arrays stay
JSON text in one cell. The GeoJSON track is a LineString of the positions of one topic (by
default the one whose schema is marked as the track, else the first whose schema has `lat_deg`
and `lon_deg`) with per-point time, label and 95% radius, for a map or QGIS.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable
from typing import IO, Any

import orjson

from terrafix.recorder.errors import RecorderError
from terrafix.recorder.reader import FlightLog


def export_jsonl(log: FlightLog, out: IO[bytes], topics: Iterable[str] | None = None) -> int:
    """One line per record: {"topic", "t_ns", "sequence", "payload"}. Returns the line count."""
    n = 0
    for m in log.messages(topics):
        head = orjson.dumps({"topic": m.topic, "t_ns": m.t_ns, "sequence": m.sequence})
        out.write(head[:-1] + b',"payload":' + m.data + b"}\n")
        n += 1
    return n


def flatten(payload: Any, prefix: str = "") -> dict[str, Any]:
    """Nested objects -> dotted keys; arrays -> JSON text; scalars unchanged."""
    row: dict[str, Any] = {}
    if isinstance(payload, dict):
        for key, value in payload.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                row.update(flatten(value, name))
            elif isinstance(value, list):
                row[name] = orjson.dumps(value).decode()
            else:
                row[name] = value
    else:
        row[prefix or "value"] = payload
    return row


def export_csv(log: FlightLog, topic: str, out: IO[str]) -> int:
    """Rows of `topic`: t_ns, sequence, then the payload's flattened fields in first-seen
    order. Returns the row count."""
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = {"t_ns": None, "sequence": None}
    for m in log.messages([topic]):
        row = {"t_ns": m.t_ns, "sequence": m.sequence, **flatten(m.payload())}
        columns.update(dict.fromkeys(row))
        rows.append(row)
    if not rows and topic not in log.scan_all():
        raise RecorderError(f"topic {topic!r}: not in {log.folder}")
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return len(rows)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


TRACK_ANNOTATION = "x-terrafix-track"
"""Top-level key of a topic schema that marks it as the flight's track (the navigation
solution): preferred over other topics with positions (e.g. each frame's fix)."""

POINT_PROPERTIES = ("label", "radius95_m")
"""Per-point fields of the track topic exported beside the time, when its schema has them.
Only fields that are (almost) never null: GDAL types a list holding nulls as JSON text, and
boolean lists are not read by every GDAL client (pyogrio fails on them)."""


def track_topic(log: FlightLog, lat_field: str = "lat_deg", lon_field: str = "lon_deg") -> str:
    """The topic whose schema declares both position fields: the one marked as the track
    (TRACK_ANNOTATION) if any, else the first."""
    found = []
    for topic, info in log.scan_all().items():
        props = info.schema.get("properties", {})
        if lat_field in props and lon_field in props:
            found.append((not info.schema.get(TRACK_ANNOTATION, False), topic))
    if not found:
        raise RecorderError(
            f"{log.folder}: no topic whose schema has {lat_field!r} and {lon_field!r}; "
            "expected one (or name it with --topic)"
        )
    return min(found, key=lambda f: f[0])[1]


def export_geojson(
    log: FlightLog,
    out: IO[bytes],
    topic: str | None = None,
    lat_field: str = "lat_deg",
    lon_field: str = "lon_deg",
    alt_field: str = "alt_m",
) -> int:
    """A FeatureCollection with the track of `topic` as one LineString ([lon, lat, alt]).

    Per-point properties are arrays parallel to the coordinates (GDAL's GeoJSON driver reads
    them as list fields, QGIS shows them): `time_utc` (ISO 8601, from the flight header's
    clock), `t_s` (seconds since the recorder started) and those of POINT_PROPERTIES the
    topic's schema has (label, 95% radius, ...). Records without a finite position (null, an
    explicit no-fix) are skipped. Returns the number of points.
    """
    topic = topic or track_topic(log, lat_field, lon_field)
    schema_props = log.scan_all().get(topic)
    names = [p for p in POINT_PROPERTIES
             if schema_props is not None and p in schema_props.schema.get("properties", {})]
    coords: list[list[float]] = []
    times: list[int] = []
    columns: dict[str, list[Any]] = {p: [] for p in names}
    for m in log.messages([topic]):
        p = m.payload()
        lat, lon = p.get(lat_field), p.get(lon_field)
        if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
            continue
        point = [float(lon), float(lat)]
        alt = p.get(alt_field)
        if isinstance(alt, (int, float)):
            point.append(float(alt))
        coords.append(point)
        times.append(m.t_ns)
        for name in names:
            columns[name].append(p.get(name))
    start = _parse_utc(log.header.start_utc)
    t0 = log.header.start_t_ns
    properties: dict[str, Any] = {
        "flight_id": log.header.flight_id,
        "topic": topic,
        "points": len(coords),
        "t_start_ns": times[0] if times else None,
        "t_end_ns": times[-1] if times else None,
        "time_utc": [_utc(start, t - t0) for t in times],
        "t_s": [round((t - t0) * 1e-9, 3) for t in times],
    }
    properties.update(columns)
    feature = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": coords},
        "properties": properties,
    }
    out.write(
        orjson.dumps(
            {"type": "FeatureCollection", "features": [feature]}, option=orjson.OPT_INDENT_2
        )
    )
    out.write(b"\n")
    return len(coords)


def _parse_utc(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RecorderError(f"flight header start_utc {text!r}: expected ISO 8601") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _utc(start: dt.datetime, dt_ns: int) -> str:
    when = start + dt.timedelta(microseconds=dt_ns // 1000)
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
