"""`terrafix demo`: the whole system on the real-imagery flight, live, in two processes.

1. Simulate the `demo` scenario (camera sees WorldView-3 2014-10; reused when already made
   with the same seed: datasets are byte-identical per seed).
2. Pre-flight: provision the map (WorldView-2 2014-06) into the tile cache, build the map
   features and retrieval index from the cached tiles, sign the flight manifest.
3. Start the simulated flight controller (`terrafix sim-fc`) and the onboard program
   (`terrafix fly`) as two processes talking signed MAVLink 2 over UDP on loopback, in real
   time (2.5 min).
4. Evaluate: the onboard program's outputs against truth (HTML report with plots), and what
   the FC actually accepted (GPS_INPUT rate, gaps, jitter, errors at arrival).

Outputs go to `--out` (default `demo-output/`): generated, never committed.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from terrafix.eval.records import EVENTS_FILE, RESULTS_FILE, RUN_FILE

log = logging.getLogger(__name__)

DATA_ROOT = Path("build")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str) -> list[str]:
    from terrafix.app.console import verbose

    return [sys.executable, "-m", "terrafix.app.cli", *(["-v"] if verbose() else []), *args]


def ensure_dataset(seed: int, scenario: str = "demo") -> Path:
    """The scenario's dataset for `seed` under build/, simulated once."""
    out = DATA_ROOT / f"ds-{scenario}-seed{seed}"
    if not (out / "meta.json").is_file():
        log.info("demo: simulating scenario %s seed %d into %s", scenario, seed, out)
        subprocess.run(_cli("sim", "run", "--scenario", scenario, "--out", str(out),
                            "--seed", str(seed)), check=True)
    return out


