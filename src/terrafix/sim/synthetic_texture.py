"""Procedural farmland texture for the synthetic world, generated per square tile on demand.

Why procedural: the real imagery covers 1 km², but visual odometry and long flights need tens
of kilometres of matchable ground. The texture imitates what makes farmland matchable or not:
parcels of different brightness with crop-row stripes (repetitive, the hard part), roads and
field boundaries on a slightly irregular grid, curvy dirt tracks, tree clumps, buildings with
shadows, brightness variation at several scales, and fine grain. Every pixel is a pure function
of (seed, world position): tiles join seamlessly and a flight seen twice looks the same.

Coordinates: world metres x = east, y = south of the world anchor; level-0 pixel (i, j) of tile
(tx, ty) has its centre at x = (tx*T + j + 0.5) * res, y = (ty*T + i + 0.5) * res.
Landmarks (ground-control-style targets: bright 1.5 m disc in a dark 3 m ring) sit on a jittered
150 m lattice at known positions, for geometric tests.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)

PARCEL_M = 220.0
LANDMARK_SPACING_M = 150.0
LANDMARK_INNER_M = 1.5
LANDMARK_OUTER_M = 3.0


def hash_uniform(seed: int, a: np.ndarray | int, b: np.ndarray | int, salt: int) -> np.ndarray:
    """Deterministic uniform [0, 1) values for integer keys (splitmix64 finaliser)."""
    with np.errstate(over="ignore"):
        a64 = np.asarray(a, dtype=np.int64).astype(np.uint64)
        b64 = np.asarray(b, dtype=np.int64).astype(np.uint64)
        h = (np.uint64(seed & 0xFFFFFFFF) * _M1) ^ (a64 * _M2) ^ (b64 * _M3) \
            ^ (np.uint64(salt) * _M1 * _M2)
        h = (h ^ (h >> np.uint64(30))) * _M2
        h = (h ^ (h >> np.uint64(27))) * _M3
        h = h ^ (h >> np.uint64(31))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _axis_weights(coords_m: np.ndarray, spacing_m: float, first: int, count: int
                  ) -> np.ndarray:
    """(len(coords), count) smoothstep interpolation weights onto lattice nodes
    first..first+count-1 (node k at k * spacing_m)."""
    f = coords_m / spacing_m
    k0 = np.floor(f).astype(np.int64)
    t = f - k0
    s = t * t * (3.0 - 2.0 * t)
    w = np.zeros((len(coords_m), count), dtype=np.float32)
    rows = np.arange(len(coords_m))
    w[rows, k0 - first] = 1.0 - s
    w[rows, k0 + 1 - first] = s
    return w


def value_noise(seed: int, salt: int, xs_m: np.ndarray, ys_m: np.ndarray,
                spacing_m: float) -> np.ndarray:
    """Smooth value noise in [-1, 1] on the grid xs (W,) x ys (H,) -> (H, W) float32,
    separable so that it is two small matrix products."""
    kx0 = math.floor(xs_m[0] / spacing_m)
    kx1 = math.floor(xs_m[-1] / spacing_m) + 1
    ky0 = math.floor(ys_m[0] / spacing_m)
    ky1 = math.floor(ys_m[-1] / spacing_m) + 1
    kx = np.arange(kx0, kx1 + 1)
    ky = np.arange(ky0, ky1 + 1)
    lattice = (2.0 * hash_uniform(seed, kx[None, :], ky[:, None], salt) - 1.0
               ).astype(np.float32)
    wx = _axis_weights(xs_m, spacing_m, kx0, len(kx))
    wy = _axis_weights(ys_m, spacing_m, ky0, len(ky))
    return wy @ lattice @ wx.T


def _boundaries(seed: int, k: np.ndarray, salt: int) -> np.ndarray:
    """Jittered parcel boundary positions (metres along a rotated axis) for indices k."""
    return k * PARCEL_M + (hash_uniform(seed, k, 0, salt) - 0.5) * 0.5 * PARCEL_M


def _cells(seed: int, u: np.ndarray, salt: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Parcel index along one rotated axis for every pixel, returned as (index - k_first,
    k_first, boundaries) where boundaries[i] is the lower boundary of parcel k_first + i.
    Only the few parcels of one tile are hashed, not every pixel."""
    k0 = np.floor(u / PARCEL_M).astype(np.int64)
    k_first = int(k0.min()) - 1
    ks = np.arange(k_first, int(k0.max()) + 3)
    b = _boundaries(seed, ks, salt)
    rel = k0 - k_first
    rel -= (u < b[rel]).astype(np.int64)
    return rel, k_first, b


