"""Object localisation inside the onboard program: the config section and the one object
`terrafix fly` holds (history fed by the navigation loop and the FC link, local API, MAVLink
tracking), so the program's own edits stay a few lines.

Both interfaces are off unless switched on: `local_api` (HTTP on a Unix socket or loopback,
api.py) and `mavlink_tracking` (CAMERA_TRACKING_GEO_STATUS on the FC link's channel, which
ArduPilot/PX4 route to the ground station; mavlink_tracking.py). The history is kept whenever
either is on.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field

from terrafix.autopilot.channel import MavlinkChannel
from terrafix.geo import LocalFrame
from terrafix.measurements import AttitudeSample, NavSolution
from terrafix.targeting.api import LocalApiConfig, LocalApiServer
from terrafix.targeting.locate import TargetingConfig, TargetLocator
from terrafix.targeting.mavlink_tracking import TrackingGeoReporter

log = logging.getLogger(__name__)


class TargetingSection(BaseModel):
    """[targeting] of the onboard config."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    local_api: bool = False
    mavlink_tracking: bool = False
    api: LocalApiConfig = LocalApiConfig()
    model: TargetingConfig = TargetingConfig()
    tracking_latency_s: float = Field(0.05, ge=0.0, le=2.0)
    """Camera exposure -> CAMERA_TRACKING_IMAGE_STATUS arrival (the message has no time)."""
    tracking_min_interval_s: float = Field(0.1, ge=0.0, le=10.0)

    @property
    def enabled(self) -> bool:
        return self.local_api or self.mavlink_tracking


class OnboardTargeting:
    """History + the enabled interfaces for one flight."""

    def __init__(self, section: TargetingSection, frame: LocalFrame, ground_alt_m: float) -> None:
        self.section = section
        self.locator = TargetLocator(section.model, frame, ground_alt_m)
        self.api: LocalApiServer | None = None
        self.tracking: TrackingGeoReporter | None = None

    def start(self, channel: MavlinkChannel) -> None:
        s = self.section
        if s.local_api:
            self.api = LocalApiServer(self.locator, s.api)
            self.api.start()
        if s.mavlink_tracking:
            self.tracking = TrackingGeoReporter(self.locator, channel,
                                                latency_s=s.tracking_latency_s,
                                                min_interval_s=s.tracking_min_interval_s)
            self.tracking.start()

    def add_solution(self, sol: NavSolution) -> None:
        self.locator.history.add_solution(sol)

    def add_attitude(self, att: AttitudeSample) -> None:
        self.locator.history.add_attitude(att)

    def close(self) -> None:
        if self.api is not None:
            self.api.close()
            self.api = None
