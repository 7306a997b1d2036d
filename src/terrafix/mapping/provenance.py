"""The provenance a flight tile carries inside its own JPEG (a COM segment after SOI).

Why inside the file: the flight store is the same `TileStore` as the map cache (one row
layout for satellite and flight tiles), and a tile's row and file are written atomically
together by it. Putting the flight-specific metadata (flight id, capture time, the pose's
1-sigma, the frames merged, the change score) into the JPEG makes it part of the same atomic
write and of the content hash, with no second table to keep consistent after a crash, and it
travels to the ground with the pixels. JPEG readers skip COM segments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from terrafix.upload.protocol import ProtocolError, canonical_bytes, parse_iso

_SOI = b"\xff\xd8"
_COM = 0xFE
_TAG = b"terrafix-tile:"


def iso_utc(t: datetime) -> str:
    """UTC ISO-8601 with microseconds and a Z (the protocol's timestamp form)."""
    if t.tzinfo is None:
        raise ProvenanceError(f"timestamp {t!r} has no time zone (UTC expected)")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ProvenanceError(ValueError):
    """A flight tile without (or with unreadable) provenance."""


@dataclass(frozen=True, slots=True)
class TileProvenance:
    """flight_id; captured_utc: capture time of the newest frame used; sigma_m: the largest
    horizontal 1-sigma (m) of the poses of the frames used; trust: "normal" (<= 3 m) or
    "low" (3-5 m); frames: capture times (UTC ISO) of the frames merged, in merge order;
    change_score: 0 (same as the cached map tile) .. 1 (all changed), None without one."""

    flight_id: str
    captured_utc: datetime
    sigma_m: float
    trust: str
    frames: tuple[str, ...]
    change_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"flight_id": self.flight_id, "captured": iso_utc(self.captured_utc),
                "sigma_m": round(float(self.sigma_m), 3), "trust": self.trust,
                "frames": list(self.frames),
                "change_score": None if self.change_score is None
                else round(float(self.change_score), 4)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileProvenance:
        try:
            return cls(str(d["flight_id"]), parse_iso(d["captured"], "captured"),
                       float(d["sigma_m"]), str(d["trust"]), tuple(d.get("frames", ())),
                       None if d.get("change_score") is None else float(d["change_score"]))
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            raise ProvenanceError(f"tile provenance {d!r} is incomplete: {exc}") from None


def embed(jpeg: bytes, prov: TileProvenance) -> bytes:
    """The JPEG with a COM segment holding `prov` right after SOI."""
    if not jpeg.startswith(_SOI):
        raise ProvenanceError(f"not a JPEG: starts {jpeg[:4].hex()!r}")
    body = _TAG + canonical_bytes(prov.to_dict())
    if len(body) + 2 > 0xFFFF:
        raise ProvenanceError(f"provenance of {len(body)} bytes exceeds one JPEG segment")
    seg = bytes((0xFF, _COM)) + (len(body) + 2).to_bytes(2, "big") + body
    return jpeg[:2] + seg + jpeg[2:]


def extract(jpeg: bytes) -> TileProvenance:
    """The provenance embedded by `embed` (ProvenanceError when there is none)."""
    i = 2
    n = len(jpeg)
    while i + 4 <= n and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        length = int.from_bytes(jpeg[i + 2:i + 4], "big")
        if marker == _COM:
            body = jpeg[i + 4:i + 2 + length]
            if body.startswith(_TAG):
                try:
                    return TileProvenance.from_dict(json.loads(body[len(_TAG):]))
                except ValueError as exc:
                    raise ProvenanceError(f"tile provenance is not JSON: {exc}") from None
        if marker == 0xDA:
            break
        i += 2 + length
    raise ProvenanceError("JPEG carries no terrafix tile provenance")
