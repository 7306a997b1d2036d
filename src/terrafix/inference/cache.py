"""The model cache: ONNX files and TensorRT engine folders whose names say what they hold.

A file name encodes the model, its fixed input size, its numeric precision and the host it was
built for, e.g. ``xfeat-backbone__640x480__fp32__x86_64-cpu.onnx``. TensorRT engines are only
valid on the GPU and TensorRT version that built them, hence the host tag; ONNX files carry it
too so that a cache copied between machines never silently serves the wrong build. Names are
parsed back strictly: a file in the cache that does not follow the pattern is an error that
names it, not something skipped.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from terrafix.inference.errors import InferenceError

PRECISIONS = ("fp32", "fp16", "int8")
_MODEL_RE = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_HOST_RE = r"[a-z0-9]+(?:[-._][a-z0-9]+)*"
_NAME_RE = re.compile(
    rf"(?P<model>{_MODEL_RE})__(?P<width>[1-9][0-9]*)x(?P<height>[1-9][0-9]*)"
    rf"__(?P<precision>{'|'.join(PRECISIONS)})__(?P<host>{_HOST_RE})\.onnx"
)


def _slug(text: str) -> str:
    """Lower-case `text` and squeeze everything but letters and digits into single dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


@lru_cache(maxsize=1)
def host_tag() -> str:
    """Tag of this machine for cache names: CPU architecture plus accelerator, e.g.
    ``x86_64-cpu``, ``aarch64-nvidia-jetson-orin-nx`` or ``x86_64-nvidia-h100``."""
    arch = _slug(platform.machine()).replace("-", "_") or "unknown"
    accel = "cpu"
    jetson_model = Path("/proc/device-tree/model")
    if jetson_model.is_file():
        try:
            accel = _slug(jetson_model.read_text(errors="ignore").strip("\x00"))
        except OSError:
            accel = "cpu"
    else:
        try:
            import pynvml  # optional, present on GPU hosts only

            pynvml.nvmlInit()
            try:
                name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
                accel = _slug(name.decode() if isinstance(name, bytes) else name)
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # no NVML library or no GPU: a CPU host
            accel = "cpu"
    return f"{arch}-{accel}"


@dataclass(frozen=True, slots=True)
class ModelKey:
    """Identity of one built model: name, fixed input size (pixels), precision, host tag."""

    model: str
    width: int
    height: int
    precision: str = "fp32"
    host: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(_MODEL_RE, self.model):
            raise InferenceError(f"model name {self.model!r} must match {_MODEL_RE}")
        if self.width <= 0 or self.height <= 0:
            raise InferenceError(f"input size must be positive, got {self.width}x{self.height}")
        if self.precision not in PRECISIONS:
            raise InferenceError(f"precision {self.precision!r} must be one of {PRECISIONS}")
        if not self.host:
            object.__setattr__(self, "host", host_tag())
        if not re.fullmatch(_HOST_RE, self.host):
            raise InferenceError(f"host tag {self.host!r} must match {_HOST_RE}")

    @property
    def stem(self) -> str:
        return f"{self.model}__{self.width}x{self.height}__{self.precision}__{self.host}"

    @property
    def file_name(self) -> str:
        return f"{self.stem}.onnx"

    @staticmethod
    def parse(file_name: str) -> ModelKey:
        """Inverse of `file_name`; raises InferenceError naming a malformed name."""
        m = _NAME_RE.fullmatch(file_name)
        if m is None:
            raise InferenceError(
                f"model cache file {file_name!r} is not named "
                "<model>__<W>x<H>__<fp32|fp16|int8>__<host>.onnx"
            )
        return ModelKey(m["model"], int(m["width"]), int(m["height"]), m["precision"], m["host"])


class ModelCache:
    """A folder of built models (``<root>/<key>.onnx``) and TensorRT engine caches
    (``<root>/trt/<key>/``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: ModelKey) -> Path:
        return self.root / key.file_name

    def engine_dir(self, key: ModelKey) -> Path:
        """Folder given to the TensorRT provider as its engine/timing cache for this model."""
        return self.root / "trt" / key.stem

    def has(self, key: ModelKey) -> bool:
        return self.path(key).is_file()

    def require(self, key: ModelKey) -> Path:
        """Path of a built model, or an error saying how to build it."""
        p = self.path(key)
        if not p.is_file():
            raise InferenceError(
                f"model {key.file_name} not in cache {self.root}; run `terrafix models build`"
            )
        return p

    def entries(self) -> list[ModelKey]:
        """Every model in the cache, parsed strictly (a stray .onnx file is an error)."""
        if not self.root.is_dir():
            return []
        return sorted((ModelKey.parse(p.name) for p in self.root.glob("*.onnx")),
                      key=lambda k: k.file_name)
