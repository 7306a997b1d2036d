"""Visual-positioning benchmark on the real cross-date pair (REQUIREMENTS N2–N4, issue bars).

Map: WorldView-2 PAN (2014-06) provisioned into a real tile cache (`terrafix.tiles`, JPEG
tiles at z18) together with distractor areas from other imagery — the simulator's procedural
farmland placed 30 km away and the 2 m WorldView-2 "bayou" chip (Louisiana) — then map
features and retrieval chunks built from the cache's own mosaics at z19 (z18 tiles
upsampled) and z18 (`terrafix.vision.provision`). Camera: frames rendered by the simulator
(`terrafix.sim.world`) from the WorldView-3 PAN (2014-10) with its default photometric
effects, at ≥ 300 random poses: 100–400 m above ground, any heading, roll/pitch up to ±20°,
the autopilot attitude off by the simulator's FC error model (σ 0.5° roll/pitch, 2.5° yaw),
barometric height off by σ 1.5 m.
Each pose is located twice: with a prior 0–350 m off (radius 400 m) and with no prior.
Retrieval recall (no prior) counts a chunk as right when it contains the true frame centre.

Each extractor runs in its own process so that its peak RSS is its own.

    .venv/bin/python bench/vps.py                 # benchmark seeds → bench/results/vps.json
    .venv/bin/python bench/vps.py --dev --poses 60  # development seeds (used for tuning)
    .venv/bin/python bench/vps.py --seed 1001 --poses 100 --out /tmp/val.json  # validation
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from terrafix.camera import CameraPose, Intrinsics, NavCameraConfig, pixels_to_ground_ned
from terrafix.geo import LocalFrame, destination, distance_m
from terrafix.geo.rotation import euler_to_R_body_to_ned
from terrafix.geo.tiles import global_px_to_lonlat, lonlat_to_global_px
from terrafix.measurements import CameraFrame

REPO = Path(__file__).resolve().parents[1]
BENCH_SEED = 20_240_601  # benchmark poses; never used for tuning
DEV_SEED = 1_000  # development poses (tuning)
VALIDATION_SEED = 1_001  # second development set: checks the tuned settings, never tuned on
LEVELS = ((19, 200.0, 0.5), (18, 300.0, 0.5))  # zoom, chunk side m, overlap: footprint-sized
PRIOR_RADIUS_M = 400.0
CHI2_95_2DOF = 5.991


# --------------------------------------------------------------------------- map provisioning


def _synthetic_raster(z: int, anchor: LocalFrame, half_m: float):
    """A north-up Web-Mercator raster of the simulator's procedural world around `anchor`."""
    from terrafix.sim.world import SyntheticWorld
    from terrafix.vision.mapfeatures import MapRaster

    world = SyntheticWorld(seed=7, anchor=anchor, extent_m=half_m * 3)
    lat_n, lon_e, _ = anchor.ned_to_lla(np.array([half_m, half_m, 0.0]))
    lat_s, lon_w, _ = anchor.ned_to_lla(np.array([-half_m, -half_m, 0.0]))
    x0, y0 = lonlat_to_global_px(float(lon_w), float(lat_n), z)
    x1, y1 = lonlat_to_global_px(float(lon_e), float(lat_s), z)
    px_x0, px_y0 = int(np.floor(x0)), int(np.floor(y0))
    w, h = int(np.ceil(x1)) - px_x0, int(np.ceil(y1)) - px_y0
    gsd = 2 * half_m / w
    n = int(2 * half_m / gsd) + 1
    alt = 1000.0
    intr = Intrinsics(n, n, alt / gsd, alt / gsd, (n - 1) / 2.0, (n - 1) / 2.0)
    pose = CameraPose.from_euler(np.array([0.0, 0.0, -alt]), 0.0, 0.0, 0.0)
    nadir = world.render(pose, intr, anchor)
    # Global px grid → camera pixels through the ground (exact at the corners, homography).
    grid = np.array([[0, 0], [w, 0], [w, h], [0, h], [w / 2, h / 2]], np.float64)
    lon, lat = global_px_to_lonlat(px_x0 + grid[:, 0], px_y0 + grid[:, 1], z)
    ne = anchor.lla_to_ned(lat, lon, np.zeros(len(lat)))[:, :2]
    cam = np.column_stack((ne[:, 1] / gsd + (n - 1) / 2.0, -ne[:, 0] / gsd + (n - 1) / 2.0))
    H, _ = cv2.findHomography(grid - 0.5, cam)
    img = cv2.warpPerspective(nadir, H, (w, h), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP)
    return MapRaster(img, z, float(px_x0), float(px_y0), img > 0)


