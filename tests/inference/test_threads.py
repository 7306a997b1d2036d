"""BLAS thread control through the loaded OpenBLAS libraries."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from terrafix.inference import blas_threads, set_blas_threads


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_set_blas_threads_reaches_numpys_openblas() -> None:
    before = blas_threads()
    assert before, "numpy's OpenBLAS should be found among the loaded libraries"
    try:
        done = set_blas_threads(1)
        assert set(done) == set(before) and set(done.values()) == {1}
        assert set(blas_threads().values()) == {1}
        a = np.ones((200, 64), np.float32)
        assert float((a @ a.T)[0, 0]) == 64.0  # still computes
    finally:
        for n in set(before.values()):
            set_blas_threads(n)


def test_set_blas_threads_refuses_zero() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        set_blas_threads(0)