def landmarks_in(seed: int, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Landmark centres (K, 2) as world (x east, y south) metres inside [x0, x1) x [y0, y1)."""
    s = LANDMARK_SPACING_M
    ix = np.arange(math.floor(x0 / s) - 1, math.floor(x1 / s) + 2)
    iy = np.arange(math.floor(y0 / s) - 1, math.floor(y1 / s) + 2)
    gx, gy = np.meshgrid(ix, iy)
    gx, gy = gx.ravel(), gy.ravel()
    px = (gx + 0.2 + 0.6 * hash_uniform(seed, gx, gy, 901)) * s
    py = (gy + 0.2 + 0.6 * hash_uniform(seed, gx, gy, 902)) * s
    keep = (px >= x0) & (px < x1) & (py >= y0) & (py < y1)
    return np.column_stack((px[keep], py[keep]))


def _draw_objects(img: np.ndarray, seed: int, tx: int, ty: int, tile_px: int, res: float,
                  origin_px: tuple[int, int]) -> None:
    """Trees, buildings and tracks owned by tile (tx, ty), drawn into `img` whose pixel (0, 0)
    is the global level-0 pixel `origin_px` (objects may overhang into neighbour tiles)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, tx & 0xFFFFFFFF, ty & 0xFFFFFFFF, 77])
    ox = tx * tile_px - origin_px[0]
    oy = ty * tile_px - origin_px[1]
    sh = 4  # fixed-point bits for sub-pixel drawing
    scale = 1 << sh

    def pt(x: float, y: float) -> tuple[int, int]:
        return round((ox + x) * scale), round((oy + y) * scale)

    # Dirt tracks: smooth random walks.
    for _ in range(rng.integers(0, 3)):
        x, y = rng.uniform(0, tile_px, 2)
        heading = rng.uniform(0, 2 * math.pi)
        pts = []
        for _ in range(40):
            pts.append(pt(x, y))
            heading += rng.normal(0, 0.15)
            x += math.cos(heading) * 8.0 / res
            y += math.sin(heading) * 8.0 / res
        width = max(1, round(rng.uniform(2.0, 3.5) / res))
        cv2.polylines(img, [np.array(pts, dtype=np.int32)], False,
                      float(rng.uniform(150, 190)), width, cv2.LINE_AA, sh)
    # Tree clumps: dark discs with a shadow to the north-west.
    for _ in range(rng.integers(2, 7)):
        cx, cy = rng.uniform(0, tile_px, 2)
        for _ in range(rng.integers(3, 25)):
            x = cx + rng.normal(0, 12.0 / res)
            y = cy + rng.normal(0, 12.0 / res)
            r = rng.uniform(1.5, 5.0) / res
            cv2.circle(img, pt(x - 0.6 * r, y - 0.6 * r), int(r * scale), 25.0, -1,
                       cv2.LINE_AA, sh)
            cv2.circle(img, pt(x, y), int(r * scale), float(rng.uniform(45, 80)), -1,
                       cv2.LINE_AA, sh)
    # Buildings: rotated rectangles with a bright roof and a dark shadow.
    if rng.random() < 0.5:
        bx, by = rng.uniform(0, tile_px, 2)
        for _ in range(rng.integers(1, 8)):
            x = bx + rng.normal(0, 25.0 / res)
            y = by + rng.normal(0, 25.0 / res)
            w, h = rng.uniform(6, 25, 2) / res
            ang = rng.uniform(0, 180)
            box = cv2.boxPoints(((x, y), (w, h), ang))
            shadow = box + np.array([0.35 * w, 0.35 * h])
            cv2.fillPoly(img, [np.array([pt(*p) for p in shadow], np.int32)], 20.0,
                         cv2.LINE_AA, sh)
            cv2.fillPoly(img, [np.array([pt(*p) for p in box], np.int32)],
                         float(rng.uniform(170, 245)), cv2.LINE_AA, sh)


