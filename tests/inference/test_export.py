from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from terrafix.inference import InferenceError, ModelCache, ModelKey
from terrafix.inference.export import EXPORT_TOLERANCE, export_xfeat


def test_export_matches_torch_and_lands_in_the_cache(tmp_path) -> None:
    cache = ModelCache(tmp_path)
    key, diff = export_xfeat(cache, 96, 64)
    assert 0.0 < diff <= EXPORT_TOLERANCE
    assert cache.entries() == [key]
    assert ModelKey.parse(cache.path(key).name) == key
    sess = ort.InferenceSession(str(cache.path(key)), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["descriptors", "keypoint_scores",
                                                    "reliability"]
    # Idempotent: a second build does not rewrite the file.
    mtime = cache.path(key).stat().st_mtime_ns
    assert export_xfeat(cache, 96, 64) == (key, 0.0)
    assert cache.path(key).stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("*.tmp"))


def test_export_rejects_sizes_the_backbone_cannot_take(tmp_path) -> None:
    with pytest.raises(InferenceError, match="multiples of 32"):
        export_xfeat(ModelCache(tmp_path), 100, 64)


def test_keypoint_scores_are_the_depth_to_space_softmax(model_cache) -> None:
    """The graph's full-resolution heatmap sums (with the dropped dustbin) to ≤ 1 per 8×8
    cell and is non-negative: it is the cell softmax rearranged, not raw logits."""
    key = ModelKey("xfeat-backbone", 384, 384)
    sess = ort.InferenceSession(str(model_cache.path(key)), providers=["CPUExecutionProvider"])
    img = np.random.default_rng(1).random((1, 1, 384, 384), dtype=np.float32)
    _, heat, _ = sess.run(None, {"image": img})
    cells = heat[0, 0].reshape(48, 8, 48, 8).sum(axis=(1, 3))
    assert heat.min() >= 0.0
    assert np.all(cells <= 1.0 + 1e-5) and cells.mean() > 0.05
