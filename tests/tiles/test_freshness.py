"""Freshness rules, sector files and the explanation given to the operator."""

from __future__ import annotations

from datetime import date

import pytest
import shapely
from shapely.geometry import mapping

from terrafix.tiles.errors import SectorError
from terrafix.tiles.freshness import FreshnessPolicy, SectorClass, add_months
from terrafix.tiles.records import FreshnessLabel


def _policy(*sectors: tuple[str, str, shapely.Geometry]) -> FreshnessPolicy:
    return FreshnessPolicy.from_geojson({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(g), "properties": {"name": n,
                                                                    "classification": c}}
        for n, c, g in sectors]})


def test_add_months_follows_the_calendar() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 8, 31), 6) == date(2024, 2, 29)
    assert add_months(date(2024, 11, 15), 6) == date(2025, 5, 15)


def test_active_conflict_imagery_older_than_six_months_is_rejected_to_the_day() -> None:
    p = FreshnessPolicy()
    captured = date(2024, 1, 15)
    on_the_day = p.decide("active_conflict", captured, date(2024, 7, 15))
    assert on_the_day.label == FreshnessLabel.FRESH
    day_after = p.decide("active_conflict", captured, date(2024, 7, 16))
    assert day_after.label == FreshnessLabel.REJECTED
    assert "2024-01-15" in day_after.reason and "6 months" in day_after.reason
    assert "rejected" in day_after.reason


def test_stale_rear_imagery_is_served_but_downgraded() -> None:
    d = FreshnessPolicy().decide("stable_rear", date(2020, 1, 1), date(2024, 1, 1))
    assert d.label == FreshnessLabel.DOWNGRADED and "served" in d.reason
    assert FreshnessPolicy().decide("stable_rear", date(2023, 6, 1), date(2024, 1, 1)).label \
        == FreshnessLabel.FRESH


def test_a_tile_takes_the_class_of_the_strictest_sector_it_overlaps() -> None:
    rear = shapely.box(0.0, 0.0, 1.0, 1.0)
    front = shapely.box(0.9, 0.0, 2.0, 1.0)
    p = _policy(("rear", "stable_rear", rear), ("front", "active_conflict", front))
    assert p.class_for_bounds((0.1, 0.1, 0.2, 0.2)) == SectorClass.STABLE_REAR
    assert p.class_for_bounds((0.85, 0.1, 0.95, 0.2)) == SectorClass.ACTIVE_CONFLICT
    # touching the conflict sector's edge only does not count
    assert p.class_for_bounds((0.8, 0.1, 0.9, 0.2)) == SectorClass.STABLE_REAR
    assert p.class_for_bounds((5.0, 5.0, 6.0, 6.0)) == SectorClass.UNCLASSIFIED
    assert [s.name for s in p.sectors_at(0.95, 0.5)] == ["front", "rear"]


@pytest.mark.parametrize(("doc", "match"), [
    ({"type": "Feature"}, "FeatureCollection"),
    ({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
         "properties": {"classification": "stable_rear"}}]}, "Polygon"),
    ({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(shapely.box(0, 0, 1, 1)),
         "properties": {"name": "x", "classification": "hot"}}]}, "'hot'"),
])
def test_malformed_sector_files_are_refused_with_the_reason(doc: dict, match: str) -> None:
    with pytest.raises(SectorError, match=match):
        FreshnessPolicy.from_geojson(doc)


def test_sectors_round_trip_through_geojson() -> None:
    p = _policy(("a", "active_conflict", shapely.box(0, 0, 1, 1)))
    q = FreshnessPolicy.from_geojson(p.to_geojson())
    assert [(s.name, s.sector_class) for s in q.sectors] == [("a", SectorClass.ACTIVE_CONFLICT)]
    assert q.sectors[0].polygon.equals(p.sectors[0].polygon)
