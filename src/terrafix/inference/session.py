"""ONNX Runtime sessions: provider selection (TensorRT → CUDA → CPU), engine cache, warm-up,
and an explicit refusal to fall back to the CPU when the configuration forbids it.

Why warm-up at load: the first run of a session allocates arenas and (with TensorRT) builds or
deserialises engines, which takes from 100 ms to minutes. Doing it when the model is opened
keeps that cost out of the first frame in flight (REQUIREMENTS A5: take-off load ≤ 5 s with a
cached engine). Why a CPU-fallback flag: ONNX Runtime silently drops a provider that fails to
initialise; on the aircraft a model that quietly runs 20× slower on the CPU is worse than a
loud error before take-off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field

from terrafix.inference.cache import ModelCache, ModelKey
from terrafix.inference.errors import InferenceError

log = logging.getLogger(__name__)

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ACCELERATED = frozenset(PROVIDER_ORDER[:2])


class InferenceConfig(BaseModel):
    """How models are run (TOML section ``[inference]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: tuple[str, ...] = Field(
        default=PROVIDER_ORDER,
        description="Providers in order of preference; those this build lacks are skipped.",
    )
    forbid_cpu_fallback: bool = Field(
        default=False, description="Refuse to run a model when no accelerator provider is active."
    )
    trt_fp16: bool = Field(default=True, description="Let TensorRT build FP16 engines.")
    intra_op_threads: int = Field(default=2, ge=0, description=(
        "Threads per session (0 = ONNX Runtime's default, one per physical core). 2: the "
        "flight computer's CPU budget for vision; more only contend with the estimator."))
    allow_spinning: bool = Field(default=False, description=(
        "Let idle worker threads busy-wait for the next operator. Off: on a shared or "
        "thermally limited CPU spinning costs ~40% more CPU time per XFeat run and made it "
        "slower, not faster, whenever another process wanted the cores."))
    warmup_runs: int = Field(default=1, ge=0, le=20)


def select_providers(config: InferenceConfig,
                     available: Sequence[str] | None = None) -> list[str]:
    """The configured providers this onnxruntime build offers, in the configured order.

    Raises InferenceError when none is available, or when CPU fallback is forbidden and no
    accelerator is among them.
    """
    offered = list(ort.get_available_providers() if available is None else available)
    chosen = [p for p in config.providers if p in offered]
    if not chosen:
        raise InferenceError(
            f"none of the configured providers {list(config.providers)} is available; "
            f"this onnxruntime offers {offered}"
        )
    if config.forbid_cpu_fallback and not ACCELERATED.intersection(chosen):
        raise InferenceError(
            f"CPU fallback forbidden but no accelerator provider is available: "
            f"configured {list(config.providers)}, offered {offered}"
        )
    return chosen


def _provider_options(provider: str, key: ModelKey, cache: ModelCache,
                      config: InferenceConfig) -> dict[str, str]:
    if provider == "TensorrtExecutionProvider":
        engine_dir = cache.engine_dir(key)
        engine_dir.mkdir(parents=True, exist_ok=True)
        return {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(engine_dir),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(engine_dir),
            "trt_fp16_enable": "True" if (config.trt_fp16 or key.precision == "fp16") else "False",
        }
    return {}


@dataclass(slots=True)
class OnnxModel:
    """A loaded, warmed-up model with one fixed-size image input.

    `input_shape` is the model's (N, C, H, W); `providers` those the session actually uses, in
    order (the first one runs the nodes it supports).
    """

    key: ModelKey
    path: Path
    session: ort.InferenceSession = field(repr=False)
    input_name: str
    input_shape: tuple[int, ...]
    output_names: tuple[str, ...]
    providers: tuple[str, ...]
    load_s: float

    @staticmethod
    def load(key: ModelKey, cache: ModelCache, config: InferenceConfig | None = None,
             available: Sequence[str] | None = None) -> OnnxModel:
        """Open `key` from `cache` with the best available providers and warm it up."""
        config = config or InferenceConfig()
        path = cache.require(key)
        wanted = select_providers(config, available)
        t0 = time.perf_counter()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if config.intra_op_threads:
            opts.intra_op_num_threads = config.intra_op_threads
        opts.add_session_config_entry("session.intra_op.allow_spinning",
                                      "1" if config.allow_spinning else "0")
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path), sess_options=opts, providers=wanted,
                provider_options=[_provider_options(p, key, cache, config) for p in wanted],
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InferenceError(f"cannot open {path} with providers {wanted}: {exc}") from exc
        active = tuple(session.get_providers())
        if config.forbid_cpu_fallback and not ACCELERATED.intersection(active):
            raise InferenceError(
                f"CPU fallback forbidden: {path.name} wanted {wanted} but runs on {list(active)}"
            )
        if active and active[0] != wanted[0]:
            log.warning("model %s: provider %s unavailable, running on %s", key.file_name,
                        wanted[0], active[0])
        inp = session.get_inputs()
        if len(inp) != 1:
            raise InferenceError(f"{path.name}: expected one input, found {len(inp)}")
        shape = tuple(inp[0].shape)
        expected = (1, 1, key.height, key.width)
        if shape != expected:
            raise InferenceError(f"{path.name}: input shape {shape}, expected {expected} "
                                 "from its file name")
        model = OnnxModel(key, path, session, inp[0].name, shape,
                          tuple(o.name for o in session.get_outputs()), active, 0.0)
        warm = np.zeros(shape, dtype=np.float32)
        for _ in range(config.warmup_runs):
            model.run(warm)
        model.load_s = time.perf_counter() - t0
        log.debug("model %s loaded on %s in %.2f s", key.file_name, list(active), model.load_s)
        return model

    def run(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Run on one (1, 1, H, W) float32 input; returns every output by name."""
        if image.shape != self.input_shape or image.dtype != np.float32:
            raise InferenceError(f"{self.key.file_name}: input {image.shape} {image.dtype}, "
                                 f"expected {self.input_shape} float32")
        outs = self.session.run(list(self.output_names), {self.input_name: image})
        return dict(zip(self.output_names, outs, strict=True))
