"""The one interface both autopilot links offer the onboard program.

Why a Protocol here: there are two real implementations (ArduPilotLink over MAVLink GPS_INPUT,
InavLink over MSP2_SENSOR_GPS) and the onboard program must not care which autopilot it feeds:
it publishes its latest solution and the link keeps the autopilot's fixed-rate stream going.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from terrafix.autopilot.gps_sender import OutputStats
from terrafix.measurements import NavSolution


@runtime_checkable
class PositionOutput(Protocol):
    """Feeds an autopilot a GPS-like position at a fixed rate from the latest solution."""

    def publish(self, solution: NavSolution) -> None:
        """Store the latest solution (thread-safe, never blocks)."""
        ...

    def start_output(self) -> None:
        """Start the fixed-rate sender (after the link's own preconditions, e.g. signing)."""
        ...

    def output_stats(self) -> OutputStats: ...

    def close(self) -> None: ...
