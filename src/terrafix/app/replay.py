"""Replay: the navigation core run on a simulator dataset as fast as it goes (REQUIREMENTS R5).

hloc-style step: `main(conf, paths) -> Path` reads the dataset's streams merged in time order,
feeds every sample to the same `Navigator` the onboard program drives, and writes into the
output folder:
- `results.jsonl`: one record per output tick (`terrafix.eval.records`);
- `events.jsonl`: integrity events (spoof rejections, trust changes, labels, failsafes,
  hints) and one `frame` record per processed frame (odometry, registration, timings);
- `smoothed.jsonl`: the iSAM2 backend's retroactively corrected states (recorder only);
- `run.json`: dataset, configuration in force, counters, wall time and replay speed.

The map: registration needs a provisioned cache (map features + retrieval index) covering the
dataset's area. Given none, one is built once under `build/maps/<source>` from the dataset's
map source (for the dgsamples worlds: the *other* WorldView image, a different sensor and date
than the one the camera sees) with the visual-positioning provisioning step, and reused.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terrafix.camera import NavCameraConfig
from terrafix.eval.records import (
    EVENTS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    JsonlWriter,
    solution_record,
)
from terrafix.mapping.tile_feed import FlightTileFeed, FlightTilesConfig
from terrafix.navigation.navigator import (
    FlightContext,
    Navigator,
    NavigatorConfig,
    NavigatorError,
    event_record,
)
from terrafix.progress import progress
from terrafix.sim.dataset import FlightDataset, load_dataset

log = logging.getLogger(__name__)

SMOOTHED_FILE = "smoothed.jsonl"
DEFAULT_MAP_ROOT = Path("build/maps")


@dataclass(frozen=True, slots=True)
class ReplayConf:
    """config: the navigation config in force. map_cache: a provisioned cache to use (None:
    build or reuse one under map_root). duration_s: stop after this much flight time."""

    config: NavigatorConfig = field(default_factory=NavigatorConfig)
    map_cache: Path | None = None
    map_root: Path = DEFAULT_MAP_ROOT
    duration_s: float | None = None
    flight_tiles: FlightTilesConfig | None = None
    """In-flight tiles from the replayed frames (None: off), into
    <flight_tiles.folder>/<flight_id>; flight_id defaults to the dataset folder's name."""
    flight_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReplayPaths:
    dataset: Path
    out: Path


def flight_context(ds: FlightDataset) -> FlightContext:
    return FlightContext(ds.local_frame, ds.ground_alt_m, ds.intrinsics, ds.extrinsics)


def nav_camera(ds: FlightDataset) -> NavCameraConfig:
    """The dataset's navigation camera as the positioner's camera config."""
    c = ds.meta["camera"]
    s = c.get("sensor", {})
    base = NavCameraConfig()
    cam = NavCameraConfig(
        sensor_width_px=int(s.get("width_px", base.sensor_width_px)),
        sensor_height_px=int(s.get("height_px", base.sensor_height_px)),
        pixel_pitch_um=float(s.get("pixel_pitch_um", base.pixel_pitch_um)),
        focal_mm=float(s.get("focal_mm", base.focal_mm)),
        dist=tuple(float(x) for x in c["dist"]),  # type: ignore[arg-type]
        processing_width_px=int(c["width"]), processing_height_px=int(c["height"]),
        frame_rate_hz=float(c.get("frame_rate_hz", base.frame_rate_hz)),
        extrinsics=ds.extrinsics)
    got, want = cam.processing_intrinsics(), ds.intrinsics
    if abs(got.fx - want.fx) > 1e-3 * want.fx or abs(got.cx - want.cx) > 0.5:
        raise NavigatorError(f"dataset camera fx={want.fx:.2f} cx={want.cx:.2f} cannot be "
                             f"described as a NavCameraConfig (got fx={got.fx:.2f} "
                             f"cx={got.cx:.2f})")
    return cam


def map_source(ds: FlightDataset) -> tuple[str, Path] | None:
    """(name, GeoTIFF) of the map imagery for the dataset's world, or None when there is no
    independent map (synthetic worlds)."""
    w = ds.meta.get("world", {})
    name = str(w.get("name", ""))
    if name.startswith("dgsamples-"):
        from terrafix.sim.world import DGSAMPLES, dgsamples_root

        seen = name.split("-", 1)[1]
        other = "wv2" if seen == "wv3" else "wv3"
        files = sorted(dgsamples_root().glob(DGSAMPLES[other][0]))
        if len(files) != 1:
            raise NavigatorError(f"expected one dgsamples {other} image, found {files}")
        return f"dgsamples-{other}", files[0]
    return None


def ensure_map_cache(ds: FlightDataset, extractor: str, map_root: Path,
                     model_cache: Path) -> Path | None:
    """A provisioned cache for the dataset's area and `extractor`, built once and reused."""
    src = map_source(ds)
    if src is None:
        return None
    name, geotiff = src
    root = Path(map_root) / name
    manifest = root / "features" / "vps.json"
    if manifest.is_file():
        levels = json.loads(manifest.read_text()).get("levels", {})
        if levels.get(extractor):
            return root
    from terrafix.vision import provision
    from terrafix.vision.features import SiftExtractor
    from terrafix.vision.rasters import raster_from_geotiff

    if extractor == "xfeat":
        from terrafix.vision.xfeat import MAP_WINDOW_SIZE, XFeatExtractor

        ext: Any = XFeatExtractor.open(model_cache, [MAP_WINDOW_SIZE])
    else:
        ext = SiftExtractor()
    log.info("replay: provisioning the %s map from %s into %s (once)", extractor, geotiff, root)
    t0 = time.perf_counter()
    provision.main(provision.ProvisionConfig(), root,
                   lambda z: [raster_from_geotiff(geotiff, z)], ext)
    log.info("replay: map provisioned in %.0f s", time.perf_counter() - t0)
    return root


