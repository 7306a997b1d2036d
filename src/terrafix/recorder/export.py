"""Exports of a flight log for tools that do not read MCAP: JSON lines, CSV, a GeoJSON track.

JSON lines keep every record exactly (the payload bytes are copied, not re-encoded). CSV is one
topic at a time (columns differ per topic): nested objects become dotted columns, arrays stay
JSON text in one cell. The GeoJSON track is a LineString of the positions of one topic (by
default the first whose schema has `lat_deg` and `lon_deg`), for a map or QGIS.
"""

from __future__ import annotations

import csv
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


def track_topic(log: FlightLog, lat_field: str = "lat_deg", lon_field: str = "lon_deg") -> str:
    """The first topic whose schema declares both position fields."""
    for topic, info in log.scan_all().items():
        props = info.schema.get("properties", {})
        if lat_field in props and lon_field in props:
            return topic
    raise RecorderError(
        f"{log.folder}: no topic whose schema has {lat_field!r} and {lon_field!r}; "
        "expected one (or name it with --topic)"
    )


def export_geojson(
    log: FlightLog,
    out: IO[bytes],
    topic: str | None = None,
    lat_field: str = "lat_deg",
    lon_field: str = "lon_deg",
    alt_field: str = "alt_m",
) -> int:
    """A FeatureCollection with the track of `topic` as one LineString ([lon, lat, alt]).

    Records without a finite position (null) are skipped. Returns the number of points.
    """
    topic = topic or track_topic(log, lat_field, lon_field)
    coords: list[list[float]] = []
    times: list[int] = []
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
    feature = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": coords},
        "properties": {
            "flight_id": log.header.flight_id,
            "topic": topic,
            "points": len(coords),
            "t_start_ns": times[0] if times else None,
            "t_end_ns": times[-1] if times else None,
        },
    }
    out.write(
        orjson.dumps(
            {"type": "FeatureCollection", "features": [feature]}, option=orjson.OPT_INDENT_2
        )
    )
    out.write(b"\n")
    return len(coords)
