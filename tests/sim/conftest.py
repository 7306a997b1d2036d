"""Shared fixtures of the simulator tests."""

from __future__ import annotations

import numpy as np
import pytest

from terrafix.geo.frames import LocalFrame
from terrafix.sim.trajectory import FlightPlan

LONGMONT = LocalFrame(40.1672, -105.1019, 1520.0)


@pytest.fixture
def frame() -> LocalFrame:
    return LONGMONT


def loop_plan(radius_m: float = 400.0, agl_m: float = 250.0) -> FlightPlan:
    """A square loop with altitude changes: turns, climbs and descents in 60 s."""
    wp = np.array([[radius_m, 0.0], [radius_m, radius_m], [-radius_m, radius_m],
                   [-radius_m, -radius_m], [radius_m, -radius_m]])
    return FlightPlan(wp, np.array([agl_m, agl_m + 60, agl_m - 40, agl_m, agl_m + 30]),
                      loop=True, start_alt_agl_m=agl_m)
