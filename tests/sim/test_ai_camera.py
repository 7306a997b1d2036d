"""The simulated AI camera: rendered from the same worlds with gimbal angles and zoom, and its
truth consistent with what it renders (a zoomed view is the centre of the wide one, and the
ground point of a pixel projects back to it)."""

from __future__ import annotations

import cv2
import numpy as np

from terrafix.geo import LocalFrame
from terrafix.geo.rotation import euler_to_R_body_to_ned
from terrafix.sim.ai_camera import AiCameraSim, GimbalState
from terrafix.sim.dataset import TruthState
from terrafix.sim.world import SyntheticWorld


def _truth(yaw: float = 0.4) -> TruthState:
    euler = np.array([0.05, 0.02, yaw])
    return TruthState(0, np.array([100.0, -50.0, -250.0]), 0.0, 0.0, 0.0, np.zeros(3),
                      np.array([1.0, 0, 0, 0]), euler_to_R_body_to_ned(*euler), euler,
                      np.zeros(3), np.zeros(3))


def test_zoomed_view_is_the_centre_of_the_wide_view() -> None:
    frame = LocalFrame(48.2, 35.6, 120.0)
    sim = AiCameraSim(SyntheticWorld(5, frame, extent_m=5000.0), frame)
    wide = sim.render(_truth(), GimbalState(30.0, -60.0, 1.0)).astype(np.float32)
    tele = sim.render(_truth(), GimbalState(30.0, -60.0, 4.0)).astype(np.float32)
    h, w = wide.shape
    crop = wide[h // 2 - h // 8:h // 2 + h // 8, w // 2 - w // 8:w // 2 + w // 8]
    small = cv2.resize(tele, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_AREA)
    corr = np.corrcoef(crop.ravel(), small.ravel())[0, 1]
    assert corr > 0.8, corr
    other = sim.render(_truth(), GimbalState(120.0, -60.0, 4.0)).astype(np.float32)
    small_other = cv2.resize(other, (crop.shape[1], crop.shape[0]),
                             interpolation=cv2.INTER_AREA)
    assert np.corrcoef(crop.ravel(), small_other.ravel())[0, 1] < 0.5  # panned away


def test_truth_round_trip_and_focal_bias() -> None:
    frame = LocalFrame(48.2, 35.6, 120.0)
    sim = AiCameraSim(SyntheticWorld(5, frame, extent_m=5000.0), frame, focal_bias=0.01)
    g = GimbalState(-45.0, -50.0, 6.0)
    p = sim.ground_point(_truth(), g, (1500.0, 200.0), relief_m=3.0)
    assert p is not None and abs(p[2] - sim.ground_down_m(3.0)) < 1e-9
    assert np.allclose(sim.pixel_of(_truth(), g, p), (1500.0, 200.0), atol=1e-6)
    assert sim.true_intrinsics(6.0).fx == sim.camera.intrinsics(6.0).fx * np.exp(0.01)
    assert sim.ground_point(_truth(), GimbalState(0.0, 5.0, 1.0), (960.0, 540.0)) is None
