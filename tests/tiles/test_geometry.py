"""Polygon -> tile coverage and radius helpers."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from terrafix.geo.geodesic import distance_m
from terrafix.geo.tiles import TileId, lonlat_to_tile, tile_bounds
from terrafix.tiles.geometry import buffer_route_m, circle_polygon, tiles_covering


def _brute(poly: shapely.Geometry, z: int) -> set[TileId]:
    w, s, e, n = poly.bounds
    a, b = lonlat_to_tile(w, n, z), lonlat_to_tile(e, s, z)
    out = set()
    for x in range(a.x - 1, b.x + 2):
        for y in range(a.y - 1, b.y + 2):
            box = shapely.box(*tile_bounds(TileId(z, x, y)))
            if poly.intersects(box) and not poly.touches(box):
                out.add(TileId(z, x, y))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_tiles_covering_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(7, 2)) * 0.004 + [-105.14, 40.14]
    poly = shapely.MultiPoint(pts).convex_hull
    assert set(tiles_covering(poly, 18)) == _brute(poly, 18)


def test_a_thin_diagonal_corridor_needs_only_the_tiles_under_it() -> None:
    route = np.array([[-105.20, 40.10], [-105.05, 40.20]])
    corridor = buffer_route_m(route, 150.0)
    tiles = tiles_covering(corridor, 18)
    assert set(tiles) == _brute(corridor, 18)
    w, s, e, n = corridor.bounds
    a, b = lonlat_to_tile(w, n, 18), lonlat_to_tile(e, s, 18)
    bbox_tiles = (b.x - a.x + 1) * (b.y - a.y + 1)
    assert len(tiles) < bbox_tiles / 10


def test_a_tile_edge_polygon_covers_exactly_that_tile() -> None:
    t = TileId(18, 54511, 99110)
    assert tiles_covering(shapely.box(*tile_bounds(t)), 18) == [t]


def test_circle_polygon_contains_the_geodesic_circle() -> None:
    lat, lon, r = 40.14, -105.14, 500.0
    poly = circle_polygon(lat, lon, r)
    ring = np.asarray(poly.exterior.coords)
    d = distance_m(np.full(len(ring), lat), np.full(len(ring), lon), ring[:, 1], ring[:, 0])
    assert d.min() >= r and d.max() < r * 1.01


@pytest.mark.parametrize("seed", range(20))
def test_the_convex_fast_path_agrees_with_geos(seed: int) -> None:
    from terrafix.tiles.geometry import _convex_ring, interiors_overlap

    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(-3.0, 3.0, 0.5), np.arange(-3.0, 3.0, 0.5))
    bounds = np.column_stack([xs.ravel(), ys.ravel(), xs.ravel() + 0.5, ys.ravel() + 0.5])
    if seed % 4 == 0:  # an axis-aligned box on the grid lines: touching neighbours excluded
        poly = shapely.box(-1.0, -0.5, 0.5, 1.0)
    else:
        poly = shapely.MultiPoint(rng.normal(size=(4 + seed % 3, 2))).convex_hull
    assert _convex_ring(poly) is not None
    boxes = shapely.box(*bounds.T)
    expected = shapely.intersects(poly, boxes) & ~shapely.touches(poly, boxes)
    np.testing.assert_array_equal(interiors_overlap(poly, bounds), expected)
    # a non-convex polygon takes the GEOS path and agrees too
    notch = poly.difference(shapely.box(*poly.centroid.buffer(0.2).bounds))
    if notch.geom_type == "Polygon" and not notch.interiors:
        assert _convex_ring(notch) is None
        np.testing.assert_array_equal(
            interiors_overlap(notch, bounds),
            shapely.intersects(notch, boxes) & ~shapely.touches(notch, boxes))
