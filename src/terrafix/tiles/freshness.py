"""Freshness rules: how old imagery may be, depending on the sector it shows (REQUIREMENTS T3).

Where the ground changes fast (an active conflict: craters, new earthworks, destroyed
buildings) old imagery misleads the matcher more than it helps, so it is refused; in a quiet
rear area stale imagery is still the best map there is, so it is served with a DOWNGRADED label
that the navigation can weigh. Sectors are GeoJSON polygons with a `classification` property.
A tile takes the class of the strictest sector its interior overlaps, and its age is counted in
calendar months from its capture date to "today" (the flight date), so "older than 6 months"
means exactly that on the calendar, not 183 days.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from terrafix.tiles.errors import SectorError
from terrafix.tiles.records import FreshnessLabel


class SectorClass(StrEnum):
    """Classification of an operating sector; order of strictness: conflict > rear > none."""

    ACTIVE_CONFLICT = "active_conflict"
    STABLE_REAR = "stable_rear"
    UNCLASSIFIED = "unclassified"


_STRICTNESS = {SectorClass.ACTIVE_CONFLICT: 2, SectorClass.STABLE_REAR: 1,
               SectorClass.UNCLASSIFIED: 0}


@dataclass(frozen=True, slots=True)
class FreshnessRule:
    """Imagery older than `max_age_months` gets `stale_label` (REJECTED or DOWNGRADED)."""

    max_age_months: int
    stale_label: FreshnessLabel


DEFAULT_RULES: Mapping[SectorClass, FreshnessRule] = {
    SectorClass.ACTIVE_CONFLICT: FreshnessRule(6, FreshnessLabel.REJECTED),
    SectorClass.STABLE_REAR: FreshnessRule(12, FreshnessLabel.DOWNGRADED),
    SectorClass.UNCLASSIFIED: FreshnessRule(12, FreshnessLabel.DOWNGRADED),
}


@dataclass(frozen=True, slots=True)
class Sector:
    """A named polygon (WGS84 lon/lat) with its classification."""

    name: str
    sector_class: SectorClass
    polygon: BaseGeometry


@dataclass(frozen=True, slots=True)
class FreshnessDecision:
    """The label given to imagery and the reason, in words an operator can act on."""

    label: FreshnessLabel
    sector_class: SectorClass
    rule: FreshnessRule
    capture_date: date
    today: date
    stale_after: date
    reason: str


def add_months(d: date, months: int) -> date:
    """The same day `months` calendar months later (clamped to the month's last day)."""
    month0 = d.month - 1 + months
    year, month = d.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def parse_sector_class(value: Any, where: str) -> SectorClass:
    try:
        return SectorClass(value)
    except ValueError:
        raise SectorError(f"{where}: classification {value!r} is not one of "
                          f"{[c.value for c in SectorClass]}") from None


@dataclass(frozen=True, slots=True)
class FreshnessPolicy:
    """Sectors plus the rule of each class."""

    sectors: tuple[Sector, ...] = ()
    rules: Mapping[SectorClass, FreshnessRule] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def __post_init__(self) -> None:
        for s in self.sectors:
            shapely.prepare(s.polygon)
        missing = set(SectorClass) - set(self.rules)
        if missing:
            raise SectorError(f"freshness rules missing for {sorted(missing)}")

    # --- GeoJSON -------------------------------------------------------------------------
    @classmethod
    def from_geojson(cls, doc: Mapping[str, Any], where: str = "sectors") -> FreshnessPolicy:
        """Read a FeatureCollection of Polygon/MultiPolygon features with a `classification`
        (and optional `name`) property."""
        if doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
            raise SectorError(f"{where}: expected a GeoJSON FeatureCollection, got "
                              f"type {doc.get('type')!r}")
        sectors = []
        for i, feat in enumerate(doc["features"]):
            props = feat.get("properties") or {}
            name = str(props.get("name", f"sector-{i}"))
            geom_doc = feat.get("geometry") or {}
            if geom_doc.get("type") not in ("Polygon", "MultiPolygon"):
                raise SectorError(f"{where}: feature {name!r} must be a Polygon or MultiPolygon, "
                                  f"got {geom_doc.get('type')!r}")
            try:
                geom = shape(geom_doc)
            except Exception as exc:  # shapely raises several types for malformed input
                raise SectorError(f"{where}: feature {name!r} has invalid geometry: {exc}") from exc
            if not geom.is_valid or geom.is_empty:
                raise SectorError(f"{where}: feature {name!r} geometry is empty or invalid")
            sectors.append(Sector(name, parse_sector_class(props.get("classification"),
                                                           f"{where}: feature {name!r}"), geom))
        return cls(tuple(sectors))

    @classmethod
    def load(cls, path: str | Path) -> FreshnessPolicy:
        p = Path(path)
        try:
            doc = json.loads(p.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SectorError(f"cannot read sector file {p}: {exc}") from exc
        return cls.from_geojson(doc, str(p))

    def to_geojson(self) -> dict[str, Any]:
        return {"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": mapping(s.polygon),
             "properties": {"name": s.name, "classification": s.sector_class.value}}
            for s in self.sectors]}

    # --- classification ------------------------------------------------------------------
    def sectors_at(self, lon_deg: float, lat_deg: float) -> list[Sector]:
        """Sectors containing a point (boundary included), strictest first."""
        pt = shapely.Point(lon_deg, lat_deg)
        found = [s for s in self.sectors if s.polygon.intersects(pt)]
        return sorted(found, key=lambda s: -_STRICTNESS[s.sector_class])

    def class_for_bounds(self, bounds: tuple[float, float, float, float]) -> SectorClass:
        """Class of the strictest sector whose interior overlaps the box's interior."""
        best = SectorClass.UNCLASSIFIED
        if not self.sectors:
            return best
        b = box(*bounds)
        for s in self.sectors:
            if _STRICTNESS[s.sector_class] > _STRICTNESS[best] and s.polygon.intersects(b) \
                    and not s.polygon.touches(b):
                best = s.sector_class
        return best

    def classes_for_bounds(self, bounds_list: Iterable[tuple[float, float, float, float]]
                           ) -> list[SectorClass]:
        return [self.class_for_bounds(b) for b in bounds_list]

    # --- decision ------------------------------------------------------------------------
    def decide(self, sector_class: str, capture_date: date, today: date) -> FreshnessDecision:
        cls = parse_sector_class(sector_class, "tile record")
        rule = self.rules[cls]
        stale_after = add_months(capture_date, rule.max_age_months)
        if today <= stale_after:
            label = FreshnessLabel.FRESH
            reason = (f"captured {capture_date.isoformat()}, within {rule.max_age_months} months "
                      f"of {today.isoformat()} (stale after {stale_after.isoformat()})")
        else:
            label = rule.stale_label
            verdict = ("rejected: never served" if label == FreshnessLabel.REJECTED
                       else "served, labelled downgraded")
            reason = (f"captured {capture_date.isoformat()}, more than {rule.max_age_months} "
                      f"months before {today.isoformat()} (stale since "
                      f"{stale_after.isoformat()}); {cls.value} rule: {verdict}")
        return FreshnessDecision(label, cls, rule, capture_date, today, stale_after, reason)