def open_positioner(conf: ReplayConf, ds: FlightDataset) -> tuple[Any, str]:
    """The visual positioner for the dataset (or None) and a note on what was chosen."""
    cfg = conf.config
    if not cfg.registration.enabled:
        return None, "registration disabled by config"
    vps = cfg.vps.model_copy(update={"ground_alt_m": ds.ground_alt_m})
    root = conf.map_cache or ensure_map_cache(ds, vps.extractor, conf.map_root, vps.model_cache)
    if root is None:
        return None, f"no map source for world {ds.meta.get('world', {}).get('name')!r}: " \
                     f"registration off"
    from terrafix.vision.registration import VisualPositioner

    return VisualPositioner.open(root, vps, nav_camera(ds)), f"map cache {root}"


def open_tile_feed(conf: ReplayConf, ds: FlightDataset, dataset: Path) -> FlightTileFeed | None:
    """The in-flight tile feed of a replay (None when off). Times are the dataset's, counted
    from its `utc_start`."""
    ft = conf.flight_tiles
    if ft is None or not ft.enabled:
        return None
    from datetime import datetime, timedelta

    t0 = datetime.fromisoformat(str(ds.meta["utc_start"]).replace("Z", "+00:00"))
    return FlightTileFeed(ft, conf.flight_id or dataset.resolve().name, flight_context(ds),
                          lambda t_ns: t0 + timedelta(microseconds=t_ns / 1e3),
                          reference=map_tiles(ds, ft.zoom))


def map_tiles(ds: FlightDataset, z: int):
    """The map's tile at z/x/y (None outside it), from the dataset's map source: the same
    imagery the replay's map cache is provisioned from (no map: None)."""
    src = map_source(ds)
    if src is None:
        return None
    from terrafix.vision.rasters import raster_from_geotiff

    raster = raster_from_geotiff(src[1], z)
    h, w = raster.image.shape

    def tile(t):
        c0, r0 = int(t.x * 256 - raster.px_x0), int(t.y * 256 - raster.px_y0)
        if c0 < 0 or r0 < 0 or c0 + 256 > w or r0 + 256 > h or \
                not raster.valid[r0:r0 + 256, c0:c0 + 256].all():
            return None
        return raster.image[r0:r0 + 256, c0:c0 + 256]

    return tile


def main(conf: ReplayConf, paths: ReplayPaths) -> Path:
    """Run the navigator over the dataset; returns the output folder."""
    ds = load_dataset(paths.dataset)
    out = Path(paths.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = conf.config
    log.debug("replay config in force: %s", cfg.model_dump_json())
    t_open = time.perf_counter()
    positioner, map_note = open_positioner(conf, ds)
    open_s = time.perf_counter() - t_open
    nav = Navigator(cfg, flight_context(ds), positioner)
    tiles = open_tile_feed(conf, ds, Path(paths.dataset))
    t_end = None if conf.duration_s is None else round(conf.duration_s * 1e9)
    t0 = time.perf_counter()
    last_t = 0
    with JsonlWriter(out / RESULTS_FILE) as results, JsonlWriter(out / EVENTS_FILE) as events, \
            JsonlWriter(out / SMOOTHED_FILE) as smoothed:

        def drain() -> None:
            sols = nav.drain_solutions()
            for s in sols:
                results.write(solution_record(s))
            evs = nav.drain_events()
            for e in evs:
                events.write(event_record(e))
            if tiles is not None:
                tiles.on_events(evs)
                tiles.on_solutions(sols)
            for r in nav.drain_frame_reports():
                events.write(r.record())
            for s in nav.drain_smoothed():
                smoothed.write({"t_ns": s.t_ns, "p_ned_m": s.p_ned_m, "v_ned_mps": s.v_ned_mps,
                                "cov_p_ned_m2": s.cov_p_ned_m2, "final": s.final})

        t_first = int(ds.truth.t_ns[0])
        span_s = int((int(ds.truth.t_ns[-1]) - t_first) * 1e-9) if t_end is None \
            else int(conf.duration_s or 0)
        with progress("replay", span_s, "s of flight") as bar:
            for i, sample in enumerate(ds.iter_all()):
                if t_end is not None and sample.t_ns > t_end:
                    break
                nav.feed(sample)
                if tiles is not None:
                    tiles.on_input(sample)
                last_t = sample.t_ns
                if i % 2000 == 0:
                    drain()
                    st = nav.stats
                    bar.update(completed=int((last_t - t_first) * 1e-9), figures=(
                        f"frames {st.frames} · fixes {st.fixes_fused}/{st.registrations}"))
            nav.flush()
            drain()
            st = nav.stats
            bar.update(completed=int((last_t - t_first) * 1e-9), figures=(
                f"frames {st.frames} · fixes {st.fixes_fused}/{st.registrations}"))
    tile_stats = tiles.close().as_dict() if tiles is not None else None
    wall = time.perf_counter() - t0
    flight_s = (last_t - int(ds.truth.t_ns[0])) * 1e-9
    info = {
        "dataset": str(Path(paths.dataset).resolve()),
        "scenario": ds.meta.get("scenario", {}).get("name"),
        "seed": ds.meta.get("seed"),
        "backend": cfg.backend,
        "map": map_note,
        "config": json.loads(cfg.model_dump_json()),
        "flight_tiles": None if tiles is None else {"root": str(tiles.root), **tile_stats},
        "stats": {**nav.stats.as_dict(), "wall_s": wall, "flight_s": flight_s,
                  "open_s": open_s,
                  "replay_speed_x": flight_s / wall if wall > 0 else math.nan},
    }
    (out / RUN_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n",
                                encoding="utf-8")
    return out
