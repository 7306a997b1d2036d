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


def value_noise(seed: int, salt: int, xs_m: np.ndarray, ys_m: np.ndarray,
                spacing_m: float) -> np.ndarray:
    """Smooth value noise in about [-1, 1] on the regular grid xs (W,) x ys (H,) -> (H, W)
    float32: random values on a global lattice of `spacing_m`, bicubically interpolated by one
    cv2.warpAffine (so tiles that share lattice nodes join continuously)."""
    kx0 = math.floor(xs_m[0] / spacing_m) - 2
    ky0 = math.floor(ys_m[0] / spacing_m) - 2
    kx1 = math.floor(xs_m[-1] / spacing_m) + 3
    ky1 = math.floor(ys_m[-1] / spacing_m) + 3
    kx = np.arange(kx0, kx1 + 1)
    ky = np.arange(ky0, ky1 + 1)
    lattice = (2.0 * hash_uniform(seed, kx[None, :], ky[:, None], salt) - 1.0
               ).astype(np.float32)
    dx = float(xs_m[1] - xs_m[0]) if len(xs_m) > 1 else spacing_m
    dy = float(ys_m[1] - ys_m[0]) if len(ys_m) > 1 else spacing_m
    # Output pixel (j, i) -> lattice coordinates (x_j / spacing - kx0, y_i / spacing - ky0).
    M = np.array([[dx / spacing_m, 0.0, xs_m[0] / spacing_m - kx0],
                  [0.0, dy / spacing_m, ys_m[0] / spacing_m - ky0]])
    return cv2.warpAffine(lattice, M, (len(xs_m), len(ys_m)),
                          flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


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
    # Jitter is within +-P/4, so the parcel is k0 - 1, k0 or k0 + 1.
    rel -= (u < b[rel]).astype(np.int64)
    rel += (u >= b[rel + 1]).astype(np.int64)
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
    X, Y = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    theta = 0.2 + 1.2 * hash_uniform(seed, 0, 0, 1)[()]  # parcel grid orientation
    c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    U = c * X + s * Y
    V = -s * X + c * Y
    del X, Y
    iu, ku0, bu = _cells(seed, U, 11)
    iv, kv0, bv = _cells(seed, V, 12)
    nu, nv = len(bu), len(bv)
    # Per-parcel attributes on small flat tables of this tile's parcels (two halves each),
    # gathered per pixel with one index: (iu * nv + iv) * 2 + half.
    ku = np.arange(ku0, ku0 + nu)[:, None]
    kv = np.arange(kv0, kv0 + nv)[None, :]
    split = hash_uniform(seed, ku, kv, 13) < 0.5
    frac = 0.3 + 0.4 * hash_uniform(seed, ku, kv, 14)
    thr_tab = np.where(split, frac, np.inf).astype(np.float32).ravel()
    fk = (ku * 2)[:, :, None] + np.arange(2)[None, None, :]  # field key (nu, 1, 2)
    kv3 = kv[:, :, None]
    base_tab = (60.0 + 140.0 * hash_uniform(seed, fk, kv3, 21)).astype(np.float32).ravel()
    period_tab = (2.5 + 9.0 * hash_uniform(seed, fk, kv3, 22)).astype(np.float32).ravel()
    amp_tab = (4.0 + 22.0 * hash_uniform(seed, fk, kv3, 23) ** 2).astype(np.float32).ravel()
    along_u_tab = (hash_uniform(seed, fk, kv3, 24) < 0.5).ravel()
    bu32, bv32 = bu.astype(np.float32), bv.astype(np.float32)
    cell = (iu * nv + iv).astype(np.int32)
    iu1 = np.minimum(iu + 1, nu - 1)
    iv1 = np.minimum(iv + 1, nv - 1)
    du0 = U - np.take(bu32, iu)
    du1 = np.take(bu32, iu1) - U
    half = du0 > np.take(thr_tab, cell) * (du0 + du1)
    fid = cell * 2 + half
    phase = np.where(np.take(along_u_tab, fid), U, V)
    img = np.take(base_tab, fid) + np.take(amp_tab, fid) * np.sin(
        np.float32(2.0 * np.pi) * phase / np.take(period_tab, fid))
    img += 18.0 * value_noise(seed, 31, xs, ys, 90.0)
    img += 9.0 * value_noise(seed, 32, xs, ys, 12.0)
    img += 6.0 * value_noise(seed, 33, xs, ys, 1.5)
    img += 4.0 * value_noise(seed, 34, xs, ys, 0.6)
    # Roads and field boundaries along the parcel grid.
    road_u_tab = hash_uniform(seed, np.arange(ku0, ku0 + nu), 0, 41) < 0.35
    road_v_tab = hash_uniform(seed, np.arange(kv0, kv0 + nv), 0, 42) < 0.35
    dv0 = V - np.take(bv32, iv)
    dv1 = np.take(bv32, iv1) - V
    near_u = du0 < du1
    near_v = dv0 < dv1
    du = np.where(near_u, du0, du1)
    dv = np.where(near_v, dv0, dv1)
    road_u = np.take(road_u_tab, np.where(near_u, iu, iu1))
    road_v = np.take(road_v_tab, np.where(near_v, iv, iv1))
    img[np.minimum(du, dv) < 1.0] = 45.0  # hedges / ditches on every boundary
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
