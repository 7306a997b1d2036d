"""Inference runtime: ONNX Runtime sessions, the model/engine cache, model export, thermal state.

Why a package of its own: the flight path runs learned models through ONNX Runtime only
(TensorRT → CUDA → CPU, whatever the machine offers), while torch is needed only at
provisioning time to export them. Keeping export (`export.py`, imports torch lazily) apart from
the session code (`session.py`, onnxruntime + numpy) keeps torch out of the airborne process.
"""

from terrafix.inference.cache import ModelCache, ModelKey, host_tag
from terrafix.inference.errors import InferenceError
from terrafix.inference.session import InferenceConfig, OnnxModel, select_providers
from terrafix.inference.thermal import DegradePolicy, ThermalMonitor, ThermalState
from terrafix.inference.threads import blas_threads, set_blas_threads

__all__ = [
    "DegradePolicy",
    "InferenceConfig",
    "InferenceError",
    "ModelCache",
    "ModelKey",
    "OnnxModel",
    "ThermalMonitor",
    "ThermalState",
    "blas_threads",
    "host_tag",
    "select_providers",
    "set_blas_threads",
]
