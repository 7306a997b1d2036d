"""Map-level choice and its fallback order (no imagery needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from terrafix.camera import NavCameraConfig
from terrafix.geo.rotation import euler_to_R_body_to_ned
from terrafix.geo.tiles import ground_resolution_m_per_px
from terrafix.vision.features import SiftExtractor
from terrafix.vision.registration import VisualPositioner, VpsConfig, _Level

CAM = NavCameraConfig()
LAT = 40.14


def _positioner(zooms: tuple[int, ...]) -> VisualPositioner:
    levels = [_Level(z, SimpleNamespace(gsd_m=ground_resolution_m_per_px(z, LAT)), None)
              for z in zooms]
    return VisualPositioner(".", VpsConfig(extractor="sift", blas_threads=0), SiftExtractor(),
                            levels, CAM)  # type: ignore[arg-type]


def _nadir() -> np.ndarray:
    return euler_to_R_body_to_ned(0.0, 0.0, 0.3) @ CAM.extrinsics.R_cam_to_body


@pytest.mark.parametrize(("height", "first"), [(120.0, 19), (350.0, 18), (2000.0, 17)])
def test_level_follows_the_footprint_and_the_others_follow_as_fallbacks(
        height: float, first: int) -> None:
    vp = _positioner((17, 18, 19))
    order = [lv.z for lv in vp._levels_for(height, _nadir())]
    assert order[0] == first
    assert sorted(order) == [17, 18, 19]
    # The next level tried is the nearest in resolution, the coarser one on a tie.
    assert abs(order[1] - first) == 1
    if 17 < first < 19:
        assert order[1] == first - 1
