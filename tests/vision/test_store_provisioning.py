"""Provisioning from the tile cache itself: WorldView-2 tiles in a real TileStore (SQLite),
then `terrafix vps provision` over the store's mosaics, then a fix against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from terrafix.app.cli import app
from terrafix.camera import NavCameraConfig
from terrafix.geo import distance_m
from terrafix.measurements import CameraFrame
from terrafix.vision.rasters import rasters_from_store
from terrafix.vision.registration import VisualPositioner, VpsConfig

from .dgdata import pan_path
from .test_registration import GROUND_ALT, _case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tile-cache")
    out = CliRunner().invoke(app, ["tiles", "provision", "geotiff", str(pan_path("wv2")),
                                   "--root", str(root), "--zoom", "18"])
    assert out.exit_code == 0, out.output
    return root


def test_store_mosaic_windows_cover_the_cache_and_upsample_to_finer_levels(store_root) -> None:
    from terrafix.tiles.config import open_store

    store = open_store(store_root, read_only=True)
    try:
        z18 = rasters_from_store(store, 18, window_px=1024)
        z19 = rasters_from_store(store, 19, window_px=2048)
    finally:
        store.close()
    assert len(z18) > 1 and all(r.z == 18 for r in z18)
    assert sum(r.valid.sum() for r in z18) > 0.9 * 2.0e6 * (0.5 / 0.456) ** 2
    first = min(z18, key=lambda r: (r.px_y0, r.px_x0))
    up = min(z19, key=lambda r: (r.px_y0, r.px_x0))
    assert (up.px_x0, up.px_y0) == (2 * first.px_x0, 2 * first.px_y0)
    assert up.image.shape == (2 * first.image.shape[0], 2 * first.image.shape[1])
    np.testing.assert_allclose(up.image[1::2, 1::2][:200, :200].astype(float),
                               first.image[:200, :200].astype(float), atol=40)


def test_vps_provision_from_the_store_then_locate(store_root) -> None:
    out = CliRunner().invoke(app, ["vps", "provision", str(store_root), "--extractor", "sift",
                                   "--level", "18:300:0.5"])
    assert out.exit_code == 0, out.output
    vp = VisualPositioner.open(store_root, VpsConfig(extractor="sift", ground_alt_m=GROUND_ALT),
                               NavCameraConfig())
    img, R_fc, baro, lat, lon = _case(0)
    res = vp.locate(CameraFrame(0, 0, img), R_fc, baro)
    assert res.fix is not None, res.reason
    assert distance_m(lat, lon, res.fix.lat_deg, res.fix.lon_deg) < 20.0


def test_vps_provision_without_levels_builds_the_zooms_the_cache_holds(store_root,
                                                                      tmp_path) -> None:
    """A cache provisioned at z18 only: the default (z19 + z18) is not forced on it."""
    import json
    import shutil

    root = tmp_path / "cache"
    shutil.copytree(store_root, root, ignore=shutil.ignore_patterns("features", "retrieval"))
    out = CliRunner().invoke(app, ["vps", "provision", str(root), "--extractor", "sift"])
    assert out.exit_code == 0, out.output
    assert "levels from the cache's zooms: z18 (700 m chunks, 45% overlap)" in out.output
    manifest = json.loads((root / "features" / "vps.json").read_text())
    assert manifest["levels"]["sift"] == [18]
    assert not (root / "features" / "sift" / "z19").exists()