def _write_geotiff(raster, path: Path) -> None:
    """A MapRaster as a single-band Web-Mercator GeoTIFF (input of the tile provisioning)."""
    import rasterio

    from terrafix.geo.tiles import ORIGIN_SHIFT_M, TILE_SIZE_PX

    res = 2.0 * ORIGIN_SHIFT_M / (TILE_SIZE_PX * (1 << raster.z))
    transform = rasterio.transform.from_origin(-ORIGIN_SHIFT_M + raster.px_x0 * res,
                                               ORIGIN_SHIFT_M - raster.px_y0 * res, res, res)
    h, w = raster.image.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                       crs="EPSG:3857", transform=transform, nodata=0) as dst:
        dst.write(np.where(raster.valid, np.maximum(raster.image, 1), 0).astype(np.uint8), 1)


def fill_tile_cache(cache: Path) -> None:
    """The map into a real tile cache (JPEG tiles at z18): WorldView-2 of Longmont, plus the
    distractor areas (the simulator's procedural farmland 30 km away, the bayou chip)."""
    from datetime import date

    import rasterio

    from terrafix.sim.world import DGSAMPLES, dgsamples_root
    from terrafix.tiles.config import open_store
    from terrafix.tiles.provision.geotiff import provision_geotiff

    work = cache.parent / "vps-inputs"
    work.mkdir(parents=True, exist_ok=True)
    synthetic = work / "synthetic-z18.tif"
    if not synthetic.is_file():
        _write_geotiff(_synthetic_raster(18, LocalFrame(40.40, -104.75, 1480.0), 900.0),
                       synthetic)
    bayou = work / "bayou-band5.tif"
    if not bayou.is_file():
        with rasterio.open(dgsamples_root() / "bayou_chip" / "extract_test.tif") as src:
            profile = src.profile | {"count": 1}
            with rasterio.open(bayou, "w", **profile) as dst:
                dst.write(src.read(5), 1)
    wv2 = sorted(dgsamples_root().glob(DGSAMPLES["wv2"][0]))[0]
    store = open_store(cache)
    try:
        provision_geotiff(store, wv2, zooms=[18])
        provision_geotiff(store, synthetic, zooms=[18], capture_date=date(2014, 6, 1),
                          source="synthetic farmland (distractor)")
        provision_geotiff(store, bayou, zooms=[18], capture_date=date(2014, 6, 1),
                          source="dgsamples bayou chip (distractor)")
    finally:
        store.close()


def provision(cache: Path, extractor_name: str, models: Path) -> None:
    """Map features and retrieval index from the tile cache's own mosaics."""
    from terrafix.tiles.config import open_store
    from terrafix.vision import provision as step
    from terrafix.vision.features import SiftExtractor
    from terrafix.vision.rasters import rasters_from_store
    from terrafix.vision.xfeat import MAP_WINDOW_SIZE, XFeatExtractor

    if not (cache / "tiles").is_dir():
        fill_tile_cache(cache)
    ext = XFeatExtractor.open(models, [MAP_WINDOW_SIZE]) if extractor_name == "xfeat" \
        else SiftExtractor()
    cfg = step.ProvisionConfig(levels=tuple(step.LevelConfig(z=z, chunk_m=c, overlap=o)
                                            for z, c, o in LEVELS))
    store = open_store(cache, read_only=True)
    try:
        step.main(cfg, cache, lambda z: rasters_from_store(store, z), ext, merge_areas=True)
    finally:
        store.close()


# --------------------------------------------------------------------------- poses


