"""The companion's link to a PX4 flight controller (REQUIREMENTS A3b).

PX4 (v1.17 / main since 2026-01) does not decode GPS_INPUT. Its EKF2 takes an external global
position as an "auxiliary global position" (AGP) from MAVLink GLOBAL_POSITION_SENSOR (id 296,
common.xml; pymavlink's dialects carry it). Everything else is the ArduPilot link's: the same
transport, inbound telemetry (HEARTBEAT, HIGHRES_IMU / RAW_IMU, ATTITUDE, GPS_RAW_INT, ...),
the same signing handshake (PX4 signs with MAV_SIGN_CFG >= 1 and accepts SETUP_SIGNING while
disarmed) and the same fixed-rate sender fed by the same GpsReport mapping of the NavSolution
(gps_report.py), so both autopilots are told the same position and accuracy.

Field mapping (GpsReport -> GLOBAL_POSITION_SENSOR):
- id: the configured AGP sensor id (must equal EKF2_AGP<i>_ID on the FC); source: VISION
  (map matching) or ESTIMATOR; target_system/target_component 0 (broadcast, the default);
- time_usec: UTC microseconds of the report; processing_time 0: the report is already
  extrapolated to its send time (gps_report.py), so there is no latency left to compensate;
- lat/lon degE7; alt: altitude AMSL (alt_ellipsoid NaN: the navigation altitude is
  barometric/AMSL, not ellipsoidal);
- eph: 1-sigma along the worst horizontal axis (PX4 uses it as the observation sigma, floored
  by EKF2_AGP<i>_NOISE); epv: vertical 1-sigma (NaN when the altitude is not provided);
- no fix (failsafe, no_fix label, stale, unusable covariance): flags UNHEALTHY, lat/lon
  INT32_MAX (the message's invalid value), altitudes and accuracies NaN. The stream keeps its
  rate so the FC sees an unhealthy source rather than silence.
GNSS trust changes have no MAVLink command on PX4 (no EKF source sets): they are logged, and
the integrator configures EKF2_GPS_CTRL / EKF2_AGP<i>_MODE for the fallback (README).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from terrafix.autopilot import constants as C
from terrafix.autopilot.ardupilot import ArduPilotLink, ArduPilotLinkConfig, FcCallbacks
from terrafix.autopilot.gps_report import GpsReport
from terrafix.autopilot.transport import ByteTransport

log = logging.getLogger(__name__)
mavlink = C.DIALECT


class Px4OutputConfig(BaseModel):
    """What the PX4 link sends beyond the shared link settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    sensor_id: int = Field(C.PX4_AGP_SENSOR_ID_DEFAULT, ge=1, le=255,
                           description="GLOBAL_POSITION_SENSOR.id; set EKF2_AGP0_ID to it")
    source: Literal["vision", "estimator"] = "vision"


_SOURCE = {"vision": C.GLOBAL_POSITION_SRC_VISION, "estimator": C.GLOBAL_POSITION_SRC_ESTIMATOR}


def encode_global_position_sensor(report: GpsReport, sensor_id: int,
                                  source: int = C.GLOBAL_POSITION_SRC_VISION) -> C.MavMessage:
    """GLOBAL_POSITION_SENSOR for a report (see the module docstring for the mapping)."""
    nan = math.nan
    time_us = report.utc_unix_ns // 1000
    if not report.has_3d_fix:
        return mavlink.MAVLink_global_position_sensor_message(
            0, 0, sensor_id, time_us, 0, source, C.GLOBAL_POSITION_FLAG_UNHEALTHY,
            C.GLOBAL_POSITION_INVALID_LATLON, C.GLOBAL_POSITION_INVALID_LATLON, nan, nan, nan,
            nan)
    alt_known = not report.ignore_flags & C.GPS_INPUT_IGNORE_ALT
    return mavlink.MAVLink_global_position_sensor_message(
        0, 0, sensor_id, time_us, 0, source, 0, round(report.lat_deg * 1e7),
        round(report.lon_deg * 1e7), nan, report.alt_m if alt_known else nan, report.h_acc_m,
        report.v_acc_m if alt_known else nan)


class Px4Link(ArduPilotLink):
    """The signed MAVLink 2 link to PX4: the ArduPilot link's inbound side, signing and
    fixed-rate sender, with GLOBAL_POSITION_SENSOR as the output. Implements PositionOutput."""

    def __init__(
        self,
        config: ArduPilotLinkConfig,
        callbacks: FcCallbacks | None = None,
        *,
        px4: Px4OutputConfig | None = None,
        transport: ByteTransport | None = None,
        mono_clock: Callable[[], int] | None = None,
        utc_clock: Callable[[], int] | None = None,
    ) -> None:
        kwargs = {k: v for k, v in (("mono_clock", mono_clock), ("utc_clock", utc_clock))
                  if v is not None}
        super().__init__(config, callbacks, transport=transport, **kwargs)
        # ArduPilot places a GPS_INPUT by its arrival less an assumed lag, so its reports are
        # timed back by that lag; GLOBAL_POSITION_SENSOR carries its own time, which PX4
        # uses: report the sending instant (unless the config names a lag)
        self._sender.valid_lag_s = config.fc_gps_lag_s or 0.0
        self._px4 = px4 or Px4OutputConfig()
        self._source = _SOURCE[self._px4.source]

    def _send_gps_input(self, report: GpsReport) -> None:
        self._channel.send(encode_global_position_sensor(report, self._px4.sensor_id,
                                                         self._source))

    def check_switch_parameters(self) -> dict[str, float | None]:
        """The ArduPilot pre-flight check reads ArduPilot's GPS/EKF3 parameters, which PX4
        does not have: nothing to check here (PX4's EKF2_AGP_* set-up is the integrator's,
        see the README)."""
        log.info("PX4: no GNSS-switch parameters to check (EKF2_AGP_* are set by the "
                 "integrator)")
        return {}

    def set_gnss_trusted(self, trusted: bool, *, force: bool = False) -> None:
        """PX4 has no EKF source-set command: the change is logged only (the FC's own
        EKF2_GPS_CTRL and AGP settings decide what it fuses); `force` as ArduPilot's."""
        log.info("GNSS trust is now %s (PX4: no source-set command; AGP keeps flowing)",
                 trusted)
