from __future__ import annotations

import re

import pytest

from terrafix.inference.cache import ModelCache, ModelKey, host_tag
from terrafix.inference.errors import InferenceError


def test_model_key_file_name_round_trips() -> None:
    key = ModelKey("xfeat-backbone", 640, 480, "fp16", "aarch64-nvidia-jetson-orin-nx")
    assert key.file_name == "xfeat-backbone__640x480__fp16__aarch64-nvidia-jetson-orin-nx.onnx"
    assert ModelKey.parse(key.file_name) == key


@pytest.mark.parametrize("name", [
    "xfeat-backbone__640x480__fp32.onnx",              # no host
    "xfeat-backbone__640x480__fp64__x86_64-cpu.onnx",  # unknown precision
    "xfeat-backbone__0x480__fp32__x86_64-cpu.onnx",    # zero width
    "XFeat__640x480__fp32__x86_64-cpu.onnx",           # upper case model
    "xfeat-backbone__640x480__fp32__x86_64-cpu.engine",
])
def test_malformed_names_are_errors_naming_the_file(name: str) -> None:
    with pytest.raises(InferenceError, match=re.escape(name)):
        ModelKey.parse(name)


def test_cache_listing_is_strict(tmp_path) -> None:
    cache = ModelCache(tmp_path)
    good = ModelKey("xfeat-backbone", 384, 384, "fp32", "x86_64-cpu")
    cache.path(good).write_bytes(b"x")
    assert cache.entries() == [good]
    (tmp_path / "stray.onnx").write_bytes(b"x")
    with pytest.raises(InferenceError, match=re.escape("stray.onnx")):
        cache.entries()


def test_missing_model_error_says_how_to_build(tmp_path) -> None:
    with pytest.raises(InferenceError, match="terrafix models build"):
        ModelCache(tmp_path).require(ModelKey("xfeat-backbone", 384, 384))


def test_engine_dir_encodes_the_key(tmp_path) -> None:
    key = ModelKey("xfeat-backbone", 384, 384, "fp16", "x86_64-nvidia-h100")
    assert ModelCache(tmp_path).engine_dir(key).name == key.stem


def test_host_tag_is_a_valid_host_and_names_the_accelerator() -> None:
    tag = host_tag()
    ModelKey("m", 32, 32, "fp32", tag)  # valid in a key
    assert tag.split("-")[0] in {"x86_64", "aarch64", "arm64", "amd64"} or tag
    assert tag.endswith("-cpu") or "nvidia" in tag or "jetson" in tag