def ensure_cache(dataset: Path, flight_id: str, extractor: str = "xfeat",
                 model_cache: Path = Path("build/models")) -> tuple[Path, str]:
    """Pre-flight: tile cache + features + signed manifest for the dataset's route; returns
    the cache root and the provisioning key's fingerprint the onboard config pins. The
    signing key stays in the user's terrafix config folder, outside the cache."""
    from terrafix.app.preflight import corridor_from_track, prepare_flight_cache
    from terrafix.app.replay import map_source
    from terrafix.sim.dataset import load_dataset

    ds = load_dataset(dataset)
    src = map_source(ds)
    if src is None:
        raise RuntimeError(f"dataset {dataset} has no independent map imagery")
    name, geotiff = src
    step = max(1, len(ds.truth.t_ns) // 400)
    corridor = corridor_from_track(ds.truth.lat_deg[::step], ds.truth.lon_deg[::step], 40.0)
    o = ds.meta["origin"]
    root = DATA_ROOT / f"cache-{name}"
    prepared = prepare_flight_cache(root, geotiff, flight_id=flight_id,
                                    takeoff=(o["lat_deg"], o["lon_deg"], o["alt_m"]),
                                    corridor=corridor, extractor_name=extractor,
                                    model_cache=model_cache)
    return root, prepared.signer_fingerprint


def fly_config(dataset: Path, cache: Path, port: int, out: Path, flight_id: str,
               backend: str = "eskf", signer_fingerprint: str | None = None,
               upload: dict[str, Any] | None = None) -> dict[str, Any]:
    """The onboard config of a demo flight; `upload` (the `[upload]` section) turns on the
    in-flight tiles and their upload after landing."""
    tiles: dict[str, Any] = {}
    if upload is not None:
        tiles = {"flight_tiles": {"enabled": True, "folder": str(out / "flight-tiles")},
                 "upload": upload, "upload_after_landing": True}
    return {**tiles,
        "flight_id": flight_id,
        "output": str(out / "fly"),
        "camera": {"source": "simulator", "dataset": str(dataset)},
        "map": {"cache": str(cache), **({"signer_fingerprint": signer_fingerprint}
                                        if signer_fingerprint else {})},
        "autopilot": {"connection": f"udpout:127.0.0.1:{port}", "gps_input_rate_hz": 10.0},
        "navigation": {"estimation": {"estimator": {"backend": backend}}},
        "recorder": {"folder": str(out / "flights")},
    }


def to_dataset_time(fly_dir: Path, eval_dir: Path, dataset: Path, offset_ns: int) -> None:
    """Copy the onboard outputs with times moved from the companion clock to the dataset's
    (t_ds = t_companion - offset, offset measured from the simulated FC's clock)."""
    eval_dir.mkdir(parents=True, exist_ok=True)
    for name in (RESULTS_FILE, EVENTS_FILE):
        src = fly_dir / name
        with src.open() as fin, (eval_dir / name).open("w") as fout:
            for line in fin:
                rec = json.loads(line)
                for key in ("t_ns",):
                    if isinstance(rec.get(key), int):
                        rec[key] = rec[key] - offset_ns
                fout.write(json.dumps(rec) + "\n")
    (eval_dir / RUN_FILE).write_text(json.dumps({"dataset": str(dataset)}) + "\n")


def clock_offset_ns(fly_dir: Path, dataset: Path) -> int:
    """companion-time minus dataset-time, from the first output tick: the onboard program
    stamps solutions at IMU sample times, which are FC boot times + the link's offset."""
    from terrafix.sim.flight_controller import FC_BOOT_LEAD_NS

    summary = json.loads((fly_dir / "summary.json").read_text())
    return int(summary["fc_clock_offset_ns"]) + FC_BOOT_LEAD_NS


def fc_acceptance_stats(fc_dir: Path) -> dict[str, float]:
    """GPS_INPUT as the FC saw it while the dataset played."""
    rows = [json.loads(x) for x in (fc_dir / "fc_gps_input.jsonl").read_text().splitlines()]
    played = [r for r in rows if r["t_dataset_ns"] is not None and r["t_dataset_ns"] >= 0]
    t = np.array([r["arrival_ns"] for r in played], dtype=np.float64) / 1e6
    gaps = np.diff(t)
    errs = np.array([r["error_m"] for r in played if r["error_m"] is not None])
    return {
        "gps_input_count": float(len(played)),
        "gps_input_decoded_fraction": float(np.mean([r["decoded"] for r in played])),
        "gps_input_rate_hz": float(1000.0 / gaps.mean()) if len(gaps) else math.nan,
        "gps_input_max_gap_ms": float(gaps.max()) if len(gaps) else math.nan,
        "gps_input_jitter_ms": float(gaps.std()) if len(gaps) else math.nan,
        "fc_error_p95_m": float(np.percentile(errs, 95)) if len(errs) else math.nan,
        "fc_error_max_m": float(errs.max()) if len(errs) else math.nan,
    }


def run_live(out: Path, seed: int = 1, backend: str = "eskf",
             timeout_s: float = 900.0, dataset: Path | None = None,
             upload: dict[str, Any] | None = None,
             console_log: Path | None = None) -> dict[str, Any]:
    """Steps 1-4 of the module docstring; returns the live summary (also `live.json`).
    `dataset`: fly this simulator dataset (real imagery) instead of the demo scenario.
    `upload`: the onboard config's `[upload]` section (in-flight tiles uploaded after the
    simulated FC reports the landing); its outcome is `live["upload"]`.
    `console_log`: the two processes' console output goes to this file instead (a second
    flight of the demo keeps the operator's screen to one)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    flight_id = time.strftime(f"demo-seed{seed}-%Y%m%dT%H%M%SZ", time.gmtime())
    dataset = Path(dataset) if dataset is not None else ensure_dataset(seed)
    cache, signer = ensure_cache(dataset, flight_id)
    port = free_udp_port()
    cfg_path = out / "fly.toml"
    cfg_path.write_text(tomli_w.dumps(fly_config(dataset, cache, port, out, flight_id,
                                                 backend, signer, upload)))
    fc_dir = out / "fc"
    log.info("demo: starting the simulated FC and the onboard program (real time)")
    sink = open(console_log, "a") if console_log is not None else None  # noqa: SIM115
    fc = subprocess.Popen(_cli("sim-fc", "--dataset", str(dataset), "--connect",
                               f"udpin:127.0.0.1:{port}", "--out", str(fc_dir)),
                          stdout=sink, stderr=sink)
    time.sleep(1.0)
    try:
        onboard = subprocess.run(_cli("fly", "--config", str(cfg_path)), timeout=timeout_s,
                                 stdout=sink, stderr=sink)
        if onboard.returncode != 0:
            raise RuntimeError(f"the onboard program exited with {onboard.returncode}")
        fc.wait(timeout=60)
    finally:
        if fc.poll() is None:
            fc.kill()
        if sink is not None:
            sink.close()
    fly_dir = out / "fly"
    eval_dir = out / "report"
    to_dataset_time(fly_dir, eval_dir, dataset, clock_offset_ns(fly_dir, dataset))
    from terrafix.eval.evaluate import LIVE_FILE, EvalConf, EvalPaths
    from terrafix.eval.evaluate import main as evaluate

    onboard_summary = json.loads((fly_dir / "summary.json").read_text())
    fc_stats = fc_acceptance_stats(fc_dir)
    live: dict[str, Any] = {
            **fc_stats,
            "latency_p95_ms": onboard_summary["latency_p95_ms"],
            "latency_max_ms": onboard_summary["latency_max_ms"],
            "latency_p50_ms": onboard_summary["latency_p50_ms"],
            "latency_registered_p95_ms": onboard_summary["latency_registered_p95_ms"],
            "latency_odometry_p95_ms": onboard_summary["latency_odometry_p95_ms"],
            "registrations_skipped_busy": onboard_summary["registrations_skipped_busy"],
            "latency_stage_p50_ms": onboard_summary["latency_stage_p50_ms"],
            "frame_drop_rate": onboard_summary["frame_drop_rate"],
            "takeoff_load_s": onboard_summary["takeoff_load_s"],
            "report": str(eval_dir / "report.html")}
    if (fly_dir / "upload.json").is_file():
        live["upload"] = json.loads((fly_dir / "upload.json").read_text())
    # the FC's figures first: the evaluation report shows them (and their verdicts)
    (out / LIVE_FILE).write_text(json.dumps(live, indent=2) + "\n")
    nav = evaluate(EvalConf(), EvalPaths(eval_dir, dataset))
    live.update({"cov_consistency": _get(nav, "inside_95"), "p95_m": _get(nav, "p95_m"),
                 "max_m": _get(nav, "max_m")})
    from terrafix.review.build import build_review

    review = build_review(out / "flights" / flight_id, out / "review", truth=dataset)
    live["review"] = str(review.page)
    (out / LIVE_FILE).write_text(json.dumps(live, indent=2) + "\n")
    live["verdicts"] = review.verdicts
    live["damage"] = review.damage
    return live


def _get(d: dict[str, Any], key: str) -> float:
    """A metric from the evaluation summary, wherever it is nested."""
    if key in d and isinstance(d[key], (int, float)):
        return float(d[key])
    for v in d.values():
        if isinstance(v, dict):
            got = _get(v, key)
            if not math.isnan(got):
                return got
    return math.nan


def run_map_loop(out: Path, seeds: tuple[int, ...], backend: str = "eskf",
                 dataset: Path | None = None) -> dict[str, Any]:
    """The map loop of the demo: an embedded ground service (SQLite, TLS on loopback, seeded
    with the map cache as base imagery), one registered aircraft per flight, each live flight
    uploading its in-flight tiles after landing; then the vote. Two flights of two aircraft
    over the same ground promote the tiles both saw. Returns {"flights": [...], "votes":
    {promoted, conflict, pending}} (also `map-loop.json`)."""
    from terrafix.ground.embedded import embedded_ground
    from terrafix.tiles.config import open_store
    from terrafix.upload.keys import create_device_key, load_device_key

    out = Path(out)
    first_ds = Path(dataset) if dataset is not None else ensure_dataset(seeds[0])
    cache, _ = ensure_cache(first_ds, "demo-map-loop")
    base = open_store(cache, read_only=True)
    shutil.rmtree(out / "ground", ignore_errors=True)  # a fresh ground service per demo run
    (out / "ground").mkdir(parents=True)
    # the ground service's per-session and per-vote lines go to its own log, not the screen
    ground_log = logging.getLogger("terrafix.ground")
    ground_handler = logging.FileHandler(out / "ground" / "ground.log")
    ground_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                                  "%(message)s"))
    ground_log.addHandler(ground_handler)
    ground_log.propagate = False
    flights: list[dict[str, Any]] = []
    try:
        with embedded_ground(out / "ground", base=base) as ground:
            for i, seed in enumerate(seeds):
                name = f"aircraft-{i + 1}"
                key_info = create_device_key(out / "aircraft" / name / "device_ed25519.pem")
                ground.register_device(name, key=load_device_key(key_info.path))
                upload = {"url": ground.url, "ca_cert": str(ground.ca_file),
                          "device_key": str(key_info.path)}
                flight_out = out if i == 0 else out / f"flight-{i + 1}"
                ds = first_ds if i == 0 else ensure_dataset(seed)
                live = run_live(flight_out, seed, backend, dataset=ds, upload=upload,
                                console_log=None if i == 0 else flight_out / "console.log")
                flights.append({"seed": seed, "aircraft": name, "out": str(flight_out),
                                "upload": live.get("upload"), "live": live})
            ground.wait_votes()
            votes = ground.counts().as_dict()
    finally:
        base.close()
        ground_log.removeHandler(ground_handler)
        ground_log.propagate = True
        ground_handler.close()
    result = {"flights": [{k: v for k, v in f.items() if k != "live"} for f in flights],
              "votes": votes}
    (out / "map-loop.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    result["lives"] = [f["live"] for f in flights]
    return result
