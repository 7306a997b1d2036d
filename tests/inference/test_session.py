from __future__ import annotations

import numpy as np
import pytest

from terrafix.inference import InferenceConfig, InferenceError, ModelKey, OnnxModel
from terrafix.inference.session import select_providers


def test_provider_order_is_tensorrt_cuda_cpu_among_available() -> None:
    offered = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
               "AzureExecutionProvider"]
    assert select_providers(InferenceConfig(), offered) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers(InferenceConfig(), ["CPUExecutionProvider"]) == [
        "CPUExecutionProvider"]


def test_forbidden_cpu_fallback_is_an_error_without_accelerator() -> None:
    cfg = InferenceConfig(forbid_cpu_fallback=True)
    with pytest.raises(InferenceError, match="CPU fallback forbidden"):
        select_providers(cfg, ["CPUExecutionProvider"])
    assert select_providers(cfg, ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == \
        "CUDAExecutionProvider"


def test_no_configured_provider_available_is_an_error() -> None:
    with pytest.raises(InferenceError, match="none of the configured providers"):
        select_providers(InferenceConfig(providers=("TensorrtExecutionProvider",)),
                         ["CPUExecutionProvider"])


def test_real_session_loads_warms_up_and_runs(model_cache) -> None:
    key = ModelKey("xfeat-backbone", 384, 384)
    model = OnnxModel.load(key, model_cache, InferenceConfig(warmup_runs=2))
    assert model.providers[-1] == "CPUExecutionProvider"
    assert model.input_shape == (1, 1, 384, 384)
    assert model.load_s > 0
    out = model.run(np.random.default_rng(0).random((1, 1, 384, 384), dtype=np.float32))
    assert out["descriptors"].shape == (1, 64, 48, 48)
    assert out["keypoint_scores"].shape == (1, 1, 384, 384)
    assert out["reliability"].shape == (1, 1, 48, 48)
    norms = np.linalg.norm(out["descriptors"][0], axis=0)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)
    with pytest.raises(InferenceError, match="expected"):
        model.run(np.zeros((1, 1, 10, 10), np.float32))
    opts = model.session.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_real_session_refuses_cpu_when_forbidden(model_cache) -> None:
    import onnxruntime as ort

    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(
            ort.get_available_providers()):
        pytest.skip("this machine has an accelerator provider")
    with pytest.raises(InferenceError, match="CPU fallback forbidden"):
        OnnxModel.load(ModelKey("xfeat-backbone", 384, 384), model_cache,
                       InferenceConfig(forbid_cpu_fallback=True))