def synthetic_tile(seed: int, tx: int, ty: int, tile_px: int = 1024, res: float = 0.25
                   ) -> np.ndarray:
    """Level-0 texture of tile (tx, ty): (tile_px, tile_px) uint8."""
    j = np.arange(tile_px)
    xs = (tx * tile_px + j + 0.5) * res
    ys = (ty * tile_px + j + 0.5) * res
    X, Y = np.meshgrid(xs, ys)
    theta = 0.2 + 1.2 * hash_uniform(seed, 0, 0, 1)[()]  # parcel grid orientation
    c, s = math.cos(theta), math.sin(theta)
    U = c * X + s * Y
    V = -s * X + c * Y
    iu, ku0, bu = _cells(seed, U, 11)
    iv, kv0, bv = _cells(seed, V, 12)
    # Per-parcel attributes on the small table of this tile's parcels (2 halves per parcel).
    ku_tab = np.arange(ku0, ku0 + len(bu))[:, None, None]
    half_tab = np.arange(2)[None, :, None]
    kv_tab = np.arange(kv0, kv0 + len(bv))[None, None, :]
    field_tab = ku_tab * 2 + half_tab
    split = hash_uniform(seed, ku_tab[:, 0, :], kv_tab[:, 0, :], 13) < 0.5
    frac = 0.3 + 0.4 * hash_uniform(seed, ku_tab[:, 0, :], kv_tab[:, 0, :], 14)
    base_tab = (60.0 + 140.0 * hash_uniform(seed, field_tab, kv_tab, 21)).astype(np.float32)
    period_tab = (2.5 + 9.0 * hash_uniform(seed, field_tab, kv_tab, 22)).astype(np.float32)
    amp_tab = (4.0 + 22.0 * hash_uniform(seed, field_tab, kv_tab, 23) ** 2).astype(np.float32)
    along_u_tab = hash_uniform(seed, field_tab, kv_tab, 24) < 0.5
    bu0 = bu[iu]
    bu1 = bu[np.minimum(iu + 1, len(bu) - 1)]
    half = (((U - bu0) > frac[iu, iv] * (bu1 - bu0)) & split[iu, iv]).astype(np.int64)
    base = base_tab[iu, half, iv]
    period = period_tab[iu, half, iv]
    amp = amp_tab[iu, half, iv]
    phase = np.where(along_u_tab[iu, half, iv], U, V).astype(np.float32)
    img = base + amp * np.sin(np.float32(2.0 * np.pi) * phase / period)
    img += 18.0 * value_noise(seed, 31, xs, ys, 90.0)
    img += 9.0 * value_noise(seed, 32, xs, ys, 12.0)
    img += 6.0 * value_noise(seed, 33, xs, ys, 1.5)
    img += 4.0 * value_noise(seed, 34, xs, ys, 0.6)
    # Roads and field boundaries along the parcel grid.
    road_u_tab = hash_uniform(seed, np.arange(ku0, ku0 + len(bu)), 0, 41) < 0.35
    road_v_tab = hash_uniform(seed, np.arange(kv0, kv0 + len(bv)), 0, 42) < 0.35
    bv0 = bv[iv]
    bv1 = bv[np.minimum(iv + 1, len(bv) - 1)]
    du0, du1 = np.abs(U - bu0), np.abs(U - bu1)
    dv0, dv1 = np.abs(V - bv0), np.abs(V - bv1)
    du = np.minimum(du0, du1)
    dv = np.minimum(dv0, dv1)
    road_u = road_u_tab[np.where(du0 < du1, iu, np.minimum(iu + 1, len(bu) - 1))]
    road_v = road_v_tab[np.where(dv0 < dv1, iv, np.minimum(iv + 1, len(bv) - 1))]
    edge = np.minimum(du, dv)
    img = np.where(edge < 1.0, np.float32(45.0), img)  # hedges / ditches on every boundary
    road = ((du < 3.0) & road_u) | ((dv < 3.0) & road_v)
    img = np.where(road, 185.0 + 10.0 * value_noise(seed, 43, xs, ys, 4.0), img)
    tile = np.clip(img, 0, 255).astype(np.float32)
    # Objects of this tile and its neighbours (so that overhanging objects join seamlessly).
    for ny in (ty - 1, ty, ty + 1):
        for nx in (tx - 1, tx, tx + 1):
            _draw_objects(tile, seed, nx, ny, tile_px, res, (tx * tile_px, ty * tile_px))
    # Landmarks, rendered analytically from their exact centres.
    x0, y0 = tx * tile_px * res, ty * tile_px * res
    x1, y1 = x0 + tile_px * res, y0 + tile_px * res
    m = LANDMARK_OUTER_M + 1.0
    for lx, ly in landmarks_in(seed, x0 - m, y0 - m, x1 + m, y1 + m):
        j0 = max(0, int((lx - m - x0) / res))
        j1 = min(tile_px, int((lx + m - x0) / res) + 1)
        i0 = max(0, int((ly - m - y0) / res))
        i1 = min(tile_px, int((ly + m - y0) / res) + 1)
        if j0 >= j1 or i0 >= i1:
            continue
        r = np.hypot(xs[None, j0:j1] - lx, ys[i0:i1, None] - ly)
        inner = np.clip((LANDMARK_INNER_M - r) / res + 0.5, 0.0, 1.0)
        ring = np.clip((LANDMARK_OUTER_M - r) / res + 0.5, 0.0, 1.0)
        patch = tile[i0:i1, j0:j1]
        patch[:] = patch * (1 - ring) + 15.0 * (ring - inner) + 250.0 * inner
    return np.clip(tile + 0.5, 0, 255).astype(np.uint8)
