from __future__ import annotations

import numpy as np
import pytest

from terrafix.camera import CameraPose, NavCameraConfig, project_ned_to_pixels
from terrafix.geo.rotation import euler_to_R_body_to_ned
from terrafix.vision.errors import VisionError
from terrafix.vision.features import SiftExtractor
from terrafix.vision.ortho import make_ortho_view
from terrafix.vision.xfeat import XFeatExtractor

from .dgdata import map_raster

CAM = NavCameraConfig()
K = CAM.processing_intrinsics()


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    r = map_raster(18)
    return np.ascontiguousarray(r.image[600:1000, 700:1180])  # 400 x 480, real WV2 pixels


@pytest.fixture(scope="module")
def xfeat(model_cache) -> XFeatExtractor:
    return XFeatExtractor.open(model_cache.root, [(512, 512), (640, 640)])


def test_xfeat_keypoints_are_sorted_unit_and_inside_valid(xfeat, crop) -> None:
    valid = np.ones(crop.shape, bool)
    valid[:, 300:] = False
    f = xfeat.extract(crop, 500, valid)
    assert 100 < len(f) <= 500
    assert np.all(np.diff(f.scores) <= 0)
    np.testing.assert_allclose(np.linalg.norm(f.descriptors, axis=1), 1.0, atol=1e-5)
    assert f.keypoints[:, 0].max() < 300 - 8  # nothing in or next to the invalid part
    assert xfeat.model_for(*crop.shape[::-1]).key.width == 512  # smallest holding model
    with pytest.raises(VisionError, match="no XFeat model"):
        xfeat.model_for(2000, 10)


@pytest.mark.parametrize("name", ["xfeat", "sift"])
def test_features_follow_a_shifted_image(name: str, xfeat, crop) -> None:
    """The same scene shifted by (17, 9) px: matched keypoints move by that shift."""
    from terrafix.vision.matching import match_mutual

    ext = xfeat if name == "xfeat" else SiftExtractor()
    a, b = crop[:360, :440], crop[9:369, 17:457]
    fa, fb = ext.extract(a, 800), ext.extract(b, 800)
    m = match_mutual(fa.descriptors, fb.descriptors, ratio=0.9)
    d = fa.keypoints[m.idx0] - fb.keypoints[m.idx1]
    good = np.all(np.abs(d - [17.0, 9.0]) < 1.5, axis=1)
    assert len(m) > 50 and good.mean() > 0.8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ortho_view_maps_canvas_pixels_to_ground_and_frame(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h = rng.uniform(100, 400)
    R_body = euler_to_R_body_to_ned(*np.radians(rng.uniform(-20, 20, 2)),
                                    rng.uniform(-np.pi, np.pi))
    pose = CameraPose.from_body(np.array([0.0, 0.0, -h]), R_body, CAM.extrinsics)
    img = rng.integers(0, 255, (K.height, K.width), dtype=np.uint8)
    gsd = 0.46
    view = make_ortho_view(img, K, pose.R_cam_to_ned, h, gsd, (384, 512, 640, 768))
    uv = rng.uniform(0, view.size - 1, (50, 2))
    ne = view.canvas_to_ground_ne(uv)
    px, _ = project_ned_to_pixels(np.column_stack((ne, np.zeros(50))), pose, K)
    np.testing.assert_allclose(view.canvas_to_frame(uv), px, atol=1e-6)
    # North-up at map scale: one canvas pixel right = gsd metres east.
    d = view.canvas_to_ground_ne(np.array([[100.0, 100.0], [101.0, 100.0]]))
    np.testing.assert_allclose(d[1] - d[0], [0.0, gsd], atol=1e-9)
    assert view.valid.mean() > 0.2


def test_ortho_view_refuses_a_camera_seeing_the_sky() -> None:
    R_body = euler_to_R_body_to_ned(np.radians(80.0), 0.0, 0.0)
    pose = CameraPose.from_body(np.zeros(3), R_body, CAM.extrinsics)
    img = np.zeros((K.height, K.width), np.uint8)
    with pytest.raises(VisionError, match="horizon"):
        make_ortho_view(img, K, pose.R_cam_to_ned, 200.0, 0.46, (384,))
