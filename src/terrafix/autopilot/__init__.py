"""Autopilot and ground-station links: how terrafix talks to the flight controller and operator.

- `ArduPilotLink` (ardupilot.py): signed MAVLink 2 to ArduPilot; FC telemetry in as typed samples
  on the companion clock, GPS_INPUT out at a fixed rate, EKF source-set commands.
- `InavLink` (inav.py): MSP2_SENSOR_GPS to iNav, status on an unsigned MAVLink side channel.
- `Px4Link` (px4.py): the ArduPilot link's inbound side and signing, GLOBAL_POSITION_SENSOR out
  for PX4's EKF2 auxiliary global position.
  All three are `PositionOutput`s.
- `GroundStation` (ground_station.py): status at 1-2 Hz, rate-limited STATUSTEXT, spoof alerts
  that always get through, RELOC hints in with acknowledgement.
- `FcEmulator` (fc_emulation.py): the FC end with ArduPilot's signing and GPS_INPUT rules, for
  tests and the simulated flight controller.
Protocol numbers and names: constants.py. Mapping of a solution to a GPS report: gps_report.py.
"""

from terrafix.autopilot.ardupilot import (
    ArduPilotLink,
    ArduPilotLinkConfig,
    ArduPilotLinkStats,
    FcCallbacks,
    SigningReport,
    encode_gps_input,
)
from terrafix.autopilot.channel import ChannelStats, HeartbeatSpec, MavlinkChannel
from terrafix.autopilot.errors import (
    AutopilotError,
    LinkClosedError,
    LinkConfigError,
    MspError,
    RelocHintError,
    SigningHandshakeError,
)
from terrafix.autopilot.fc_emulation import FcEmulator, GpsInputAcceptance, GpsInputRecord
from terrafix.autopilot.gps_report import GpsReport, gps_report_from_solution
from terrafix.autopilot.gps_sender import OutputStats
from terrafix.autopilot.ground_station import GroundStation, GroundStationConfig
from terrafix.autopilot.inav import InavLink, InavLinkConfig
from terrafix.autopilot.inbound import (
    FcHeartbeat,
    FcPosition,
    FcStatusText,
    GnssInterference,
    LandedState,
)
from terrafix.autopilot.position_output import PositionOutput
from terrafix.autopilot.px4 import Px4Link, Px4OutputConfig, encode_global_position_sensor
from terrafix.autopilot.reloc_hint import RelocHint

__all__ = [
    "ArduPilotLink",
    "ArduPilotLinkConfig",
    "ArduPilotLinkStats",
    "AutopilotError",
    "ChannelStats",
    "FcCallbacks",
    "FcEmulator",
    "FcHeartbeat",
    "FcPosition",
    "FcStatusText",
    "GnssInterference",
    "GpsInputAcceptance",
    "GpsInputRecord",
    "GpsReport",
    "GroundStation",
    "GroundStationConfig",
    "HeartbeatSpec",
    "InavLink",
    "InavLinkConfig",
    "LandedState",
    "LinkClosedError",
    "LinkConfigError",
    "MavlinkChannel",
    "MspError",
    "OutputStats",
    "PositionOutput",
    "Px4Link",
    "Px4OutputConfig",
    "RelocHint",
    "RelocHintError",
    "SigningHandshakeError",
    "SigningReport",
    "encode_global_position_sensor",
    "encode_gps_input",
    "gps_report_from_solution",
]
