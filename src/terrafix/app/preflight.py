"""Before flight: the tile cache, the map features built from it, and the signed manifest.

Why in one step: the navigation must fly only on a cache that was checked as a whole — tiles
provisioned from the source imagery, map features and retrieval index built from *those* tiles
(not from the source file, so what is matched is what was verified), and a manifest listing
every tile of the route's corridor with its hash, signed with Ed25519. At take-off the onboard
program opens the cache read-only and verifies the manifest (`verify_flight_cache`); a miss or a
mismatch refuses take-off.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from shapely.geometry import LineString
from shapely.geometry.base import BaseGeometry

from terrafix.progress import progress
from terrafix.tiles.config import open_store
from terrafix.tiles.manifest import (
    build_manifest,
    generate_keypair,
    load_private_key,
    load_public_key,
    verify_cache,
    write_signed,
)
from terrafix.tiles.provision.geotiff import provision_geotiff
from terrafix.vision import provision
from terrafix.vision.rasters import raster_from_mosaic

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
PRIVATE_KEY_FILE = "provisioning_ed25519.pem"
PUBLIC_KEY_FILE = "provisioning_ed25519.pub.pem"


class PreflightError(RuntimeError):
    """The cache cannot be prepared or does not verify: take-off is refused."""


@dataclass(frozen=True, slots=True)
class PreparedCache:
    root: Path
    manifest: Path
    public_key: Path
    tiles_provisioned: int
    seconds: float


def corridor_from_track(lat_deg, lon_deg, half_width_m: float) -> BaseGeometry:
    """The planned route's corridor: the track buffered by `half_width_m` (WGS84 polygon).
    The buffer is applied in degrees scaled at the track's mean latitude (corridors are a few
    km long: the scale error is negligible against the half-width)."""
    import numpy as np

    lat = np.asarray(lat_deg, float)
    lon = np.asarray(lon_deg, float)
    k_lon = 111_320.0 * np.cos(np.radians(lat.mean()))
    k_lat = 110_574.0
    line = LineString(np.column_stack(((lon - lon.mean()) * k_lon, (lat - lat.mean()) * k_lat)))
    poly = line.buffer(half_width_m)
    xs, ys = poly.exterior.xy
    from shapely.geometry import Polygon

    return Polygon(zip(np.asarray(xs) / k_lon + lon.mean(), np.asarray(ys) / k_lat + lat.mean(),
                       strict=True))


def prepare_flight_cache(root: str | Path, geotiff: str | Path, *, flight_id: str,
                         takeoff: tuple[float, float, float], corridor: BaseGeometry,
                         extractor_name: str, model_cache: Path,
                         config: provision.ProvisionConfig | None = None) -> PreparedCache:
    """Provision `geotiff` into the cache at `root` (idempotent), build the map features and
    retrieval index for `extractor_name` from the cached tiles, and sign a manifest for
    `flight_id` covering `corridor` at the coarsest feature level."""
    t0 = time.perf_counter()
    cfg = config or provision.ProvisionConfig()
    zooms = sorted({lv.z for lv in cfg.levels})
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    store = open_store(root)
    try:
        with progress("map tiles", None, "tiles") as bar:
            report = provision_geotiff(store, geotiff, zooms=zooms, on_progress=lambda done,
                                       total: bar.update(completed=done, total=total))
        n_tiles = report.tiles_written
        vps_manifest = root / "features" / "vps.json"
        import json

        levels = json.loads(vps_manifest.read_text()).get("levels", {}) \
            if vps_manifest.is_file() else {}
        if not levels.get(extractor_name):
            extractor = _open_extractor(extractor_name, model_cache)
            box = _geotiff_bounds_wgs84(geotiff)

            def rasters(z: int):
                return [raster_from_mosaic(store.mosaic(*box, z))]

            provision.main(cfg, root, rasters, extractor)
        priv, pub = root / PRIVATE_KEY_FILE, root / PUBLIC_KEY_FILE
        if not priv.is_file():
            generate_keypair(priv, pub)
        manifest = build_manifest(store, flight_id, *takeoff, corridor, min(zooms))
        path = write_signed(manifest, load_private_key(priv), root / MANIFEST_FILE)
    finally:
        store.close()
    seconds = time.perf_counter() - t0
    log.info("preflight: cache %s ready for flight %s in %.1f s", root, flight_id, seconds)
    return PreparedCache(root, path, pub, n_tiles, seconds)


def _geotiff_bounds_wgs84(path: str | Path) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a raster: the whole provisioned area is made matchable,
    not only the corridor (a lost aircraft may be anywhere in the cache)."""
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as src:
        return tuple(transform_bounds(src.crs, "EPSG:4326", *src.bounds))  # type: ignore


def _open_extractor(name: str, model_cache: Path):
    if name == "xfeat":
        from terrafix.vision.xfeat import MAP_WINDOW_SIZE, XFeatExtractor

        return XFeatExtractor.open(model_cache, [MAP_WINDOW_SIZE])
    from terrafix.vision.features import SiftExtractor

    return SiftExtractor()


def verify_flight_cache(root: str | Path, manifest: str | Path | None = None,
                        public_key: str | Path | None = None):
    """Open the cache read-only and verify the signed manifest; raise PreflightError listing
    every problem (take-off refused). Returns the read-only store."""
    root = Path(root)
    manifest = Path(manifest) if manifest else root / MANIFEST_FILE
    public_key = Path(public_key) if public_key else root / PUBLIC_KEY_FILE
    if not manifest.is_file() or not public_key.is_file():
        raise PreflightError(f"take-off refused: manifest {manifest} or public key {public_key} "
                             "missing (run the pre-flight provisioning)")
    store = open_store(root, read_only=True)
    report = verify_cache(store, manifest, load_public_key(public_key))
    problems = list(report.problems)
    if problems:
        store.close()
        shown = "; ".join(problems[:5])
        raise PreflightError(f"take-off refused: manifest {manifest} does not verify "
                             f"({len(problems)} problem(s)): {shown}")
    return store
