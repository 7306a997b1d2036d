"""End to end on real imagery: the WorldView-2 map provisioned into a temporary cache (z18,
300 m chunks), frames rendered from the WorldView-3 image of another date, the autopilot
attitude off by σ 0.5° roll/pitch and 2.5° yaw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from terrafix.camera import CameraPose, NavCameraConfig
from terrafix.geo import distance_m
from terrafix.geo.rotation import euler_to_R_body_to_ned
from terrafix.inference import ThermalMonitor, ThermalState
from terrafix.measurements import CameraFrame
from terrafix.vision import provision
from terrafix.vision.features import SiftExtractor
from terrafix.vision.registration import VisualPositioner, VpsConfig
from terrafix.vision.xfeat import MAP_WINDOW_SIZE, XFeatExtractor

from .dgdata import map_raster, render, scene_frame

pytestmark = pytest.mark.slow
CAM = NavCameraConfig()
K = CAM.processing_intrinsics()
GROUND_ALT = 1500.0  # scene_frame() puts the flat ground at 1500 m
LEVELS = (provision.LevelConfig(z=18, chunk_m=300.0, overlap=0.5),)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, model_cache) -> Path:
    root = tmp_path_factory.mktemp("vps-cache")
    cfg = provision.ProvisionConfig(levels=LEVELS)
    provision.main(cfg, root, lambda z: [map_raster(z)],
                   XFeatExtractor.open(model_cache.root, [MAP_WINDOW_SIZE]))
    provision.main(cfg, root, lambda z: [map_raster(z)], SiftExtractor())
    return root


def _case(seed: int):
    rng = np.random.default_rng(seed)
    h = rng.uniform(250, 350)
    rpy = np.array([*np.radians(rng.uniform(-10, 10, 2)), rng.uniform(-np.pi, np.pi)])
    ne = rng.uniform(-250, 250, 2)
    pose = CameraPose.from_body(np.array([ne[0], ne[1], -h]), euler_to_R_body_to_ned(*rpy),
                                CAM.extrinsics)
    lf = scene_frame()
    img = render(pose, K, lf)
    fc = rpy + rng.normal(size=3) * np.radians([0.5, 0.5, 2.5])
    lat, lon, _ = lf.ned_to_lla(np.array([ne[0], ne[1], -h]))
    return img, euler_to_R_body_to_ned(*fc), GROUND_ALT + h + rng.normal(0, 1.5), \
        float(lat), float(lon)


@pytest.fixture(scope="module")
def xfeat_vp(cache, model_cache) -> VisualPositioner:
    return VisualPositioner.open(cache, VpsConfig(model_cache=model_cache.root,
                                                  ground_alt_m=GROUND_ALT), CAM)


def test_xfeat_fixes_cross_date_frames_without_prior(xfeat_vp) -> None:
    errors, covs = [], []
    for seed in range(4):
        img, R_fc, baro, lat, lon = _case(seed)
        res = xfeat_vp.locate(CameraFrame(seed, seed, img), R_fc, baro)
        assert len(res.candidates) == min(10, len(xfeat_vp.levels[0].index))
        if res.fix is None:
            assert res.reason
            continue
        f = res.fix
        errors.append(float(distance_m(lat, lon, f.lat_deg, f.lon_deg)))
        assert f.reprojection_rmse_px <= 2.5 and f.n_inliers >= 15
        assert 0 < f.inlier_ratio <= 1
        assert np.all(np.linalg.eigvalsh(f.cov_ne_m2) > 0)
        covs.append(f.cov_ne_m2)
        assert {"features", "retrieval", "rerank", "pose", "total"} <= set(res.timings_ms)
    assert len(errors) >= 3, errors
    assert max(errors) < 20.0 and np.median(errors) < 8.0, errors
    assert not all(np.allclose(covs[0], c) for c in covs[1:])  # derived, not a constant


def test_prior_restricts_the_search(xfeat_vp) -> None:
    img, R_fc, baro, lat, lon = _case(0)
    far = xfeat_vp.locate(CameraFrame(0, 0, img), R_fc, baro, (lat + 0.1, lon, 300.0))
    assert far.fix is None and "no candidate" in far.reason
    near = xfeat_vp.locate(CameraFrame(0, 0, img), R_fc, baro, (lat + 0.001, lon, 300.0))
    assert near.fix is not None
    assert distance_m(lat, lon, near.fix.lat_deg, near.fix.lon_deg) < 20.0


@pytest.mark.parametrize("seed", [10, 11])
def test_frames_of_other_imagery_are_rejected_with_a_reason(xfeat_vp, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img, R_fc, baro, _, _ = _case(seed)
    noise = rng.integers(0, 255, img.shape, dtype=np.uint8)
    flipped = np.ascontiguousarray(img[::-1, ::-1].T[: img.shape[0], : img.shape[1]])
    canvas = np.zeros_like(img)
    canvas[: flipped.shape[0], : flipped.shape[1]] = flipped
    for other in (noise, canvas):
        res = xfeat_vp.locate(CameraFrame(0, 0, other), R_fc, baro)
        assert res.fix is None and res.reason


def test_throttling_degrades_the_keypoint_budget_and_says_so(cache, xfeat_vp) -> None:
    class Throttled(ThermalMonitor):
        def poll(self) -> ThermalState:
            return ThermalState(0, "nvml", True, 88.0, 24.0)

    vp = VisualPositioner(cache, xfeat_vp.config.model_copy(update={"throttled_keypoints": 512}),
                          xfeat_vp.extractor, xfeat_vp.levels, CAM, thermal=Throttled())
    img, R_fc, baro, _, _ = _case(1)
    res = vp.locate(CameraFrame(0, 0, img), R_fc, baro)
    assert "throttling" in res.degraded and 0 < res.n_keypoints <= 512
    nominal = xfeat_vp.locate(CameraFrame(0, 0, img), R_fc, baro)
    assert nominal.degraded == "" and nominal.n_keypoints > 512


def test_sift_path_fixes_cross_date_frames(cache) -> None:
    vp = VisualPositioner.open(cache, VpsConfig(extractor="sift", ground_alt_m=GROUND_ALT), CAM)
    errors = []
    for seed in range(3):
        img, R_fc, baro, lat, lon = _case(seed)
        res = vp.locate(CameraFrame(seed, seed, img), R_fc, baro)
        if res.fix is not None:
            errors.append(float(distance_m(lat, lon, res.fix.lat_deg, res.fix.lon_deg)))
    assert len(errors) >= 2 and max(errors) < 20.0, errors


def test_provision_cli_builds_features_and_index(tmp_path) -> None:
    from terrafix.app.cli import app

    from .dgdata import dgsamples_dir

    bayou = dgsamples_dir() / "bayou_chip" / "extract_test.tif"
    out = CliRunner().invoke(app, ["vps", "provision", str(tmp_path), "--geotiff", str(bayou),
                                   "--extractor", "sift", "--level", "18:150:0.5"])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "features" / "vps.json").is_file()
    assert (tmp_path / "retrieval" / "sift" / "z18" / "index.faiss").is_file()
    bad = CliRunner().invoke(app, ["vps", "provision", str(tmp_path), "--geotiff", str(bayou),
                                   "--level", "18-150"])
    assert bad.exit_code != 0


def test_quick_pass_and_full_pass_agree_on_an_easy_frame(cache, xfeat_vp) -> None:
    """The quick pass (fewer features, best chunk only) settles easy frames; it must not
    change where they are placed compared with the full pass alone."""
    full = VisualPositioner(cache, xfeat_vp.config.model_copy(update={"quick_pass": False}),
                            xfeat_vp.extractor, xfeat_vp.levels, CAM)
    img, R_fc, baro, lat, lon = _case(2)
    quick_res = xfeat_vp.locate(CameraFrame(0, 0, img), R_fc, baro)
    full_res = full.locate(CameraFrame(0, 0, img), R_fc, baro)
    assert quick_res.fix is not None and full_res.fix is not None
    a, b = quick_res.fix, full_res.fix
    assert distance_m(a.lat_deg, a.lon_deg, b.lat_deg, b.lon_deg) < 3.0
    assert distance_m(lat, lon, a.lat_deg, a.lon_deg) < 20.0
    assert full_res.n_keypoints == quick_res.n_keypoints  # same features, other budgets