def sample_cases(n: int, seed: int) -> list[dict]:
    """Random poses whose footprint lies on the WorldView-3 imagery, with FC/baro errors and
    a prior offset."""
    from terrafix.sim.world import load_dgsamples_world

    world = load_dgsamples_world("wv3")
    cam = NavCameraConfig()
    K = cam.processing_intrinsics()
    lon_c, lat_c = (world.bounds_wgs84[0] + world.bounds_wgs84[2]) / 2, \
        (world.bounds_wgs84[1] + world.bounds_wgs84[3]) / 2
    frame = LocalFrame(lat_c, lon_c, world.ground_alt_m)
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        h = rng.uniform(100.0, 400.0)
        roll, pitch = np.radians(rng.uniform(-20.0, 20.0, 2))
        yaw = rng.uniform(-np.pi, np.pi)
        ne = rng.uniform(-480.0, 480.0, 2)
        R = euler_to_R_body_to_ned(roll, pitch, yaw)
        pose = CameraPose.from_body(np.array([ne[0], ne[1], -h]), R, cam.extrinsics)
        if not world.footprint_on_imagery(pose, K, frame):
            continue
        err = rng.normal(0.0, 1.0, 3) * np.radians([0.5, 0.5, 2.5])
        lat, lon, _ = frame.ned_to_lla(np.array([ne[0], ne[1], -h]))
        centre, _ = pixels_to_ground_ned(np.array([[K.cx, K.cy]]), pose, K, 0.0)
        clat, clon, _ = frame.ned_to_lla(centre[0])
        off = rng.uniform(0.0, 350.0)
        plat, plon = destination(float(lat), float(lon), rng.uniform(0, 360), off)
        cases.append(dict(index=len(cases), ne=ne.tolist(), h=float(h), rpy=[roll, pitch, yaw],
                          fc_rpy=[roll + err[0], pitch + err[1], yaw + err[2]],
                          baro_m=float(world.ground_alt_m + h + rng.normal(0.0, 1.5)),
                          lat=float(lat), lon=float(lon), centre=[float(clat), float(clon)],
                          prior=[float(plat), float(plon), PRIOR_RADIUS_M],
                          render_seed=int(rng.integers(2**31))))
    return cases


# --------------------------------------------------------------------------- evaluation


def evaluate(extractor_name: str, cache: Path, models: Path, cases: list[dict],
             overrides: dict | None = None) -> dict:
    """Locate every case with and without prior; returns metrics and per-frame records."""
    from terrafix.sim.effects import ImageEffects
    from terrafix.sim.world import load_dgsamples_world
    from terrafix.vision.registration import VisualPositioner, VpsConfig

    world = load_dgsamples_world("wv3")
    cam = NavCameraConfig()
    K = cam.processing_intrinsics()
    lon_c, lat_c = (world.bounds_wgs84[0] + world.bounds_wgs84[2]) / 2, \
        (world.bounds_wgs84[1] + world.bounds_wgs84[3]) / 2
    frame = LocalFrame(lat_c, lon_c, world.ground_alt_m)
    vp = VisualPositioner.open(cache, VpsConfig(extractor=extractor_name, model_cache=models,
                                                ground_alt_m=world.ground_alt_m,
                                                **(overrides or {})), cam)
    effects = ImageEffects()
    records = []
    load_before = os.getloadavg()
    for c in cases:
        R = euler_to_R_body_to_ned(*c["rpy"])
        pose = CameraPose.from_body(np.array([*c["ne"], -c["h"]]), R, cam.extrinsics)
        img = world.render(pose, K, frame, effects, np.random.default_rng(c["render_seed"]))
        R_fc = euler_to_R_body_to_ned(*c["fc_rpy"])
        for mode in ("prior", "none"):
            cpu0 = time.process_time()
            res = vp.locate(CameraFrame(c["index"], c["index"], img), R_fc, c["baro_m"],
                            tuple(c["prior"]) if mode == "prior" else None)
            cpu_ms = (time.process_time() - cpu0) * 1000.0  # all threads of this process
            rec = dict(case=c["index"], mode=mode, h=c["h"], accepted=res.accepted,
                       reason=res.reason, ms=res.timings_ms.get("total", float("nan")),
                       cpu_ms=cpu_ms, stages_ms=res.timings_ms, n_inliers=res.n_inliers,
                       z=res.z)
            if res.fix is not None:
                f = res.fix
                rec["err_m"] = float(distance_m(c["lat"], c["lon"], f.lat_deg, f.lon_deg))
                rec["centre_err_m"] = float(distance_m(c["centre"][0], c["centre"][1],
                                                       f.centre_lat_deg, f.centre_lon_deg))
                d = frame.lla_to_ned(f.lat_deg, f.lon_deg, 0.0)[:2] - \
                    frame.lla_to_ned(c["lat"], c["lon"], 0.0)[:2]
                rec["mahal2"] = float(d @ np.linalg.solve(f.cov_ne_m2, d))
            if mode == "none":
                rec["rank"] = _retrieval_rank(vp, res, c)
            records.append(rec)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    (REPO / "build" / "bench").mkdir(parents=True, exist_ok=True)
    (REPO / "build" / "bench" / f"vps-records-{extractor_name}.json").write_text(
        json.dumps(records, indent=0, default=str))
    out = summarise(records, peak_mb)
    out["extras"]["load_average"] = {"before": [round(x, 2) for x in load_before],
                                     "after": [round(x, 2) for x in os.getloadavg()],
                                     "cpus": os.cpu_count()}
    return out


