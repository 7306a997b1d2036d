"""Camera model: projection round trips, footprints, resizing, AI camera geometry."""

import numpy as np
import pytest

from terrafix.camera import (
    AiCameraConfig,
    CameraError,
    CameraPose,
    Intrinsics,
    NavCameraConfig,
    ground_footprint_ned,
    pixels_to_ground_ned,
    project_ned_to_pixels,
)

rng = np.random.default_rng(3)


def test_nav_camera_processing_intrinsics():
    cam = NavCameraConfig()
    K = cam.processing_intrinsics()
    assert (K.width, K.height) == (1280, 960)
    assert np.degrees(cam.sensor_intrinsics().hfov_rad) == pytest.approx(59.9, abs=0.5)
    # the 3:2 sensor is cropped to 4:3: the horizontal FOV shrinks, pixels stay square
    assert K.fx == pytest.approx(K.fy)
    assert K.cx == pytest.approx(639.5) and K.cy == pytest.approx(479.5)


@pytest.mark.parametrize("dist", [(0, 0, 0, 0, 0), (-0.12, 0.05, 0.001, -0.0005, -0.01)])
def test_pixel_ray_round_trip(dist):
    K = Intrinsics(1280, 960, 1100.0, 1100.0, 640.2, 479.7, dist)
    px = rng.uniform([0, 0], [1280, 960], (300, 2))
    rays = K.pixel_to_ray(px)
    back, ok = K.project(rays)
    assert ok.all()
    assert np.max(np.abs(back - px)) < 1e-3


def test_ground_projection_round_trip_tilted():
    K = NavCameraConfig().processing_intrinsics()
    pose = CameraPose.from_euler(np.array([100.0, -50.0, -300.0]), np.radians(15),
                                 np.radians(-12), np.radians(70))
    px = rng.uniform([0, 0], [1280, 960], (200, 2))
    ground, hit = pixels_to_ground_ned(px, pose, K, ground_down_m=5.0)
    assert hit.all() and np.allclose(ground[:, 2], 5.0)
    back, ok = project_ned_to_pixels(ground, pose, K)
    assert ok.all() and np.max(np.abs(back - px)) < 1e-6


def test_nadir_footprint_size_and_orientation():
    K = NavCameraConfig().processing_intrinsics()
    pose = CameraPose.from_euler(np.array([0.0, 0.0, -300.0]), 0.0, 0.0, 0.0)
    fp = ground_footprint_ned(pose, K, 0.0)
    width_m = 300.0 * K.width / K.fx
    # image top is towards the nose (north at yaw 0), image right towards the right wing (east)
    tl, tr, _br, bl = fp
    assert tr[1] - tl[1] == pytest.approx(width_m, rel=1e-3)
    assert tl[0] > bl[0]
    pose_sky = CameraPose.from_euler(np.array([0.0, 0.0, -300.0]), np.radians(80), 0.0, 0.0)
    with pytest.raises(CameraError, match="horizon"):
        ground_footprint_ned(pose_sky, K, 0.0)


def test_ai_camera_nadir_and_zoom():
    ai = AiCameraConfig()
    ext = ai.extrinsics(pan_deg=0.0, tilt_deg=-90.0)
    K1, K10 = ai.intrinsics(1.0), ai.intrinsics(10.0)
    assert K10.fx == pytest.approx(10 * K1.fx)
    pose = CameraPose.from_body(np.array([0.0, 0.0, -500.0]), np.eye(3), ext)
    centre = np.array([[K1.cx, K1.cy]])
    g, ok = pixels_to_ground_ned(centre, pose, K1, 0.0)
    assert ok.all() and np.allclose(g[0, :2], 0.0, atol=1e-6)
    # pan right 90°, tilt 45° down: the optical axis hits the ground east of the aircraft
    pose2 = CameraPose.from_body(np.array([0.0, 0.0, -500.0]), np.eye(3),
                                 ai.extrinsics(pan_deg=90.0, tilt_deg=-45.0))
    g2, _ = pixels_to_ground_ned(centre, pose2, K1, 0.0)
    assert g2[0, :2] == pytest.approx([0.0, 500.0 - 0.1], abs=0.01)
    with pytest.raises(CameraError):
        ai.intrinsics(0.5)
