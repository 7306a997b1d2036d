"""Warp a camera frame north-up onto the ground plane at map scale, using the autopilot's
attitude and the barometric height.

Why: learned and classic descriptors tolerate only modest rotation and scale change, while the
aircraft flies any heading at 100–1000 m. Warping the frame with the (approximately known)
attitude and height turns the cross-view problem into matching two north-up images of equal
ground resolution that differ by a translation plus the small residual rotation/scale/tilt due
to attitude and altitude errors — which the homography fit then absorbs. The warp is an exact
plane-induced homography, so every canvas pixel maps back to a frame pixel for the pose solve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from terrafix.camera import CameraPose, Intrinsics, pixels_to_ground_ned
from terrafix.vision.errors import VisionError


@dataclass(frozen=True, slots=True)
class OrthoView:
    """A frame on a square north-up canvas.

    image: (S, S) uint8; valid: (S, S) bool, True where the canvas shows the frame.
    gsd_m: ground metres per canvas pixel.
    centre_ne_m: (2,) float64, north/east metres from the camera's horizontal position to the
    ground point at the canvas centre (under the attitude used for the warp).
    H_canvas_to_frame: (3, 3) float64, canvas pixels → frame pixels (undistorted frame).
    cropped: True when the footprint was larger than the largest canvas (centre kept).
    """

    image: np.ndarray
    valid: np.ndarray
    gsd_m: float
    centre_ne_m: np.ndarray
    H_canvas_to_frame: np.ndarray
    cropped: bool

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    def canvas_to_ground_ne(self, uv: np.ndarray) -> np.ndarray:
        """Canvas pixels (N, 2) → ground north/east metres (N, 2) relative to the camera's
        horizontal position (valid under the warp's attitude and height)."""
        c = (self.size - 1) / 2.0
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        return np.column_stack((-(uv[:, 1] - c) * self.gsd_m + self.centre_ne_m[0],
                                (uv[:, 0] - c) * self.gsd_m + self.centre_ne_m[1]))

    def canvas_to_frame(self, uv: np.ndarray) -> np.ndarray:
        """Canvas pixels (N, 2) → frame pixels (N, 2)."""
        p = np.column_stack((np.asarray(uv, np.float64).reshape(-1, 2), np.ones(len(uv))))
        q = p @ self.H_canvas_to_frame.T
        return q[:, :2] / q[:, 2:3]


def make_ortho_view(image: np.ndarray, intrinsics: Intrinsics, R_cam_to_ned: np.ndarray,
                    height_m: float, gsd_m: float, sizes: Sequence[int]) -> OrthoView:
    """Warp a (H, W) uint8 frame onto the smallest square canvas (side from `sizes`) holding
    its ground footprint at `gsd_m` m/px; the largest canvas is used (footprint centre kept)
    when none does.

    height_m: camera height above the ground plane (m, > 0).
    """
    if image.shape != (intrinsics.height, intrinsics.width) or image.dtype != np.uint8:
        raise VisionError(f"frame {image.shape} {image.dtype} does not match intrinsics "
                          f"{intrinsics.width}x{intrinsics.height} uint8")
    if not height_m > 1.0:
        raise VisionError(f"height above ground must be > 1 m, got {height_m}")
    if intrinsics.has_distortion:
        image = cv2.undistort(image, intrinsics.K, np.array(intrinsics.dist))
    pose = CameraPose(np.array([0.0, 0.0, -height_m]), np.asarray(R_cam_to_ned, np.float64))
    w, h = intrinsics.width, intrinsics.height
    probe = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5],
                      [intrinsics.cx, intrinsics.cy]])
    ground, hit = pixels_to_ground_ned(probe, pose, intrinsics, 0.0)
    if not np.all(hit):
        raise VisionError("the frame sees above the horizon: tilt implausible for a nadir fix")
    centre = ground[4, :2]
    half = np.max(np.abs(ground[:4, :2] - centre)) / gsd_m
    need = int(np.ceil(2 * half + 2))
    sides = sorted(sizes)
    side = next((s for s in sides if s >= need), sides[-1])
    c = (side - 1) / 2.0
    canvas_to_ne = np.array([[0.0, -gsd_m, c * gsd_m + centre[0]],
                             [gsd_m, 0.0, -c * gsd_m + centre[1]],
                             [0.0, 0.0, 1.0]])
    ne_to_frame = intrinsics.K @ pose.R_cam_to_ned.T @ np.diag([1.0, 1.0, height_m])
    H_canvas_to_frame = ne_to_frame @ canvas_to_ne
    # Anti-aliasing: shrink the frame to about the canvas resolution before warping.
    ground_per_frame_px = height_m / (intrinsics.fx * max(pose.R_cam_to_ned[2, 2], 0.5))
    shrink = gsd_m / ground_per_frame_px
    src, H_src = image, H_canvas_to_frame
    if shrink > 1.3:
        sw, sh = max(round(w / shrink), 8), max(round(h / shrink), 8)
        src = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        sx, sy = sw / w, sh / h
        to_small = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5],
                             [0.0, 0.0, 1.0]])
        H_src = to_small @ H_canvas_to_frame
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    canvas = cv2.warpPerspective(src, H_src, (side, side), flags=flags,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ones = np.full(src.shape, 255, np.uint8)
    valid = cv2.warpPerspective(ones, H_src, (side, side), flags=cv2.INTER_NEAREST
                                | cv2.WARP_INVERSE_MAP, borderValue=0) > 0
    return OrthoView(canvas, valid, float(gsd_m), centre.copy(), H_canvas_to_frame,
                     need > side)