def _retrieval_rank(vp, res, case: dict) -> dict:
    """Whether a right chunk is at rank 1 / within 3 (re-ranked) / within 10 (retrieved)."""
    if res.z < 0 or len(res.candidates) == 0:
        return {"at1": False, "at3": False, "at10": False}
    level = next(lv for lv in vp.levels if lv.z == res.z)
    px, py = lonlat_to_global_px(case["centre"][1], case["centre"][0], res.z)
    ch = level.index.chunks

    def right(i: int) -> bool:
        x0, y0, x1, y1 = ch[i]
        return bool(x0 <= px < x1 and y0 <= py < y1)

    return {"at1": len(res.reranked) > 0 and right(int(res.reranked[0])),
            "at3": any(right(int(i)) for i in res.reranked[:3]),
            "at10": any(right(int(i)) for i in res.candidates[:10]),
            "n_chunks": len(ch)}


def _share_within(records: list[dict], limit_m: float, h0: float, h1: float) -> float | None:
    """Share of the frames taken between h0 and h1 m above ground that are within limit_m."""
    sel = [r.get("err_m", np.inf) <= limit_m for r in records if h0 <= r["h"] < h1]
    return float(np.mean(sel)) if sel else None


def summarise(records: list[dict], peak_mb: float) -> dict:
    n = len(records)
    err = np.array([r.get("err_m", np.inf) for r in records])
    acc = np.isfinite(err)
    ea = err[acc]
    m2 = np.array([r["mahal2"] for r in records if "mahal2" in r])
    ranks = [r["rank"] for r in records if "rank" in r]
    ms = np.array([r["ms"] for r in records if np.isfinite(r["ms"])])
    cpu = np.array([r["cpu_ms"] for r in records if "cpu_ms" in r])
    stages: dict[str, list[float]] = {}
    for r in records:
        for k, v in r.get("stages_ms", {}).items():
            stages.setdefault(k, []).append(v)
    reasons: dict[str, int] = {}
    for r in records:
        if not r["accepted"]:
            key = r["reason"].split(" (")[0].split(":")[0][:40]
            reasons[key] = reasons.get(key, 0) + 1
    by_mode = {}
    for mode in ("prior", "none"):
        e = np.array([r.get("err_m", np.inf) for r in records if r["mode"] == mode])
        by_mode[mode] = {"n": len(e), "within_20m": float(np.mean(e <= 20.0)),
                         "median_m": float(np.median(e[np.isfinite(e)])) if np.isfinite(e).any()
                         else None, "rejected": float(np.mean(~np.isfinite(e)))}
    return {
        "within_5m": float(np.mean(err <= 5.0)),
        "within_20m": float(np.mean(err <= 20.0)),
        "within_50m": float(np.mean(err <= 50.0)),
        "median_m": float(np.median(ea)) if len(ea) else None,
        "p95_m": float(np.percentile(ea, 95)) if len(ea) else None,
        "max_m": float(ea.max()) if len(ea) else None,
        "rejected": float(np.mean(~acc)),
        "false_accept_rate": float(np.sum(ea > 30.0) / n),
        "cov_consistency": float(np.mean(m2 <= CHI2_95_2DOF)) if len(m2) else None,
        "recall_at_1": float(np.mean([r["at1"] for r in ranks])),
        "recall_at_3": float(np.mean([r["at3"] for r in ranks])),
        "recall_at_10": float(np.mean([r["at10"] for r in ranks])),
        "median_ms": float(np.median(ms)) if len(ms) else None,
        "peak_rss_mb": peak_mb,
        "n_frames": n,
        "extras": {
            "n_poses": n // 2,
            "retrieval_chunks": sorted({r.get("n_chunks", 0) for r in ranks}),
            "p95_ms": float(np.percentile(ms, 95)) if len(ms) else None,
            "median_cpu_ms": float(np.median(cpu)) if len(cpu) else None,
            "p95_cpu_ms": float(np.percentile(cpu, 95)) if len(cpu) else None,
            "median_stage_ms": {k: float(np.median(v)) for k, v in stages.items()},
            "within_20m_by_height": {
                f"{lo}-{lo + 100}m": _share_within(records, 20.0, lo, lo + 100)
                for lo in (100, 200, 300)},
            "centre_median_m": float(np.median([r["centre_err_m"] for r in records
                                                if "centre_err_m" in r])) if len(ea) else None,
            "by_prior_mode": by_mode,
            "rejection_reasons": reasons,
        },
    }


