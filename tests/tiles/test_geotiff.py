"""GeoTIFF provisioning: stretch, georeferencing against GDAL, capture dates, resumability."""

from __future__ import annotations

import glob
import importlib.util
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject
from typer.testing import CliRunner

from terrafix.app.cli import app as root_app
from terrafix.geo.tiles import ORIGIN_SHIFT_M, TILE_SIZE_PX
from terrafix.geo.utm import from_wgs84
from terrafix.tiles import Mosaic, open_store
from terrafix.tiles.errors import ProvisioningError
from terrafix.tiles.provision.geotiff import (
    Stretch,
    capture_date_from_metadata,
    compute_stretch,
    provision_geotiff,
)


def _write_utm_raster(path: Path, width: int = 1100, height: int = 900, res: float = 0.5,
                      seed: int = 0) -> Path:
    """A uint16 EPSG:32613 raster near Longmont with fine texture and a no-data (0) margin."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width), np.float32)
    for cells, w in ((8, 600.0), (40, 400.0), (200, 300.0)):
        img += w * cv2.resize(rng.random((cells, cells), dtype=np.float32), (width, height),
                              interpolation=cv2.INTER_CUBIC)
    img = np.clip(img + 100, 1, 4000).astype(np.uint16)
    img[:, :40] = 0  # fill on the west edge, like a real scene's footprint
    x0, y0 = from_wgs84(40.14, -105.14, 32613)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1,
               "dtype": "uint16", "crs": "EPSG:32613",
               "transform": Affine(res, 0, float(x0), 0, -res, float(y0)),
               "tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(img, 1)
    return path


def _reference(raster: Path, m: Mosaic) -> np.ndarray:
    """GDAL's bilinear reprojection of the stretched raster onto the mosaic's pixel grid."""
    with rasterio.open(raster) as src:
        stretched = compute_stretch(src).apply(src.read(1))
        res = 2 * ORIGIN_SHIFT_M / (TILE_SIZE_PX * (1 << m.z))
        dst_transform = Affine(res, 0, -ORIGIN_SHIFT_M + m.px_x0 * res,
                               0, -res, ORIGIN_SHIFT_M - m.px_y0 * res)
        out = np.zeros(m.image.shape, np.uint8)
        reproject(stretched, out, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=dst_transform, dst_crs="EPSG:3857",
                  resampling=Resampling.bilinear, src_nodata=0, dst_nodata=0)
    return out


def _compare(m: Mosaic, ref: np.ndarray) -> tuple[float, float, tuple[float, float]]:
    """(mean abs difference, correlation, best shift) over pixels both consider valid, away
    from the no-data edge. The best shift is the (dx, dy) in {-0.25, 0, 0.25}^2 px that
    minimises the difference after shifting the mosaic: (0, 0) means aligned to within
    about 1/8 px."""
    both = (ref > 0) & (m.image > 0) & m.valid
    both = cv2.erode(both.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    a, b = m.image[both].astype(float), ref[both].astype(float)
    img = m.image.astype(np.float32)
    mads = {}
    for dx in (-0.25, 0.0, 0.25):
        for dy in (-0.25, 0.0, 0.25):
            moved = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), img.shape[::-1],
                                   flags=cv2.INTER_LINEAR)
            mads[(dx, dy)] = float(np.abs(moved[both] - b).mean())
    best = min(mads, key=mads.__getitem__)
    return float(np.abs(a - b).mean()), float(np.corrcoef(a, b)[0, 1]), best


def test_stretch_maps_percentiles_to_1_255_and_keeps_no_data_at_zero() -> None:
    s = Stretch(low=100.0, high=1100.0, nodata=None)
    out = s.apply(np.array([[0, 50, 100, 600, 1100, 4000]], np.uint16))
    assert out.tolist() == [[0, 1, 1, 128, 255, 255]]


def test_capture_date_is_read_from_the_imd_beside_the_raster(tmp_path: Path) -> None:
    tif = _write_utm_raster(tmp_path / "scene.TIF", 300, 300)
    assert capture_date_from_metadata(tif) is None
    tif.with_suffix(".IMD").write_text("BEGIN_GROUP = IMAGE_1\n\tfirstLineTime = "
                                       "2019-04-03T10:11:12.000000Z;\nEND_GROUP = IMAGE_1\n")
    assert capture_date_from_metadata(tif) == date(2019, 4, 3)


def test_a_raster_without_capture_date_needs_one_given(tmp_path: Path) -> None:
    tif = _write_utm_raster(tmp_path / "scene.tif", 300, 300)
    store = open_store(tmp_path / "cache")
    with pytest.raises(ProvisioningError, match="capture date"):
        provision_geotiff(store, tif)
    rep = provision_geotiff(store, tif, capture_date=date(2020, 1, 2))
    assert rep.tiles_written > 0
    assert set(store.summary().capture_dates) == {date(2020, 1, 2)}


def test_tiles_match_gdal_reprojection_to_an_eighth_of_a_pixel(tmp_path: Path) -> None:
    tif = _write_utm_raster(tmp_path / "scene.tif")
    store = open_store(tmp_path / "cache")
    rep = provision_geotiff(store, tif, capture_date=date(2021, 5, 6))
    assert rep.zooms == (18,)  # 0.5 m at 40 N is nearest z18 (0.46 m/px)
    s = store.summary()
    assert s.tile_count == rep.tiles_written and s.zooms == {18: rep.tiles_written}
    m = store.mosaic(*s.bounds, 18)
    mad, corr, shift = _compare(m, _reference(tif, m))
    assert corr > 0.99 and mad < 3.0  # JPEG q90 differences only
    assert shift == (0.0, 0.0)


def test_provisioning_resumes_where_it_stopped(tmp_path: Path) -> None:
    tif = _write_utm_raster(tmp_path / "scene.tif", 800, 700)
    store = open_store(tmp_path / "cache")
    first = provision_geotiff(store, tif, capture_date=date(2021, 5, 6))
    records = list(store.backend.iter_records())
    lost = [r.tile for r in records[::3]]
    store.delete(lost)  # as if the first run had been interrupted before these
    kept = {r.tile: store.read_tile(r.tile) for r in records if r.tile not in lost}
    again = provision_geotiff(store, tif, capture_date=date(2021, 5, 6))
    assert again.tiles_written == len(lost)
    assert again.tiles_skipped_existing == first.tiles_written - len(lost)
    assert all(store.read_tile(t) == data for t, data in kept.items())
    assert store.summary().tile_count == first.tiles_written


def test_an_interrupted_provisioning_leaves_whole_tiles_and_no_staging(tmp_path: Path) -> None:
    """Blocks are cut and staged ahead on worker threads: stopping after the first stored
    block commits nothing more, leaves no staging folder, and a rerun completes the rest."""
    tif = _write_utm_raster(tmp_path / "scene.tif", 2600, 2000)  # 4 x 3 blocks of 8x8 tiles

    class StopError(Exception):
        pass

    def stop(done: int, total: int) -> None:
        raise StopError

    store = open_store(tmp_path / "cache")
    with pytest.raises(StopError):
        provision_geotiff(store, tif, capture_date=date(2021, 5, 6), on_progress=stop)
    staged = list((tmp_path / "cache" / "tiles" / ".staging").iterdir())
    assert staged == []
    first = store.summary().tile_count
    assert 0 < first <= 64
    assert store.reconcile().clean
    again = provision_geotiff(store, tif, capture_date=date(2021, 5, 6))
    assert again.tiles_skipped_existing == first
    assert store.summary().tile_count == first + again.tiles_written


def test_a_coarser_zoom_is_averaged_not_aliased(tmp_path: Path) -> None:
    tif = _write_utm_raster(tmp_path / "scene.tif")
    store = open_store(tmp_path / "cache")
    provision_geotiff(store, tif, zooms=[16], capture_date=date(2021, 5, 6))
    m = store.mosaic(*store.summary().bounds, 16)
    with rasterio.open(tif) as src:
        stretched = compute_stretch(src).apply(src.read(1))
        res = 2 * ORIGIN_SHIFT_M / (TILE_SIZE_PX * (1 << 16))
        ref = np.zeros(m.image.shape, np.uint8)
        reproject(stretched, ref, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=Affine(res, 0, -ORIGIN_SHIFT_M + m.px_x0 * res, 0, -res,
                                       ORIGIN_SHIFT_M - m.px_y0 * res),
                  dst_crs="EPSG:3857", resampling=Resampling.average, src_nodata=0,
                  dst_nodata=0)
    _mad, corr, _shift = _compare(m, ref)
    assert corr > 0.97


def _wv2_raster() -> Path:
    spec = importlib.util.find_spec("dgsamples")
    assert spec is not None and spec.submodule_search_locations, "dgsamples is not installed"
    found = glob.glob(f"{spec.submodule_search_locations[0]}/wv2_longmont_1k/*_PAN/*.TIF")
    assert len(found) == 1, found
    return Path(found[0])


@pytest.mark.slow
def test_worldview2_scene_provisions_end_to_end_through_the_cli(tmp_path: Path) -> None:
    raster = _wv2_raster()
    root = tmp_path / "cache"
    result = CliRunner().invoke(root_app, ["tiles", "provision", "geotiff", str(raster),
                                           "--root", str(root)])
    assert result.exit_code == 0, result.output
    store = open_store(root, read_only=True)
    s = store.summary()
    assert s.zooms == {18: 100}  # 1 km square at 0.5 m -> z18, 10 x 10 tiles
    assert s.capture_dates == {date(2014, 6, 20): 100}  # from the .IMD
    m = store.mosaic(*s.bounds, 18)
    assert m.valid.all() and not (m.missing or m.corrupt)
    mad, corr, shift = _compare(m, _reference(raster, m))
    assert corr > 0.99 and mad < 3.0
    assert shift == (0.0, 0.0)
    # the grey levels use the range: the stretch did not crush the scene into a few levels
    inside = m.image[m.image > 0]
    assert np.percentile(inside, 95) - np.percentile(inside, 5) > 120
