"""XFeat local features on ONNX Runtime, with keypoint selection and descriptor sampling in
numpy (no torch in flight).

The ONNX graph (built by `terrafix models build`, see `terrafix.inference.export`) returns the
dense maps; this module turns them into sparse features the way XFeat does:
1. keypoint heatmap (H, W) → 5×5 non-maximum suppression, threshold;
2. score = heatmap value × reliability (bilinear at the keypoint);
3. top-k by score;
4. descriptor = bilinear sample of the (64, H/8, W/8) descriptor map, re-normalised.
(XFeat samples descriptors bicubically; bilinear differs by a few 1e-2 in cosine similarity
and is cheaper.) Models have fixed input sizes; an image is padded into the smallest model
that holds it and keypoints in the padding are discarded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from terrafix.inference import InferenceConfig, ModelCache, ModelKey, OnnxModel
from terrafix.inference.export import XFEAT_MODEL_NAME
from terrafix.vision.errors import VisionError
from terrafix.vision.features import Features, check_image, keep_valid

# Input sizes built by default: square north-up canvases for frames warped to map scale
# (`terrafix.vision.ortho`), the map windows of provisioning, and the raw processing frame.
CANVAS_SIZES: tuple[tuple[int, int], ...] = ((384, 384), (512, 512), (640, 640))
MAP_WINDOW_SIZE: tuple[int, int] = (1024, 1024)
FRAME_SIZE: tuple[int, int] = (1280, 960)
DEFAULT_SIZES: tuple[tuple[int, int], ...] = (*CANVAS_SIZES, MAP_WINDOW_SIZE, FRAME_SIZE)


def _bilinear(grid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample grid (C, h, w) at fractional cell coordinates u (x), v (y), each (N,), with edge
    clamping. Returns (N, C)."""
    _, h, w = grid.shape
    u = np.clip(u, 0.0, w - 1.0)
    v = np.clip(v, 0.0, h - 1.0)
    u0 = np.minimum(np.floor(u).astype(np.int64), w - 2 if w > 1 else 0)
    v0 = np.minimum(np.floor(v).astype(np.int64), h - 2 if h > 1 else 0)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    fu, fv = (u - u0)[:, None], (v - v0)[:, None]
    g = np.ascontiguousarray(grid.transpose(1, 2, 0))  # rows of C contiguous: fast gathers
    return ((1 - fu) * (1 - fv) * g[v0, u0] + fu * (1 - fv) * g[v0, u1]
            + (1 - fu) * fv * g[v1, u0] + fu * fv * g[v1, u1])


class XFeatExtractor:
    """XFeat sparse features from fixed-size ONNX models (one per input size)."""

    name = "xfeat"
    descriptor_dim = 64

    def __init__(self, models: Iterable[OnnxModel], detection_threshold: float = 0.05,
                 nms_px: int = 5) -> None:
        self.models = sorted(models, key=lambda m: m.key.width * m.key.height)
        if not self.models:
            raise VisionError("XFeatExtractor needs at least one model")
        self.detection_threshold = detection_threshold
        self.nms_px = nms_px

    @staticmethod
    def open(cache_root: str | Path, sizes: Iterable[tuple[int, int]] = DEFAULT_SIZES,
             config: InferenceConfig | None = None) -> XFeatExtractor:
        """Load (and warm up) the XFeat models of the given sizes from a model cache."""
        cache = ModelCache(cache_root)
        return XFeatExtractor([OnnxModel.load(ModelKey(XFEAT_MODEL_NAME, w, h), cache, config)
                               for w, h in sizes])

    def model_for(self, width: int, height: int) -> OnnxModel:
        for m in self.models:
            if m.key.width >= width and m.key.height >= height:
                return m
        sizes = [f"{m.key.width}x{m.key.height}" for m in self.models]
        raise VisionError(f"no XFeat model holds a {width}x{height} image; built: {sizes}")

    def extract(self, image: np.ndarray, max_keypoints: int,
                valid: np.ndarray | None = None) -> Features:
        check_image(image)
        h, w = image.shape
        model = self.model_for(w, h)
        mw, mh = model.key.width, model.key.height
        if valid is None:
            valid = np.ones((h, w), bool)
        fill = float(image[valid].mean()) if valid.any() else 0.0
        canvas = np.full((mh, mw), fill, np.float32)
        canvas[:h, :w] = np.where(valid, image, fill)
        full_valid = np.zeros((mh, mw), bool)
        full_valid[:h, :w] = valid
        out = model.run((canvas / 255.0)[None, None])
        return self._sparse(out["keypoint_scores"][0, 0], out["reliability"][0],
                            out["descriptors"][0], full_valid, max_keypoints)

    def _sparse(self, heat: np.ndarray, reliability: np.ndarray, descriptors: np.ndarray,
                valid: np.ndarray, max_keypoints: int) -> Features:
        """heat (H, W), reliability (1, H/8, W/8), descriptors (64, H/8, W/8) → Features."""
        H, W = heat.shape
        local_max = cv2.dilate(heat, np.ones((self.nms_px, self.nms_px), np.uint8))
        ys, xs = np.nonzero((heat == local_max) & (heat > self.detection_threshold))
        kp = np.column_stack((xs, ys)).astype(np.float32)
        kp = kp[keep_valid(kp, valid, margin_px=8)]
        if len(kp) == 0:
            return Features.empty(self.descriptor_dim)
        _, h8, w8 = descriptors.shape
        # Same pixel → cell mapping as XFeat's grid_sample(align_corners=False) over [0, W-1].
        u = kp[:, 0] * (w8 / (W - 1.0)) - 0.5
        v = kp[:, 1] * (h8 / (H - 1.0)) - 0.5
        # Reliability at every candidate: one bilinear upsampling of the (h8, w8) map instead
        # of a per-candidate gather (thousands of candidates; differs by < 1/16 cell).
        rel_full = cv2.resize(reliability[0], (W, H), interpolation=cv2.INTER_LINEAR)
        xi, yi = kp[:, 0].astype(np.intp), kp[:, 1].astype(np.intp)
        scores = heat[yi, xi] * rel_full[yi, xi]
        k = min(max_keypoints, len(kp))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(kp) else np.arange(len(kp))
        top = top[np.argsort(-scores[top], kind="stable")]
        kp, scores = kp[top], scores[top]
        desc = _bilinear(descriptors, u[top], v[top])
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-6)
        return Features(kp, desc.astype(np.float32), scores.astype(np.float32))
