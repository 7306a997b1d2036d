"""In-flight tiles and their upload -> bench/results/upload.json.

    .venv/bin/python bench/upload.py [--parts throughput kills flight] [--seeds 1 2 3]

Measures, on this machine (2 shared CPU cores: timings are noisy, medians over runs):

* tiles_per_cpu_s: the same tiles over the CPU seconds the uploader and the server spent
  (what the wall-clock rate becomes without the other tenants of this machine).
* tiles_per_s: a real uploader process (tests/upload/upload_worker.py) sends a flight store of
  `--tiles` synthetic ~20 KB JPEG tiles to the scriptable ground double (FastAPI + uvicorn,
  TLS on loopback, signatures checked, tiles stored by content hash) in batches of 32; the
  rate is tiles / the wall time of the upload inside the worker (session start to close),
  median over `--runs` fresh stores and servers.
* kill_points / lost_tiles / duplicate_tiles: `--kills` SIGKILLs of the uploader process at
  random instants (the server holds each batch 20 ms, so kills land before, during and after
  batches), then reruns until one finishes; lost = tiles of the flight store absent on the
  ground, duplicate = tiles the ground stored more than once (from its append-only log).
* the demo flight: `terrafix replay` of the `demo` scenario (seeds 1-3, ESKF) with in-flight
  tiles on (drop_when_busy off, so the replay is repeatable). flight_tiles: tiles stored;
  coverage_share: stored tiles among the z19 tiles wholly inside the union of the true camera
  footprints of every frame; georef_error_m: per stored tile, the phase-correlation shift
  between the tile and the truth world (the WorldView-3 image the simulated camera sees,
  reprojected to the same z/x/y) times the ground resolution, split by trust class (sigma
  <= 3 m "normal", 3-5 m "low"); ineligible_share: frames taken for tiles whose pose was not
  eligible (dead-reckoned, sigma > 5 m, spoof rejection) among those judged.
  Thresholds (3 m / 5 m, coverage 0.99, 1 frame/s) were set from the requirements and the
  synthetic-world tests, then run once on these seeds; nothing was tuned on them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from tests.upload.fixtures import make_flight_store  # noqa: E402
from tests.upload.ground_double import GroundDouble  # noqa: E402

from terrafix.mapping.flight_store import open_flight_store  # noqa: E402
from terrafix.tiles.provider_server import serve_in_thread  # noqa: E402
from terrafix.tiles.records import VotingStatus  # noqa: E402
from terrafix.tiles.tls import make_test_pki  # noqa: E402
from terrafix.upload.keys import create_device_key, load_device_key  # noqa: E402

RESULT = REPO / "bench" / "results" / "upload.json"
WORK = REPO / "build" / "bench" / "upload"


class PeakRss:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            for c in self._proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    rss += c.memory_info().rss
            self.peak = max(self.peak, rss)
            time.sleep(0.2)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


# --- upload ----------------------------------------------------------------------------------
class Ground:
    def __init__(self, work: Path) -> None:
        self.pki = make_test_pki(work / "pki")
        self.key = work / "device.pem"
        create_device_key(self.key)
        self.double = GroundDouble(work / "ground")
        self.double.register(load_device_key(self.key).public_key())
        self._cm = serve_in_thread(self.double.app, tls_cert=self.pki.server_cert,
                                   tls_key=self.pki.server_key)
        self.url = self._cm.__enter__()

    def close(self) -> None:
        self._cm.__exit__(None, None, None)

    def worker(self, store: Path, batch: int) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
        return subprocess.Popen(
            [sys.executable, "-m", "tests.upload.upload_worker", str(store), self.url,
             str(self.pki.ca_cert), str(self.key), str(batch)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def throughput(runs: int, n_tiles: int) -> dict[str, Any]:
    rates, sizes, per_cpu = [], [], []
    for r in range(runs):
        with tempfile.TemporaryDirectory(dir=WORK) as d:
            work = Path(d)
            store = work / f"flight-{r}"
            make_flight_store(store, store.name, n_tiles, seed=r)
            sizes += [p.stat().st_size for p in (store / "tiles").rglob("*.jpg")]
            ground = Ground(work)
            try:
                server_cpu0 = sum(psutil.Process().cpu_times()[:2])
                proc = ground.worker(store, 32)
                out, err = proc.communicate(timeout=600)
                server_cpu = sum(psutil.Process().cpu_times()[:2]) - server_cpu0
                if proc.returncode != 0:
                    raise RuntimeError(f"upload worker failed: {err[-2000:]}")
                summary = json.loads(out.strip().splitlines()[-1])
                assert summary["accepted"] == n_tiles, summary
                rates.append(n_tiles / summary["wall_s"])
                per_cpu.append(n_tiles / (summary["cpu_s"] + server_cpu))
            finally:
                ground.close()
        print(f"  throughput run {r + 1}: {rates[-1]:.0f} tiles/s", flush=True)
    return {"tiles_per_s": round(statistics.median(rates), 1),
            "tiles_per_s_runs": [round(x, 1) for x in rates], "throughput_tiles": n_tiles,
            "tiles_per_cpu_s": round(statistics.median(per_cpu), 1),
            "tiles_per_cpu_s_note": "tiles / (uploader CPU s + ground double CPU s): the rate "
                                    "a machine with two free cores would reach",
            "tile_bytes_median": int(np.median(sizes)), "batch_tiles": 32}


def kill_points(kills: int, n_tiles: int, seed: int = 11) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(dir=WORK) as d:
        work = Path(d)
        store = work / "flight-k"
        make_flight_store(store, store.name, n_tiles, seed=seed)
        with open_flight_store(store) as s:
            expected = {r.sha256 for r in s.backend.iter_records()}
        ground = Ground(work)
        ground.double.script_batches(*[{"delay_s": 0.02}] * 100_000)
        done_kills, runs, finished_early = 0, 0, 0
        try:
            while done_kills < kills:
                with open_flight_store(store) as s:
                    waiting = s.uploadable_records()
                if not waiting:
                    # everything went up before all kills landed: refill with a fresh flight
                    make_flight_store(store, store.name, n_tiles, seed=seed + runs + 1)
                    with open_flight_store(store) as s:
                        expected |= {r.sha256 for r in s.backend.iter_records()}
                proc = ground.worker(store, 8)
                runs += 1
                proc.stdout.readline()
                time.sleep(float(rng.uniform(0.0, 1.5)))
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    done_kills += 1
                else:
                    finished_early += 1
                proc.wait(60)
            reruns = 0
            while True:
                proc = ground.worker(store, 8)
                reruns += 1
                proc.communicate(timeout=600)
                if proc.returncode == 0 or reruns > 10:
                    break
            stored = ground.double.stored_shas()
            with open_flight_store(store) as s:
                statuses = [r.voting_status for r in s.backend.iter_records()]
        finally:
            ground.close()
    return {"kill_points": done_kills, "kill_runs_finished_before_kill": finished_early,
            "kill_reruns": reruns, "kill_tiles": len(expected),
            "lost_tiles": len(expected - set(stored)),
            "duplicate_tiles": len(stored) - len(set(stored)),
            "kill_store_all_uploaded": all(v == VotingStatus.UPLOADED for v in statuses)}


# --- in-flight tiles on the demo flight ------------------------------------------------------
def replay_with_tiles(seed: int) -> tuple[Path, Path, dict[str, Any]]:
    import nav  # bench/nav.py: the shared dataset cache
    from terrafix.app.replay import ReplayConf, ReplayPaths, main
    from terrafix.mapping.tile_feed import FlightTilesConfig

    ds = nav.dataset("demo", seed)
    out = WORK / "flight" / f"demo-s{seed}"
    tiles_dir = WORK / "flight" / "tiles"
    run_file = out / "run.json"
    if not run_file.is_file():
        import shutil

        shutil.rmtree(tiles_dir / f"demo-s{seed}", ignore_errors=True)
        t0 = time.perf_counter()
        main(ReplayConf(flight_tiles=FlightTilesConfig(enabled=True, folder=tiles_dir,
                                                       drop_when_busy=False),
                        flight_id=f"demo-s{seed}"), ReplayPaths(ds, out))
        print(f"  replayed demo seed {seed} in {time.perf_counter() - t0:.0f} s", flush=True)
    info = json.loads(run_file.read_text())
    return ds, tiles_dir / f"demo-s{seed}", info


def flown_tiles(ds: Path, z: int) -> set[tuple[int, int]]:
    """z/x/y tiles wholly inside the union of the true camera footprints of every frame."""
    import shapely

    from terrafix.camera import CameraPose, ground_footprint_ned
    from terrafix.geo.rotation import euler_to_R_body_to_ned
    from terrafix.geo.tiles import global_px_to_lonlat, lonlat_to_global_px
    from terrafix.sim.dataset import load_dataset

    d = load_dataset(ds)
    truth = np.genfromtxt(ds / "truth.csv", delimiter=",", names=True)
    frames_t = np.genfromtxt(ds / "frames.csv", delimiter=",", names=True)["t_ns"]
    ground_down = d.local_frame.alt0_m - d.ground_alt_m
    polys = []
    for t in frames_t:
        i = int(np.clip(np.searchsorted(truth["t_ns"], t), 0, len(truth) - 1))
        row = truth[i]
        pose = CameraPose.from_body(np.array([row["n_m"], row["e_m"], row["d_m"]]),
                                    euler_to_R_body_to_ned(row["roll"], row["pitch"],
                                                           row["yaw"]), d.extrinsics)
        try:
            polys.append(shapely.Polygon(ground_footprint_ned(pose, d.intrinsics,
                                                              ground_down)))
        except Exception:
            continue
    union = shapely.union_all(polys)
    n0, e0, n1, e1 = union.bounds
    lat, lon, _ = d.local_frame.ned_to_lla(np.array([[n1, e0, ground_down],
                                                     [n0, e1, ground_down]]))
    px, py = lonlat_to_global_px(np.asarray(lon), np.asarray(lat), z)
    out = set()
    for ty in range(int(py.min() // 256), int(py.max() // 256) + 1):
        for tx in range(int(px.min() // 256), int(px.max() // 256) + 1):
            cx = np.array([0, 256, 256, 0]) + tx * 256
            cy = np.array([0, 0, 256, 256]) + ty * 256
            lo, la = global_px_to_lonlat(cx, cy, z)
            ned = d.local_frame.lla_to_ned(np.asarray(la), np.asarray(lo),
                                           np.full(4, d.ground_alt_m))
            if union.contains(shapely.Polygon(ned[:, :2])):
                out.add((tx, ty))
    return out


def georef_errors(tiles_root: Path, truth_raster: Any, z: int) -> list[dict[str, Any]]:
    import cv2

    from terrafix.geo.tiles import global_px_to_lonlat, ground_resolution_m_per_px
    from terrafix.mapping.provenance import extract

    window = cv2.createHanningWindow((256, 256), cv2.CV_32F)
    out = []
    with open_flight_store(tiles_root) as store:
        for rec in store.backend.iter_records():
            t = rec.tile
            data = store.read_tile(t, allow_rejected=True)
            prov = extract(data)
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
            c0 = int(t.x * 256 - truth_raster.px_x0)
            r0 = int(t.y * 256 - truth_raster.px_y0)
            H, W = truth_raster.image.shape
            entry: dict[str, Any] = {"tile": [t.z, t.x, t.y], "trust": prov.trust,
                                     "sigma_m": prov.sigma_m, "frames": len(prov.frames)}
            if r0 >= 0 and c0 >= 0 and r0 + 256 <= H and c0 + 256 <= W and \
                    truth_raster.valid[r0:r0 + 256, c0:c0 + 256].all():
                truth = truth_raster.image[r0:r0 + 256, c0:c0 + 256]
                (dx, dy), resp = cv2.phaseCorrelate(img.astype(np.float32),
                                                    truth.astype(np.float32), window)
                _lon, lat = global_px_to_lonlat(t.x * 256 + 128, t.y * 256 + 128, z)
                m_px = ground_resolution_m_per_px(z, float(lat))
                entry.update(error_m=float(np.hypot(dx, dy) * m_px), response=float(resp),
                             shift_east_m=float(dx * m_px), shift_south_m=float(dy * m_px))
            out.append(entry)
    return out


def flight(seeds: list[int]) -> dict[str, Any]:
    from terrafix.sim.world import DGSAMPLES, dgsamples_root
    from terrafix.vision.rasters import raster_from_geotiff

    z = 19
    wv3 = sorted(dgsamples_root().glob(DGSAMPLES["wv3"][0]))[0]
    truth = raster_from_geotiff(wv3, z)
    per_seed, errs_normal, errs_low, all_tiles = {}, [], [], 0
    flown_all, covered_all, judged, inelig = 0, 0, 0, 0
    for seed in seeds:
        ds, root, info = replay_with_tiles(seed)
        ft = info["flight_tiles"]
        errors = georef_errors(root, truth, z)
        flown = flown_tiles(ds, z)
        stored = {(e["tile"][1], e["tile"][2]) for e in errors}
        en = [e["error_m"] for e in errors if "error_m" in e and e["trust"] == "normal"]
        el = [e["error_m"] for e in errors if "error_m" in e and e["trust"] == "low"]
        errs_normal += en
        errs_low += el
        all_tiles += len(errors)
        flown_all += len(flown)
        covered_all += len(stored & flown)
        n_inelig = sum(ft["ineligible"].values())
        judged += ft["frames_judged"]
        inelig += n_inelig
        per_seed[str(seed)] = {
            "flight_tiles": len(errors), "low_trust_tiles": sum(e["trust"] == "low"
                                                                for e in errors),
            "flown_tiles": len(flown), "coverage_share": round(len(stored & flown)
                                                               / max(len(flown), 1), 3),
            "georef_error_median_m": round(float(np.median(en)), 2) if en else None,
            "georef_error_p95_m": round(float(np.percentile(en, 95)), 2) if en else None,
            "georef_error_low_trust_median_m": round(float(np.median(el)), 2) if el else None,
            "ineligible_share": round(n_inelig / max(ft["frames_judged"], 1), 3),
            "ineligible_reasons": ft["ineligible"], "frames_judged": ft["frames_judged"],
            "tiles_incomplete_dropped": ft["tiles_incomplete"],
            "frames_dropped_busy": ft["frames_dropped_busy"],
            "replay_speed_x": round(info["stats"]["replay_speed_x"], 2)}
        print(f"  demo s{seed}: {per_seed[str(seed)]}", flush=True)
    return {"flight_seeds": seeds, "flight_tiles": all_tiles,
            "coverage_share": round(covered_all / max(flown_all, 1), 3),
            "georef_error_median_m": round(float(np.median(errs_normal)), 2),
            "georef_error_p95_m": round(float(np.percentile(errs_normal, 95)), 2),
            "georef_error_low_trust_median_m": round(float(np.median(errs_low)), 2)
            if errs_low else None,
            "georef_tiles_measured": len(errs_normal) + len(errs_low),
            "ineligible_share": round(inelig / max(judged, 1), 3), "flight_per_seed": per_seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="*", default=["throughput", "kills", "flight"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tiles", type=int, default=1500)
    ap.add_argument("--kills", type=int, default=24)
    ap.add_argument("--kill-tiles", type=int, default=400)
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    ap.add_argument("--out", type=Path, default=RESULT,
                    help="result file (a development seed goes elsewhere than the bench's)")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result: dict[str, Any] = dict(old)
    load_before = psutil.getloadavg()
    t0 = time.perf_counter()
    with PeakRss() as rss:
        if "throughput" in args.parts:
            result.update(throughput(args.runs, args.tiles))
        if "kills" in args.parts:
            result.update(kill_points(args.kills, args.kill_tiles))
        if "flight" in args.parts:
            result.update(flight(args.seeds))
    result.update({
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
        "load_avg_1_5_15_after": [round(x, 2) for x in psutil.getloadavg()],
        f"peak_rss_mib_{'_'.join(args.parts)}": round(rss.peak / 2**20, 1),
        f"wall_s_{'_'.join(args.parts)}": round(time.perf_counter() - t0, 1),
        "cpu_count": os.cpu_count()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    rows = [("tiles_per_s", ">= 300"), ("kill_points", ">= 20"), ("lost_tiles", "== 0"),
            ("duplicate_tiles", "== 0"), ("flight_tiles", ""), ("coverage_share", ""),
            ("georef_error_median_m", "<= 2 (sigma <= 3 m)"), ("georef_error_p95_m", ""),
            ("ineligible_share", "")]
    print(f"{'figure':28s} {'value':>10s}  bar")
    for k, bar in rows:
        print(f"{k:28s} {result.get(k)!s:>10s}  {bar}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
