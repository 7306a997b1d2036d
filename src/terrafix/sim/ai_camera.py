"""The gimballed AI camera in the simulator: rendered from the same worlds as the navigation
camera, with gimbal angles and zoom, and the truth of where each pixel meets the ground.

Why its own module: object localisation is scored against this truth, so the truth must come
from the renderer's own geometry (camera.py's pixels_to_ground_ned on the world's ground plane),
not from the localisation code under test (targeting.geometry). A target may sit on a little
relief (`relief_m`, metres above the world's flat ground) that the onboard flat-ground model does
not know.

Sensor errors of what the camera and gimbal report (AiCameraErrors): gimbal angles with white
encoder noise per report, a per-flight focal-length calibration error (the true focal length is
the nominal one for the zoom times exp(bias)), and the tracker's pixel noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from terrafix.camera import (
    AiCameraConfig,
    CameraPose,
    Intrinsics,
    pixels_to_ground_ned,
    project_ned_to_pixels,
)
from terrafix.geo.frames import LocalFrame
from terrafix.sim.dataset import TruthState
from terrafix.sim.errors import WorldError


@dataclass(frozen=True, slots=True)
class AiCameraErrors:
    """1-sigma errors of what the AI camera and its gimbal report."""

    gimbal_sigma_deg: float = 0.2
    focal_bias_sigma: float = 0.01
    pixel_sigma_px: float = 1.5


@dataclass(frozen=True, slots=True)
class GimbalState:
    """Gimbal angles relative to the body (degrees) and zoom factor."""

    pan_deg: float
    tilt_deg: float
    zoom: float
    roll_deg: float = 0.0


class AiCameraSim:
    """The AI camera on the simulated aircraft over `world` (an OrthoWorld/SyntheticWorld)."""

    def __init__(self, world: object, frame: LocalFrame, camera: AiCameraConfig | None = None,
                 focal_bias: float = 0.0) -> None:
        self.world = world
        self.frame = frame
        self.camera = camera or AiCameraConfig()
        self.focal_bias = float(focal_bias)

    def true_intrinsics(self, zoom: float) -> Intrinsics:
        """Intrinsics the lens really has at this zoom (nominal focal times exp(bias))."""
        K = self.camera.intrinsics(zoom)
        s = math.exp(self.focal_bias)
        return Intrinsics(K.width, K.height, K.fx * s, K.fy * s, K.cx, K.cy, K.dist)

    def pose(self, truth: TruthState, g: GimbalState) -> CameraPose:
        return CameraPose.from_body(truth.p_ned_m, truth.R_body_to_ned,
                                    self.camera.extrinsics(g.pan_deg, g.tilt_deg, g.roll_deg))

    def ground_down_m(self, relief_m: float = 0.0) -> float:
        return float(self.world.ground_down_m(self.frame)) - relief_m  # type: ignore[attr-defined]

    def ground_point(self, truth: TruthState, g: GimbalState, pixel: tuple[float, float],
                     relief_m: float = 0.0) -> np.ndarray | None:
        """True ground point (3,) NED of a pixel, or None when its ray misses the ground."""
        pts, ok = pixels_to_ground_ned(np.array([pixel], dtype=np.float64), self.pose(truth, g),
                                       self.true_intrinsics(g.zoom),
                                       self.ground_down_m(relief_m))
        return pts[0] if ok[0] else None

    def pixel_of(self, truth: TruthState, g: GimbalState, p_ned: np.ndarray
                 ) -> np.ndarray | None:
        """Where a ground point (3,) NED appears (2,) in the image, or None (behind / outside)."""
        K = self.true_intrinsics(g.zoom)
        px, front = project_ned_to_pixels(np.asarray(p_ned).reshape(1, 3), self.pose(truth, g),
                                          K)
        if not front[0] or not K.contains(px)[0]:
            return None
        return px[0]

    def on_imagery(self, p_ned: np.ndarray) -> bool:
        """True when a ground point lies on valid imagery of an orthophoto world (always True
        for worlds without a validity mask, e.g. the procedural one)."""
        to_px = getattr(self.world, "lla_to_pixel", None)
        valid = getattr(self.world, "valid", None)
        if to_px is None or valid is None:
            return True
        lat, lon, _ = self.frame.ned_to_lla(np.asarray(p_ned, dtype=np.float64))
        col, row = to_px(np.atleast_1d(lat), np.atleast_1d(lon))
        c, r = round(float(col[0])), round(float(row[0]))
        return 0 <= r < valid.shape[0] and 0 <= c < valid.shape[1] and bool(valid[r, c])

    def render(self, truth: TruthState, g: GimbalState) -> np.ndarray:
        """The (H, W) uint8 image; WorldError when part of it looks at the sky."""
        try:
            return self.world.render(self.pose(truth, g),  # type: ignore[attr-defined]
                                     self.true_intrinsics(g.zoom), self.frame)
        except WorldError:
            raise
        except Exception as exc:  # the renderer's own geometry errors
            raise WorldError(f"AI camera cannot render this view: {exc}") from None
