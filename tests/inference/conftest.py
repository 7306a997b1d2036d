"""Shared fixtures: the built XFeat models (built once per machine, under a file lock so that
pytest-xdist workers do not export concurrently)."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock

from terrafix.inference.cache import ModelCache

REPO = Path(__file__).resolve().parents[2]
MODEL_CACHE = REPO / "build" / "models"
TEST_SIZES = ((384, 384), (512, 512), (640, 640), (1024, 1024))


@pytest.fixture(scope="session")
def model_cache() -> ModelCache:
    """The repository's model cache with the XFeat sizes the tests use (built if missing)."""
    from terrafix.inference.export import export_xfeat

    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    cache = ModelCache(MODEL_CACHE)
    with FileLock(str(MODEL_CACHE / ".build.lock")):
        for w, h in TEST_SIZES:
            export_xfeat(cache, w, h)
    return cache
