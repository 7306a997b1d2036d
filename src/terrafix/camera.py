"""Pinhole camera with Brown-Conrady distortion, camera-to-body extrinsics, and ground geometry.

Frames: camera x right, y down, z along the optical axis; body FRD; navigation NED. A camera
pose is the camera centre in NED plus `R_cam_to_ned`. The ground is modelled locally as the
plane `down = ground_down_m` (flat farmland/steppe is the operating context; terrain relief
enters as an error term elsewhere). Geometry lives here, never in I/O code.

Two cameras are configured: the fixed nadir navigation camera (20 MP sensor, downscaled to a
processing resolution) and the gimballed, zoomable AI camera whose pixels are geolocated for the
object-localisation API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from terrafix.geo.rotation import euler_to_R_body_to_ned


class CameraError(ValueError):
    """Camera parameters or geometry outside what the model accepts."""


@dataclass(frozen=True, slots=True)
class Intrinsics:
    """Pinhole intrinsics in pixels plus OpenCV distortion (k1, k2, p1, p2, k3)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    dist: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise CameraError(f"image size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0):
            raise CameraError(f"focal lengths must be > 0 px, got fx={self.fx}, fy={self.fy}")
        if len(self.dist) != 5:
            raise CameraError(f"dist must be (k1, k2, p1, p2, k3), got {self.dist}")

    @property
    def K(self) -> np.ndarray:
        """(3, 3) camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        return any(abs(c) > 0.0 for c in self.dist)

    @property
    def hfov_rad(self) -> float:
        return float(2.0 * np.arctan(self.width / (2.0 * self.fx)))

    def resized(self, width: int, height: int) -> Intrinsics:
        """Intrinsics after a centred crop of the sensor to the target aspect ratio and a
        uniform rescale to (width, height) — how a 3:2 sensor feeds a 4:3 processing size."""
        target_aspect = width / height
        crop_w, crop_h = float(self.width), float(self.height)
        if crop_w / crop_h > target_aspect:
            crop_w = crop_h * target_aspect
        else:
            crop_h = crop_w / target_aspect
        off_x = (self.width - crop_w) / 2.0
        off_y = (self.height - crop_h) / 2.0
        s = width / crop_w
        return Intrinsics(
            width=width,
            height=height,
            fx=self.fx * s,
            fy=self.fy * s,
            cx=(self.cx - off_x + 0.5) * s - 0.5,
            cy=(self.cy - off_y + 0.5) * s - 0.5,
            dist=self.dist,
        )

    def pixel_to_ray(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) -> unit rays (N, 3) in the camera frame (distortion removed)."""
        px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        if self.has_distortion:
            norm = cv2.undistortPoints(px.reshape(-1, 1, 2), self.K, np.array(self.dist))
            xy = norm.reshape(-1, 2)
        else:
            xy = np.column_stack(((px[:, 0] - self.cx) / self.fx, (px[:, 1] - self.cy) / self.fy))
        rays = np.column_stack((xy, np.ones(len(xy))))
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)

    def project(self, p_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points (N, 3) in the camera frame -> pixels (N, 2) and a mask (N,) of points in
        front of the camera (z > 0). Pixels of points behind the camera are NaN."""
        p = np.asarray(p_cam, dtype=np.float64).reshape(-1, 3)
        in_front = p[:, 2] > 1e-9
        z = np.where(in_front, p[:, 2], np.nan)
        x, y = p[:, 0] / z, p[:, 1] / z
        if self.has_distortion:
            k1, k2, p1, p2, k3 = self.dist
            r2 = x * x + y * y
            radial = 1.0 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
            xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
            yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
            x, y = xd, yd
        return np.column_stack((self.fx * x + self.cx, self.fy * y + self.cy)), in_front

    def contains(self, pixels: np.ndarray) -> np.ndarray:
        """Mask (N,) of pixels inside the image."""
        px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        return ((px[:, 0] >= -0.5) & (px[:, 0] <= self.width - 0.5)
                & (px[:, 1] >= -0.5) & (px[:, 1] <= self.height - 0.5))


def intrinsics_from_sensor(width_px: int, height_px: int, pixel_pitch_um: float,
                           focal_mm: float,
                           dist: tuple[float, float, float, float, float] = (0.0,) * 5
                           ) -> Intrinsics:
    """Intrinsics of an ideal sensor/lens pair (principal point at the centre)."""
    f_px = focal_mm * 1000.0 / pixel_pitch_um
    return Intrinsics(width_px, height_px, f_px, f_px, (width_px - 1) / 2.0,
                      (height_px - 1) / 2.0, dist)


# Nadir mount, image top towards the nose: camera x = body right, camera y = body aft,
# camera z = body down.
R_CAM_TO_BODY_NADIR = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, slots=True)
class Extrinsics:
    """Camera-to-body calibration: rotation (3, 3) and lever arm p_cam_in_body (3,) metres."""

    R_cam_to_body: np.ndarray = field(default_factory=lambda: R_CAM_TO_BODY_NADIR.copy())
    p_cam_in_body: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self) -> None:
        R = np.asarray(self.R_cam_to_body, dtype=np.float64)
        if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6) \
                or np.linalg.det(R) < 0:
            raise CameraError(f"R_cam_to_body must be a proper rotation, got {R.tolist()}")


@dataclass(frozen=True, slots=True)
class CameraPose:
    """Camera centre in NED (3,) metres and orientation R_cam_to_ned (3, 3)."""

    p_cam_ned: np.ndarray
    R_cam_to_ned: np.ndarray

    @staticmethod
    def from_body(p_body_ned: np.ndarray, R_body_to_ned: np.ndarray,
                  extrinsics: Extrinsics) -> CameraPose:
        R_cam_to_ned = R_body_to_ned @ extrinsics.R_cam_to_body
        p_cam_ned = np.asarray(p_body_ned, dtype=np.float64) + R_body_to_ned @ \
            extrinsics.p_cam_in_body
        return CameraPose(p_cam_ned, R_cam_to_ned)

    @staticmethod
    def from_euler(p_body_ned: np.ndarray, roll_rad: float, pitch_rad: float, yaw_rad: float,
                   extrinsics: Extrinsics | None = None) -> CameraPose:
        return CameraPose.from_body(p_body_ned, euler_to_R_body_to_ned(roll_rad, pitch_rad,
                                                                        yaw_rad),
                                    extrinsics or Extrinsics())


def project_ned_to_pixels(points_ned: np.ndarray, pose: CameraPose,
                          intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Ground/world points (N, 3) NED -> pixels (N, 2) and a mask (N,) of points in front."""
    p_cam = (np.asarray(points_ned, dtype=np.float64).reshape(-1, 3) - pose.p_cam_ned) \
        @ pose.R_cam_to_ned
    return intrinsics.project(p_cam)


def pixels_to_ground_ned(pixels: np.ndarray, pose: CameraPose, intrinsics: Intrinsics,
                         ground_down_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Intersect pixel rays with the plane down = ground_down_m.

    Returns points (N, 3) NED and a mask (N,) of rays that hit the ground ahead of the camera
    (NaN where they do not, e.g. above the horizon).
    """
    rays_ned = intrinsics.pixel_to_ray(pixels) @ pose.R_cam_to_ned.T
    height_m = ground_down_m - pose.p_cam_ned[2]
    hits = rays_ned[:, 2] > 1e-9
    t = np.where(hits, height_m / np.where(hits, rays_ned[:, 2], 1.0), np.nan)
    hits &= t > 0
    t = np.where(hits, t, np.nan)
    return pose.p_cam_ned + rays_ned * t[:, None], hits


def ground_footprint_ned(pose: CameraPose, intrinsics: Intrinsics,
                         ground_down_m: float) -> np.ndarray:
    """Corners (4, 2) north/east metres of the image footprint on flat ground, in the order
    top-left, top-right, bottom-right, bottom-left. Raises if a corner sees the sky."""
    w, h = intrinsics.width - 0.5, intrinsics.height - 0.5
    corners = np.array([[-0.5, -0.5], [w, -0.5], [w, h], [-0.5, h]])
    pts, ok = pixels_to_ground_ned(corners, pose, intrinsics, ground_down_m)
    if not np.all(ok):
        raise CameraError("footprint is unbounded: an image corner looks above the horizon")
    return pts[:, :2]


def ground_sample_distance_m(intrinsics: Intrinsics, height_above_ground_m: float) -> float:
    """Nadir ground sample distance (m/px) at a given height above ground."""
    return float(height_above_ground_m / intrinsics.fx)


@dataclass(frozen=True, slots=True)
class NavCameraConfig:
    """The fixed nadir navigation camera: a ~20 MP 1" sensor (5472x3648, 2.4 µm pixels,
    e.g. Sony IMX183) behind a lens giving ~60° horizontal field of view, processed at a
    downscaled resolution."""

    sensor_width_px: int = 5472
    sensor_height_px: int = 3648
    pixel_pitch_um: float = 2.4
    focal_mm: float = 11.4
    dist: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    processing_width_px: int = 1280
    processing_height_px: int = 960
    frame_rate_hz: float = 3.0
    extrinsics: Extrinsics = field(default_factory=Extrinsics)

    def sensor_intrinsics(self) -> Intrinsics:
        return intrinsics_from_sensor(self.sensor_width_px, self.sensor_height_px,
                                      self.pixel_pitch_um, self.focal_mm, self.dist)

    def processing_intrinsics(self) -> Intrinsics:
        return self.sensor_intrinsics().resized(self.processing_width_px,
                                                self.processing_height_px)


@dataclass(frozen=True, slots=True)
class AiCameraConfig:
    """The gimballed zoom camera. Only its gimbal angles and zoom reach terrafix.

    Gimbal angles are relative to the body: pan (yaw, right positive), tilt (pitch, up
    positive, -90° = nadir), roll. Focal length scales linearly with the zoom factor.
    """

    width_px: int = 1920
    height_px: int = 1080
    hfov_at_1x_deg: float = 62.0
    max_zoom: float = 30.0
    p_gimbal_in_body: tuple[float, float, float] = (0.0, 0.0, 0.1)

    def intrinsics(self, zoom: float) -> Intrinsics:
        if not (1.0 <= zoom <= self.max_zoom):
            raise CameraError(f"zoom must be in [1, {self.max_zoom}], got {zoom}")
        f_px = zoom * (self.width_px / 2.0) / np.tan(np.radians(self.hfov_at_1x_deg) / 2.0)
        return Intrinsics(self.width_px, self.height_px, f_px, f_px, (self.width_px - 1) / 2.0,
                          (self.height_px - 1) / 2.0)

    def extrinsics(self, pan_deg: float, tilt_deg: float, roll_deg: float = 0.0) -> Extrinsics:
        # Gimbal frame is FRD-like with x along the optical axis; camera z = gimbal x,
        # camera x = gimbal y, camera y = gimbal z.
        R_gimbal_to_body = euler_to_R_body_to_ned(np.radians(roll_deg), np.radians(tilt_deg),
                                                  np.radians(pan_deg))
        R_cam_to_gimbal = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        return Extrinsics(R_gimbal_to_body @ R_cam_to_gimbal,
                          np.array(self.p_gimbal_in_body, dtype=np.float64))
