"""Robust 2-D geometry between matched points: homography by USAC MAGSAC++ and the checks that
tell a real fit from a degenerate one.

Both sides live at map scale and north-up (the frame is warped with the autopilot's attitude
and altitude first, see `terrafix.vision.ortho`), so a correct fit is close to a pure
translation: its scale is ~1 (altitude error), its rotation small (yaw error) and its
perspective part small (roll/pitch error). A fit far from that, or one whose inliers are
bunched together or nearly collinear, is rejected with a reason rather than trusted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class GeometryConfig:
    """threshold_px: MAGSAC inlier threshold (pixels of the second image); min_inliers;
    scale/rotation bounds of a plausible fit; max_perspective_change: largest relative change
    of the homogeneous scale across the image (a tilt error of a few degrees gives ~0.05);
    min_spread: smallest allowed ratio of the inliers' minor spread (std, px) to the side."""

    threshold_px: float = 3.0
    confidence: float = 0.999
    max_iters: int = 2000
    min_inliers: int = 12
    scale_range: tuple[float, float] = (0.75, 1.33)
    max_rotation_deg: float = 25.0
    max_perspective_change: float = 0.3
    min_spread: float = 0.04


@dataclass(frozen=True, slots=True)
class HomographyFit:
    """H: (3, 3) float64 mapping points of image 0 to image 1 (None when no fit);
    inliers: (M,) bool over the input correspondences; reason: "" when plausible."""

    H: np.ndarray | None
    inliers: np.ndarray
    reason: str

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def ok(self) -> bool:
        return self.H is not None and not self.reason


def similarity_parts(H: np.ndarray) -> tuple[float, float, float]:
    """(scale, rotation degrees, perspective magnitude) of a homography near a similarity,
    from its linear part at the origin."""
    A = H[:2, :2] / H[2, 2]
    scale = float(np.sqrt(abs(np.linalg.det(A))))
    rotation = float(np.degrees(np.arctan2(A[1, 0] - A[0, 1], A[0, 0] + A[1, 1])))
    return scale, rotation, float(np.hypot(H[2, 0], H[2, 1]) / abs(H[2, 2]))


def fit_similarity(pts0: np.ndarray, pts1: np.ndarray, config: GeometryConfig | None = None,
                   image_side_px: float | None = None) -> HomographyFit:
    """Fit a similarity (scale, rotation, translation) pts0 (M, 2) → pts1 (M, 2) by RANSAC and
    check its scale and rotation; H is returned as a (3, 3) matrix.

    Why a similarity for re-ranking: both sides are north-up at map scale, so a right chunk
    differs from the canvas by little more than a translation. A 2-point minimal sample finds
    that among 5 % inliers in a few thousand iterations, where the 4-point homography of
    MAGSAC needs far more and often misses — so a weak but right chunk still ranks above a
    wrong one and reaches the guided match (which fits the full homography).
    With image_side_px the inliers' spread is checked as in `fit_homography`.
    """
    cfg = config or GeometryConfig()
    n = len(pts0)
    none = np.zeros(n, bool)
    if n < max(cfg.min_inliers, 2):
        return HomographyFit(None, none, f"too few matches ({n} < {cfg.min_inliers})")
    A, mask = cv2.estimateAffinePartial2D(pts0.astype(np.float64), pts1.astype(np.float64),
                                          method=cv2.RANSAC,
                                          ransacReprojThreshold=cfg.threshold_px,
                                          maxIters=cfg.max_iters, confidence=cfg.confidence,
                                          refineIters=10)
    if A is None or mask is None:
        return HomographyFit(None, none, "no similarity found")
    H = np.vstack((A, [0.0, 0.0, 1.0]))
    inliers = mask.ravel().astype(bool)
    reason = _inlier_scale_rotation_reason(H, inliers, cfg)
    if reason:
        return HomographyFit(H, inliers, reason)
    if image_side_px is not None:
        reason = _spread_reason(pts0[inliers], image_side_px, cfg)
        if reason:
            return HomographyFit(H, inliers, reason)
    return HomographyFit(H, inliers, "")


def _inlier_scale_rotation_reason(H: np.ndarray, inliers: np.ndarray,
                                  cfg: GeometryConfig) -> str:
    """Non-empty when a fit (H: (3, 3), inliers: (M,) bool) has too few inliers, or a scale
    or in-plane rotation that the altitude and attitude did not predict (a wrong match, not
    a camera pose)."""
    k = int(inliers.sum())
    if k < cfg.min_inliers:
        return f"too few inliers ({k} < {cfg.min_inliers})"
    scale, rotation, _ = similarity_parts(H)
    if not (cfg.scale_range[0] <= scale <= cfg.scale_range[1]):
        return (f"implausible scale {scale:.2f} "
                f"(expected {cfg.scale_range[0]}–{cfg.scale_range[1]})")
    if abs(rotation) > cfg.max_rotation_deg:
        return f"implausible rotation {rotation:.1f}° (|rot| ≤ {cfg.max_rotation_deg}°)"
    return ""


def _spread_reason(p: np.ndarray, image_side_px: float, cfg: GeometryConfig) -> str:
    """Non-empty when the points (M, 2) are bunched or nearly collinear."""
    p = p.astype(np.float64)
    eig = np.linalg.eigvalsh(np.cov((p - p.mean(axis=0)).T))
    minor = float(np.sqrt(max(eig[0], 0.0)))
    if minor < cfg.min_spread * image_side_px:
        return (f"degenerate geometry: inliers spread {minor:.1f} px "
                f"< {cfg.min_spread * image_side_px:.1f} px (collinear/bunched)")
    return ""


def fit_homography(pts0: np.ndarray, pts1: np.ndarray, image_side_px: float,
                   config: GeometryConfig | None = None) -> HomographyFit:
    """Fit pts0 (M, 2) → pts1 (M, 2) with USAC MAGSAC++ and check it.

    image_side_px scales the spread check (the side of the region the points come from).
    """
    cfg = config or GeometryConfig()
    n = len(pts0)
    none = np.zeros(n, bool)
    if n < max(cfg.min_inliers, 4):
        return HomographyFit(None, none, f"too few matches ({n} < {cfg.min_inliers})")
    H, mask = cv2.findHomography(pts0.astype(np.float64), pts1.astype(np.float64),
                                 cv2.USAC_MAGSAC, cfg.threshold_px, maxIters=cfg.max_iters,
                                 confidence=cfg.confidence)
    if H is None or mask is None:
        return HomographyFit(None, none, "no homography found")
    inliers = mask.ravel().astype(bool)
    reason = _inlier_scale_rotation_reason(H, inliers, cfg)
    if reason:
        return HomographyFit(H, inliers, reason)
    persp = similarity_parts(H)[2]
    if persp * image_side_px > cfg.max_perspective_change:
        return HomographyFit(H, inliers, f"implausible tilt (perspective change "
                             f"{persp * image_side_px:.2f} > {cfg.max_perspective_change})")
    return HomographyFit(H, inliers, _spread_reason(pts0[inliers], image_side_px, cfg))
