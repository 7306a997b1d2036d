"""Local features: the common result type, the small interface both extractors implement,
and the classic SIFT extractor (OpenCV).

Two real implementations exist — SIFT (no model needed: the fallback) and XFeat (learned,
run through ONNX Runtime, `terrafix.vision.xfeat`) — hence the Protocol. Descriptors are
L2-normalised float32 so that one matcher (dot products) and one retrieval aggregation serve
both; SIFT uses the RootSIFT mapping (Hellinger kernel), which matches better under the
radiometric change between two satellite dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from terrafix.vision.errors import VisionError


@dataclass(frozen=True, slots=True)
class Features:
    """Keypoints of one image.

    keypoints: (N, 2) float32, pixels (x right, y down) in the image they were extracted from.
    descriptors: (N, D) float32, unit L2 norm (D = 64 for XFeat, 128 for SIFT).
    scores: (N,) float32, detector response, larger is better (sorted descending).
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.keypoints)
        if self.keypoints.shape != (n, 2) or self.descriptors.ndim != 2 \
                or len(self.descriptors) != n or self.scores.shape != (n,):
            raise VisionError(
                f"inconsistent features: keypoints {self.keypoints.shape}, descriptors "
                f"{self.descriptors.shape}, scores {self.scores.shape}; expected (N, 2), "
                "(N, D), (N,)")

    def __len__(self) -> int:
        return len(self.keypoints)

    def subset(self, index: np.ndarray) -> Features:
        return Features(self.keypoints[index], self.descriptors[index], self.scores[index])

    @staticmethod
    def empty(dim: int) -> Features:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, dim), np.float32),
                        np.zeros(0, np.float32))


class FeatureExtractor(Protocol):
    """Detects and describes keypoints in a grayscale image."""

    name: str
    descriptor_dim: int

    def extract(self, image: np.ndarray, max_keypoints: int,
                valid: np.ndarray | None = None) -> Features:
        """image: (H, W) uint8; valid: optional (H, W) bool mask of pixels carrying imagery
        (keypoints near invalid pixels are dropped). Returns at most max_keypoints features,
        strongest first."""
        ...


def check_image(image: np.ndarray) -> None:
    if image.ndim != 2 or image.dtype != np.uint8:
        raise VisionError(f"expected a (H, W) uint8 grayscale image, got {image.shape} "
                          f"{image.dtype}")


def keep_valid(keypoints: np.ndarray, valid: np.ndarray | None, margin_px: int) -> np.ndarray:
    """Mask (N,) of keypoints at least `margin_px` away from any invalid pixel."""
    if valid is None:
        return np.ones(len(keypoints), bool)
    inner = cv2.erode(valid.astype(np.uint8), np.ones((2 * margin_px + 1,) * 2, np.uint8))
    x = np.clip(np.round(keypoints[:, 0]).astype(int), 0, valid.shape[1] - 1)
    y = np.clip(np.round(keypoints[:, 1]).astype(int), 0, valid.shape[0] - 1)
    return inner[y, x] > 0


class SiftExtractor:
    """OpenCV SIFT with RootSIFT descriptors."""

    name = "sift"
    descriptor_dim = 128

    def __init__(self, contrast_threshold: float = 0.02) -> None:
        self.contrast_threshold = contrast_threshold

    def extract(self, image: np.ndarray, max_keypoints: int,
                valid: np.ndarray | None = None) -> Features:
        check_image(image)
        sift = cv2.SIFT_create(nfeatures=max_keypoints,
                               contrastThreshold=self.contrast_threshold)
        mask = None if valid is None else cv2.erode(valid.astype(np.uint8) * 255,
                                                    np.ones((9, 9), np.uint8))
        kps, desc = sift.detectAndCompute(image, mask)
        if desc is None or not kps:
            return Features.empty(self.descriptor_dim)
        pts = np.array([k.pt for k in kps], np.float32)
        resp = np.array([k.response for k in kps], np.float32)
        desc = desc.astype(np.float32)
        desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-6)  # RootSIFT: L1, then sqrt
        desc = np.sqrt(desc)
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-6)
        order = np.argsort(-resp, kind="stable")[:max_keypoints]
        return Features(pts[order], desc[order], resp[order])
