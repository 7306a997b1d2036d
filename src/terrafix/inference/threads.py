"""Thread count of the BLAS libraries already loaded into the process (numpy's and scipy's
OpenBLAS), without threadpoolctl.

Why: OpenBLAS threads every matrix product above a small size and its idle threads spin. On
the 2-core flight computer, shared with the estimator, the FC link and the recorder, a
threaded BLAS made the per-frame descriptor products of visual positioning several times
slower (a 2048×64 · 64×64 product: 0.5 ms single-threaded, 7 ms threaded under load) and
burnt ~80 ms of CPU per frame in spinning. The vision pipeline already runs its one large
kernel (the XFeat network) on ONNX Runtime's own threads.

OpenBLAS reads OPENBLAS_NUM_THREADS only when it is loaded, so a process that imported numpy
before the configuration was known sets the count through the library's C entry point, found
by scanning the shared objects mapped into the process (Linux; elsewhere nothing happens).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SETTERS = ("openblas_set_num_threads", "openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_")
_GETTERS = ("openblas_get_num_threads", "openblas_get_num_threads64_",
            "scipy_openblas_get_num_threads", "scipy_openblas_get_num_threads64_")


def _loaded_openblas() -> list[str]:
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return []
    paths = set()
    for line in maps.read_text().splitlines():
        path = line.split()[-1] if line.strip() else ""
        name = Path(path).name.lower()
        if path.startswith("/") and "openblas" in name and ".so" in name:
            paths.add(path)
    return sorted(paths)


def _symbol(lib: ctypes.CDLL, names: tuple[str, ...]) -> Any:
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def set_blas_threads(n: int) -> dict[str, int]:
    """Set the thread count of every loaded OpenBLAS to n (≥ 1); returns {library path:
    count now in effect}. Libraries loaded later are not affected."""
    if n < 1:
        raise ValueError(f"BLAS threads must be >= 1, got {n}")
    done = {}
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter, getter = _symbol(lib, _SETTERS), _symbol(lib, _GETTERS)
        if setter is None:
            continue
        setter(ctypes.c_int(n))
        done[path] = int(getter()) if getter is not None else n
    log.debug("BLAS threads: %s", done)
    return done


def blas_threads() -> dict[str, int]:
    """{library path: thread count} of the loaded OpenBLAS libraries."""
    out = {}
    for path in _loaded_openblas():
        try:
            getter = _symbol(ctypes.CDLL(path), _GETTERS)
        except OSError:
            continue
        if getter is not None:
            out[path] = int(getter())
    return out


__all__ = ["blas_threads", "set_blas_threads"]
