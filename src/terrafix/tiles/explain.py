"""Why a point of the map is served, downgraded or refused (`terrafix tiles explain`)."""

from __future__ import annotations

from dataclasses import dataclass

import shapely

from terrafix.tiles.freshness import FreshnessDecision, Sector
from terrafix.tiles.records import TileRecord
from terrafix.tiles.store import TileStore


@dataclass(frozen=True, slots=True)
class PointExplanation:
    """The sectors at a point, the tile covering it (if any) and the freshness decision."""

    lat_deg: float
    lon_deg: float
    sectors: tuple[Sector, ...]
    record: TileRecord | None
    decision: FreshnessDecision | None

    def lines(self) -> list[str]:
        out = [f"point {self.lat_deg:.6f}, {self.lon_deg:.6f}"]
        if self.sectors:
            out += [f"sector {s.name!r}: {s.sector_class.value}" for s in self.sectors]
        else:
            out.append("sector: none (unclassified)")
        if self.record is None:
            out.append("tile: none cached here -> nothing to serve (cache miss)")
            return out
        r = self.record
        t = r.tile
        out.append(f"tile {t.z}/{t.x}/{t.y}: captured {r.capture_date.isoformat()}, source "
                   f"{r.source!r}, sha256 {r.sha256[:16]}…, voting {r.voting_status.value}")
        assert self.decision is not None
        d = self.decision
        out.append(f"tile sector class: {d.sector_class.value} (strictest sector it overlaps); "
                   f"rule: stale after {d.rule.max_age_months} months -> "
                   f"{d.rule.stale_label.value}")
        out.append(f"decision: {d.label.value.upper()} - {d.reason}")
        return out


def explain_point(store: TileStore, lat_deg: float, lon_deg: float,
                  z: int | None = None) -> PointExplanation:
    """Explain the tile at a point: the highest zoom cached there unless `z` is given."""
    probe = shapely.Point(lon_deg, lat_deg).buffer(1e-7)
    records = store.tiles_intersecting(probe, z)
    record = max(records, key=lambda r: r.tile.z) if records else None
    decision = store.freshness_of(record) if record is not None else None
    return PointExplanation(lat_deg, lon_deg, tuple(store.freshness.sectors_at(lon_deg, lat_deg)),
                            record, decision)
