"""Before flight: the tile cache, the map features built from it, and the signed manifest.

Why in one step: the navigation must fly only on a cache that was checked as a whole — tiles
provisioned from the source imagery, map features and retrieval index built from *those* tiles
(not from the source file, so what is matched is what was verified), and a manifest (v2,
`terrafix.tiles.manifest`) listing every file the flight reads — the corridor's tiles at every
map level, the feature arrays, the retrieval index and vocabulary, the ONNX models — with its
size and hash, signed with Ed25519 by the provisioning key. That key lives in the operator's
config folder (`terrafix.config_paths`), never in the cache that flies; the onboard config pins
its fingerprint. At take-off the onboard program opens the cache read-only and verifies the
manifest (`verify_flight_cache`); a private key in the cache, a miss or a mismatch refuses
take-off.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from shapely.geometry import LineString
from shapely.geometry.base import BaseGeometry

from terrafix.config_paths import (
    PROVISIONING_KEY_FILE,
    PROVISIONING_PUBLIC_KEY_FILE,
    ensure_config_dir,
)
from terrafix.progress import progress
from terrafix.tiles.config import open_store
from terrafix.tiles.manifest import (
    SignerPin,
    build_manifest,
    fingerprint,
    generate_keypair,
    load_private_key,
    load_public_key,
    verify_cache,
    write_signed,
)
from terrafix.tiles.provision.geotiff import provision_geotiff
from terrafix.vision import provision
from terrafix.vision.rasters import raster_from_mosaic
from terrafix.vision.registration import VpsConfig

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
LEGACY_KEY_FILES = (PROVISIONING_KEY_FILE, PROVISIONING_PUBLIC_KEY_FILE)
"""Where older terrafix versions left the provisioning key pair: inside the cache root."""


class PreflightError(RuntimeError):
    """The cache cannot be prepared or does not verify: take-off is refused."""


@dataclass(frozen=True, slots=True)
class PreparedCache:
    root: Path
    manifest: Path
    public_key: Path
    signer_fingerprint: str
    """What the onboard config pins (`map.signer_fingerprint`)."""
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
                         config: provision.ProvisionConfig | None = None,
                         key_folder: Path | None = None,
                         vps: VpsConfig | None = None) -> PreparedCache:
    """Provision `geotiff` into the cache at `root` (idempotent), build the map features and
    retrieval index for `extractor_name` from the cached tiles, and sign a manifest for
    `flight_id` covering `corridor` at every feature level, listing the features, the index
    and the models `vps` loads. The signing key is `key_folder`/provisioning_ed25519.pem
    (default: the user's terrafix config folder), created there on first use."""
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
        folder = Path(key_folder) if key_folder is not None else ensure_config_dir()
        priv, pub = folder / PROVISIONING_KEY_FILE, folder / PROVISIONING_PUBLIC_KEY_FILE
        _move_legacy_keys(root, priv, pub)
        if not priv.is_file():
            generate_keypair(priv, pub)
            log.info("preflight: new provisioning key %s (fingerprint %s)", priv,
                     fingerprint(load_public_key(pub)))
        key = load_private_key(priv)
        vps_cfg = (vps or VpsConfig()).model_copy(update={"extractor": extractor_name,
                                                          "model_cache": Path(model_cache)})
        manifest = build_manifest(store, flight_id, *takeoff, corridor, zooms,
                                  models=flight_model_paths(vps_cfg), signer=key.public_key())
        path = write_signed(manifest, key, root / MANIFEST_FILE)
    finally:
        store.close()
    seconds = time.perf_counter() - t0
    log.info("preflight: cache %s ready for flight %s in %.1f s (%d tiles, %d files, %d models "
             "signed)", root, flight_id, seconds, len(manifest.tiles), len(manifest.files),
             len(manifest.models))
    return PreparedCache(root, path, pub, fingerprint(key.public_key()), n_tiles, seconds)


def _move_legacy_keys(root: Path, priv: Path, pub: Path) -> None:
    """Older versions kept the key pair inside the cache: move it to the config folder (so the
    same key keeps signing), or delete the cache's copy when the folder already has a key."""
    import os

    old_priv, old_pub = (root / name for name in LEGACY_KEY_FILES)
    if old_priv.is_file():
        if priv.exists():
            old_priv.unlink()
            log.warning("preflight: deleted the old provisioning key inside the cache %s (the "
                        "config folder already holds %s)", old_priv, priv)
        else:
            os.chmod(old_priv, 0o600)
            os.replace(old_priv, priv)
            if old_pub.is_file():
                os.replace(old_pub, pub)
            log.warning("preflight: moved the provisioning key out of the cache: %s -> %s",
                        old_priv, priv)
    if old_pub.is_file():
        old_pub.unlink()  # a public key in the cache is never trusted: the config pins it


def flight_model_paths(vps: VpsConfig) -> list[Path]:
    """The ONNX model files `VisualPositioner.open` loads for this config ([] for SIFT)."""
    if vps.extractor != "xfeat":
        return []
    from terrafix.inference.cache import ModelCache, ModelKey
    from terrafix.vision.xfeat import XFEAT_MODEL_NAME

    cache = ModelCache(vps.model_cache)
    sizes = sorted({*vps.canvas_sizes, *vps.rescue_canvas_sizes})
    return [cache.path(ModelKey(XFEAT_MODEL_NAME, s, s)) for s in sizes]


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


def verify_flight_cache(root: str | Path, manifest: str | Path | None = None, *,
                        pinned: SignerPin, vps: VpsConfig | None = None,
                        models_required: bool = True):
    """Open the cache read-only and verify the signed manifest against the pinned signer (a
    public key or its fingerprint, from the onboard config, never from the cache), with the
    models listed in it found in `vps.model_cache`, and (models_required) every model `vps`
    will load listed; raise PreflightError listing the problems (take-off refused). Returns
    the read-only store."""
    root = Path(root)
    manifest = Path(manifest) if manifest else root / MANIFEST_FILE
    if not manifest.is_file():
        raise PreflightError(f"take-off refused: manifest {manifest} missing (run the "
                             "pre-flight provisioning)")
    model_folder, required = None, []
    if vps is not None:
        model_folder = vps.model_cache
        required = [p.name for p in flight_model_paths(vps)] if models_required else []
    store = open_store(root, read_only=True)
    try:
        report = verify_cache(store, manifest, pinned, model_folder=model_folder,
                              required_models=required)
    except BaseException:
        store.close()
        raise
    problems = list(report.problems)
    if problems:
        store.close()
        shown = "; ".join(problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise PreflightError(f"take-off refused: manifest {manifest} does not verify "
                             f"({len(problems)} problem(s)): {shown}{more}")
    log.info("manifest %s verified: flight %s, %d tiles, %d files, %d models, %.1f MB hashed",
             manifest, report.flight_id, report.tiles_checked, report.files_checked,
             report.models_checked, report.bytes_hashed / 1e6)
    return store