def _child(args: tuple) -> dict:
    name, cache, models, cases, overrides = args
    return evaluate(name, cache, models, cases, overrides)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--poses", type=int, default=300)
    ap.add_argument("--dev", action="store_true", help="development seeds (for tuning)")
    ap.add_argument("--seed", type=int, default=None,
                    help="explicit pose seed (development only, e.g. the validation seed)")
    ap.add_argument("--extractors", nargs="+", default=["xfeat", "sift"])
    ap.add_argument("--cache", type=Path, default=REPO / "build" / "bench" / "vps-store")
    ap.add_argument("--models", type=Path, default=REPO / "build" / "models")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="VpsConfig overrides (development only)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "vps.json")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else DEV_SEED if args.dev else BENCH_SEED
    ctx = mp.get_context("spawn")
    for name in args.extractors:
        if not (args.cache / "retrieval" / name).is_dir():
            t0 = time.time()
            with ctx.Pool(1) as pool:
                pool.apply(provision, (args.cache, name, args.models))
            print(f"provisioned {name} in {time.time() - t0:.0f} s", file=sys.stderr)
    cases = sample_cases(args.poses, seed)
    overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    results = {}
    for name in args.extractors:
        t0 = time.time()
        with ctx.Pool(1) as pool:
            results[name] = pool.apply(_child, ((name, args.cache, args.models, cases,
                                                 overrides),))
        print(f"{name}: {time.time() - t0:.0f} s", file=sys.stderr)
    results["config"] = {"overrides": overrides, "poses": args.poses, "seed": seed, "dev": args.dev,
                         "tuned_on_seed": DEV_SEED, "validated_on_seed": VALIDATION_SEED,
                         "levels": LEVELS, "prior_radius_m": PRIOR_RADIUS_M,
                         "command": "bench/vps.py " + " ".join(sys.argv[1:]),
                         "load_average_end": [round(x, 2) for x in os.getloadavg()],
                         "note": ("2-core machine shared with other engineers' jobs: wall-clock "
                                  "timings depend on their load (see each extractor's "
                                  "extras.load_average); extras.median_cpu_ms is the process "
                                  "CPU time per frame (all threads)")}
    keys = ["within_5m", "within_20m", "within_50m", "median_m", "p95_m", "max_m", "rejected",
            "false_accept_rate", "cov_consistency", "recall_at_1", "recall_at_3",
            "recall_at_10", "median_ms", "peak_rss_mb", "n_frames"]
    print(f"{'metric':18s}" + "".join(f"{n:>10s}" for n in args.extractors))
    for k in keys:
        row = [results[n][k] for n in args.extractors]
        print(f"{k:18s}" + "".join(f"{v:10.3f}" if isinstance(v, float) else f"{v!s:>10s}"
                                   for v in row))
    if (not args.dev and args.seed is None) or args.out != ap.get_default("out"):
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
