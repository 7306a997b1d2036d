"""Shared helpers for the recorder tests: small segments so rotation and caps happen fast."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from terrafix.recorder import FlightRecorder, RecorderConfig
from terrafix.recorder.writer import MiB

SCHEMA: dict[str, Any] = {
    "title": "test.Sample",
    "type": "object",
    "properties": {"i": {"type": "integer"}, "lat_deg": {}, "lon_deg": {}, "alt_m": {}},
}


def small_config(**overrides: Any) -> RecorderConfig:
    base: dict[str, Any] = {
        "segment_bytes": 64 * 1024,
        "batch_bytes": 16 * 1024,
        "max_flight_bytes": 16 * MiB,
        "reserve_bytes": 0,
    }
    base.update(overrides)
    return RecorderConfig(**base)


@pytest.fixture
def open_recorder(tmp_path: Path) -> Iterator[Callable[..., FlightRecorder]]:
    """Factory for recorders in tmp_path; every one is closed at teardown."""
    opened: list[FlightRecorder] = []

    def make(name: str = "flight", **kwargs: Any) -> FlightRecorder:
        kwargs.setdefault("flight_id", "T-001")
        kwargs.setdefault("config_hash", "cfg0")
        kwargs.setdefault("config", small_config())
        rec = FlightRecorder(tmp_path / name, **kwargs)
        opened.append(rec)
        return rec

    yield make
    for rec in opened:
        rec.close()
