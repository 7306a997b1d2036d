"""Every protocol number and name the autopilot links use, in one place.

Why one module: MAVLink message ids, enum values, command ids, our NAMED_VALUE_FLOAT names and
the ArduPilot/iNav facts we rely on are contracts with software we do not control. Keeping them
together (rather than as literals next to the code that uses them) makes the contract reviewable
in one read and keeps the simulated flight controller, the links and the tests agreeing.

The MAVLink dialect is pymavlink's generated ``all`` dialect: it is ``ardupilotmega`` (which
includes ``common``) plus ``development``, where GNSS_INTEGRITY lives; message definitions shared
by both are byte-identical (same CRC_EXTRA and fields), so what we send is what an ArduPilot
``ardupilotmega`` peer decodes.
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeAlias

from pymavlink.dialects.v20 import all as mavlink

DIALECT = mavlink
"""The pymavlink dialect module used to encode and decode every MAVLink 2 message."""
MavMessage: TypeAlias = Any
"""A message object of DIALECT (its fields are generated per message type, hence Any)."""

# --- our identity on the flight controller's bus ----------------------------------------------
# A companion computer shares the vehicle's system id and uses the onboard-computer component id,
# which is how ArduPilot routes ground-station traffic addressed to it.
DEFAULT_SYSTEM_ID: Final = 1
COMPANION_COMPONENT_ID: Final = mavlink.MAV_COMP_ID_ONBOARD_COMPUTER  # 191
COMPANION_MAV_TYPE: Final = mavlink.MAV_TYPE_ONBOARD_CONTROLLER
AUTOPILOT_INVALID: Final = mavlink.MAV_AUTOPILOT_INVALID
MAV_TYPE_GCS: Final = mavlink.MAV_TYPE_GCS
MAV_STATE_ACTIVE: Final = mavlink.MAV_STATE_ACTIVE
MAV_COMP_ID_AUTOPILOT1: Final = mavlink.MAV_COMP_ID_AUTOPILOT1
MAV_MODE_FLAG_SAFETY_ARMED: Final = mavlink.MAV_MODE_FLAG_SAFETY_ARMED  # 128

# --- message ids ------------------------------------------------------------------------------
MSG_HEARTBEAT: Final = mavlink.MAVLINK_MSG_ID_HEARTBEAT  # 0
MSG_GPS_RAW_INT: Final = mavlink.MAVLINK_MSG_ID_GPS_RAW_INT  # 24
MSG_RAW_IMU: Final = mavlink.MAVLINK_MSG_ID_RAW_IMU  # 27
MSG_SCALED_PRESSURE: Final = mavlink.MAVLINK_MSG_ID_SCALED_PRESSURE  # 29
MSG_ATTITUDE: Final = mavlink.MAVLINK_MSG_ID_ATTITUDE  # 30
MSG_GLOBAL_POSITION_INT: Final = mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT  # 33
MSG_COMMAND_LONG: Final = mavlink.MAVLINK_MSG_ID_COMMAND_LONG  # 76
MSG_COMMAND_ACK: Final = mavlink.MAVLINK_MSG_ID_COMMAND_ACK  # 77
MSG_HIGHRES_IMU: Final = mavlink.MAVLINK_MSG_ID_HIGHRES_IMU  # 105
MSG_RADIO_STATUS: Final = mavlink.MAVLINK_MSG_ID_RADIO_STATUS  # 109
MSG_SCALED_IMU2: Final = mavlink.MAVLINK_MSG_ID_SCALED_IMU2  # 116
MSG_GPS2_RAW: Final = mavlink.MAVLINK_MSG_ID_GPS2_RAW  # 124
MSG_AUTOPILOT_VERSION: Final = mavlink.MAVLINK_MSG_ID_AUTOPILOT_VERSION  # 148
MSG_GPS_INPUT: Final = mavlink.MAVLINK_MSG_ID_GPS_INPUT  # 232
MSG_EXTENDED_SYS_STATE: Final = mavlink.MAVLINK_MSG_ID_EXTENDED_SYS_STATE  # 245
MSG_NAMED_VALUE_FLOAT: Final = mavlink.MAVLINK_MSG_ID_NAMED_VALUE_FLOAT  # 251
MSG_STATUSTEXT: Final = mavlink.MAVLINK_MSG_ID_STATUSTEXT  # 253
MSG_SETUP_SIGNING: Final = mavlink.MAVLINK_MSG_ID_SETUP_SIGNING  # 256
MSG_PARAM_REQUEST_READ: Final = mavlink.MAVLINK_MSG_ID_PARAM_REQUEST_READ  # 20
MSG_PARAM_VALUE: Final = mavlink.MAVLINK_MSG_ID_PARAM_VALUE  # 22
MSG_PARAM_SET: Final = mavlink.MAVLINK_MSG_ID_PARAM_SET  # 23
MSG_SYSTEM_TIME: Final = mavlink.MAVLINK_MSG_ID_SYSTEM_TIME  # 2
MSG_SIM_STATE: Final = mavlink.MAVLINK_MSG_ID_SIM_STATE  # 108 (ArduPilot SITL's true state)
MSG_EKF_STATUS_REPORT: Final = mavlink.MAVLINK_MSG_ID_EKF_STATUS_REPORT  # 193
MSG_GNSS_INTEGRITY: Final = mavlink.MAVLINK_MSG_ID_GNSS_INTEGRITY  # 441 (development dialect)

COMPANION_TELEMETRY_RATES_HZ: Final = {
    MSG_RAW_IMU: 50.0, MSG_ATTITUDE: 50.0, MSG_SCALED_PRESSURE: 10.0, MSG_GPS_RAW_INT: 5.0,
    MSG_GPS2_RAW: 5.0, MSG_GLOBAL_POSITION_INT: 5.0, MSG_EXTENDED_SYS_STATE: 1.0,
    MSG_SYSTEM_TIME: 1.0,
}
"""What the onboard program reads on its FC link, asked for at take-off: one IMU message
(RAW_IMU = IMU0, the one EKF3's primary lane uses) and the attitude at ArduPlane's 50 Hz main
loop, the barometer, both receivers' reports (the gate watches the real one; GPS2_RAW echoes
terrafix's own GPS_INPUT), the FC's position, landed state and time."""

DEFAULT_GNSS_REPORT_LAG_S: Final = 0.12
"""What ArduPilot's u-blox driver reports as its receiver lag for M8/F9/M10 (get_lag): a
GPS_RAW_INT stamped t describes the aircraft at t - 0.12 s."""

ARDUPILOT_MAV_GPS_LAG_S: Final = 0.2
"""The lag ArduPilot's MAVLink GPS driver (GPS_INPUT) assumes when GPSn_DELAY_MS is 0
(AP_GPS_Backend::get_lag): EKF3 places a GPS_INPUT that arrived at t at t - 0.2 s."""

# --- commands ---------------------------------------------------------------------------------
CMD_REQUEST_MESSAGE: Final = mavlink.MAV_CMD_REQUEST_MESSAGE  # 512
CMD_SET_EKF_SOURCE_SET: Final = mavlink.MAV_CMD_SET_EKF_SOURCE_SET  # 42007, param1 = set 1..3
CMD_SET_MESSAGE_INTERVAL: Final = mavlink.MAV_CMD_SET_MESSAGE_INTERVAL  # 511
CMD_RELOC_HINT: Final = mavlink.MAV_CMD_USER_1  # 31010
"""Operator re-localisation hint as COMMAND_LONG: param5 = latitude (deg), param6 = longitude
(deg), param1 = radius (m); params 2-4 and 7 are ignored. MAV_CMD_USER_1 is reserved by MAVLink for
user-defined commands, so no autopilot or ground station gives it another meaning."""

RESULT_ACCEPTED: Final = mavlink.MAV_RESULT_ACCEPTED  # 0
RESULT_TEMPORARILY_REJECTED: Final = mavlink.MAV_RESULT_TEMPORARILY_REJECTED  # 1
RESULT_DENIED: Final = mavlink.MAV_RESULT_DENIED  # 2
RESULT_UNSUPPORTED: Final = mavlink.MAV_RESULT_UNSUPPORTED  # 3
RESULT_FAILED: Final = mavlink.MAV_RESULT_FAILED  # 4

# --- landed state (EXTENDED_SYS_STATE.landed_state) -------------------------------------------
LANDED_STATE_UNDEFINED: Final = mavlink.MAV_LANDED_STATE_UNDEFINED  # 0
LANDED_STATE_ON_GROUND: Final = mavlink.MAV_LANDED_STATE_ON_GROUND  # 1
LANDED_STATE_IN_AIR: Final = mavlink.MAV_LANDED_STATE_IN_AIR  # 2
LANDED_STATE_TAKEOFF: Final = mavlink.MAV_LANDED_STATE_TAKEOFF  # 3
LANDED_STATE_LANDING: Final = mavlink.MAV_LANDED_STATE_LANDING  # 4
LANDED_STATE_MAX_AGE_S: Final = 3.0
"""An ON_GROUND report older than this no longer counts as on ground (fail closed: the uploader
must never start because of a stale report)."""

# --- STATUSTEXT severities (RFC 5424) ---------------------------------------------------------
SEVERITY_EMERGENCY: Final = mavlink.MAV_SEVERITY_EMERGENCY  # 0
SEVERITY_ALERT: Final = mavlink.MAV_SEVERITY_ALERT  # 1
SEVERITY_CRITICAL: Final = mavlink.MAV_SEVERITY_CRITICAL  # 2
SEVERITY_ERROR: Final = mavlink.MAV_SEVERITY_ERROR  # 3
SEVERITY_WARNING: Final = mavlink.MAV_SEVERITY_WARNING  # 4
SEVERITY_NOTICE: Final = mavlink.MAV_SEVERITY_NOTICE  # 5
SEVERITY_INFO: Final = mavlink.MAV_SEVERITY_INFO  # 6
SEVERITY_DEBUG: Final = mavlink.MAV_SEVERITY_DEBUG  # 7
STATUSTEXT_MAX_CHARS: Final = 50
STATUSTEXT_MIN_INTERVAL_S: Final = {
    SEVERITY_EMERGENCY: 0.5,
    SEVERITY_ALERT: 0.5,
    SEVERITY_CRITICAL: 1.0,
    SEVERITY_ERROR: 1.0,
    SEVERITY_WARNING: 2.0,
    SEVERITY_NOTICE: 2.0,
    SEVERITY_INFO: 5.0,
    SEVERITY_DEBUG: 10.0,
}
"""Minimum spacing of STATUSTEXT per severity: a telemetry radio carries a few kB/s shared with
the autopilot's own traffic, and an operator cannot read faster than this anyway."""

# --- parameters (PARAM_REQUEST_READ / PARAM_SET / PARAM_VALUE) ------------------------------
PARAM_ID_MAX_CHARS: Final = 16
PARAM_TYPE_INT8: Final = mavlink.MAV_PARAM_TYPE_INT8  # 2
PARAM_TYPE_INT16: Final = mavlink.MAV_PARAM_TYPE_INT16  # 4
PARAM_TYPE_INT32: Final = mavlink.MAV_PARAM_TYPE_INT32  # 6
PARAM_TYPE_REAL32: Final = mavlink.MAV_PARAM_TYPE_REAL32  # 9
PARAM_READ_TIMEOUT_S: Final = 0.5
PARAM_READ_RETRIES: Final = 4
"""ArduPilot answers PARAM_REQUEST_READ within a few tens of ms on a quiet link; four tries of
0.5 s ride out a lost packet on a radio without delaying take-off checks noticeably."""

# --- the GNSS switch topology (docs/ardupilot/terrafix.parm, README "ArduPilot in the loop") -
# The real receiver is GPS1 (instance 0); terrafix is GPS2 (instance 1, GPS2_TYPE 14, GPS_INPUT
# gps_id 1). The switch is ArduPilot's primary-GPS selection: GPS_PRIMARY 0 while GNSS is
# trusted, 1 when it is not. EKF3 resets its horizontal position to the newly selected receiver
# on the change of GPS (AP_NavEKF3_PosVelFusion: sensor_idx != last_gps_idx), so it keeps aiding.
GPS_TYPE_NONE: Final = 0
GPS_TYPE_MAV: Final = 14
"""GPSn_TYPE of a receiver fed by GPS_INPUT (AP_GPS_MAV)."""
GPS_AUTO_SWITCH_NONE: Final = 0
"""Always the receiver GPS_PRIMARY names."""
GPS_AUTO_SWITCH_USE_BEST: Final = 1
"""ArduPilot's default: the best fix / most satellites; GPS_PRIMARY is ignored."""
GPS_AUTO_SWITCH_BLEND: Final = 2
"""Blends the receivers: a spoofed one keeps pulling the position."""
GPS_AUTO_SWITCH_PRIMARY_IF_3D: Final = 4
"""GPS_PRIMARY while it has a 3D fix, else the best other one (what terrafix.parm ships)."""
GPS_AUTO_SWITCH_OK: Final = frozenset({GPS_AUTO_SWITCH_NONE, GPS_AUTO_SWITCH_PRIMARY_IF_3D})
PARAM_GPS_PRIMARY: Final = "GPS_PRIMARY"
PARAM_GPS_AUTO_SWITCH: Final = "GPS_AUTO_SWITCH"
PARAM_AHRS_EKF_TYPE: Final = "AHRS_EKF_TYPE"
PARAM_EK3_AFFINITY: Final = "EK3_AFFINITY"
EK3_AFFINITY_GPS_BIT: Final = 1
"""EK3_AFFINITY bit 0: each EKF lane uses its own GPS, not the primary (the switch would then
not reach every lane)."""
AHRS_EKF_TYPE_EKF3: Final = 3
EK3_SOURCE_POSXY_NONE: Final = 0
EK3_SOURCE_POSXY_GPS: Final = 3
EK3_SOURCE_POSXY_EXTNAV: Final = 6


def gps_type_param(instance: int) -> str:
    """GPSn_TYPE for a 0-based receiver instance (ArduPilot 4.6+ names: GPS1_TYPE, GPS2_TYPE)."""
    return f"GPS{instance + 1}_TYPE"


def gps_delay_param(instance: int) -> str:
    """GPSn_DELAY_MS for a 0-based receiver instance: the lag (ms) EKF3 subtracts from the
    receiver's reports; 0 = the driver's default (ArduPilot 4.6+ names)."""
    return f"GPS{instance + 1}_DELAY_MS"


def ek3_src_posxy_param(source_set: int) -> str:
    """EK3_SRCn_POSXY of a 1-based EKF3 source set."""
    return f"EK3_SRC{source_set}_POSXY"


# --- EKF_STATUS_REPORT flags ------------------------------------------------------------------
EKF_POS_HORIZ_ABS: Final = mavlink.EKF_POS_HORIZ_ABS  # 16
EKF_PRED_POS_HORIZ_ABS: Final = mavlink.EKF_PRED_POS_HORIZ_ABS  # 512
EKF_CONST_POS_MODE: Final = mavlink.EKF_CONST_POS_MODE  # 128

# --- GPS_INPUT --------------------------------------------------------------------------------
GPS_INPUT_IGNORE_ALT: Final = mavlink.GPS_INPUT_IGNORE_FLAG_ALT  # 1
GPS_INPUT_IGNORE_HDOP: Final = mavlink.GPS_INPUT_IGNORE_FLAG_HDOP  # 2
GPS_INPUT_IGNORE_VDOP: Final = mavlink.GPS_INPUT_IGNORE_FLAG_VDOP  # 4
GPS_INPUT_IGNORE_VEL_HORIZ: Final = mavlink.GPS_INPUT_IGNORE_FLAG_VEL_HORIZ  # 8
GPS_INPUT_IGNORE_VEL_VERT: Final = mavlink.GPS_INPUT_IGNORE_FLAG_VEL_VERT  # 16
GPS_INPUT_IGNORE_SPEED_ACCURACY: Final = mavlink.GPS_INPUT_IGNORE_FLAG_SPEED_ACCURACY  # 32
GPS_INPUT_IGNORE_HORIZONTAL_ACCURACY: Final = mavlink.GPS_INPUT_IGNORE_FLAG_HORIZONTAL_ACCURACY
GPS_INPUT_IGNORE_VERTICAL_ACCURACY: Final = mavlink.GPS_INPUT_IGNORE_FLAG_VERTICAL_ACCURACY

GPS_FIX_TYPE_NO_GPS: Final = mavlink.GPS_FIX_TYPE_NO_GPS  # 0
GPS_FIX_TYPE_NO_FIX: Final = mavlink.GPS_FIX_TYPE_NO_FIX  # 1
GPS_FIX_TYPE_2D: Final = mavlink.GPS_FIX_TYPE_2D_FIX  # 2
GPS_FIX_TYPE_3D: Final = mavlink.GPS_FIX_TYPE_3D_FIX  # 3

# ArduPilot facts (GPS1_TYPE=14, AP_GPS_MAV and AP_GPS health), see REQUIREMENTS A1.
ARDUPILOT_MIN_DECODED_FIX_TYPE: Final = 3
"""ArduPilot only takes position and time from GPS_INPUT with fix_type >= 3 and time_week > 0."""
ARDUPILOT_MAX_AVERAGE_GAP_S: Final = 0.215
ARDUPILOT_MAX_GAP_S: Final = 0.245
ARDUPILOT_MAX_CONSECUTIVE_LATE: Final = 2
"""Two consecutive gaps above ARDUPILOT_MAX_GAP_S mark the GPS unhealthy."""
ARDUPILOT_AVERAGE_WINDOW: Final = 10
"""Our emulation of ArduPilot's gap average: the mean of the last 10 gaps."""
ARDUPILOT_NO_FIX_TIMEOUT_S: Final = 4.0
GPS_INPUT_RATE_MIN_HZ: Final = 5.0
GPS_INPUT_RATE_MAX_HZ: Final = 10.0

# --- how a navigation solution becomes a GPS report (gps_report.py) ---------------------------
NOMINAL_UERE_M: Final = 5.0
"""User-equivalent range error used to turn our 1-sigma accuracies into DOPs (DOP = sigma / UERE).
DOPs are synthetic for a camera fix; 5 m makes a satellite-anchored fix of <= 7 m read as
HDOP <= 1.4 (ArduPilot's default GPS_HDOP_GOOD), while the EKF weighs the fix by horiz_accuracy."""
SATS_DOP_SCALE: Final = 3.0
"""Synthetic satellite count n = 4 + (SATS_DOP_SCALE / HDOP)^2, clamped to [SATS_MIN, SATS_MAX]:
more satellites always go with a lower HDOP, as with a real receiver."""
SATS_MIN: Final = 4
SATS_MAX: Final = 24
MAX_3D_FIX_ACCURACY_M: Final = 500.0
"""A horizontal 1-sigma beyond this is reported as no fix (REQUIREMENTS N8 failsafe bound)."""
NO_FIX_POSITION_ACCURACY_M: Final = 9999.0
NO_FIX_SPEED_ACCURACY_MPS: Final = 99.0
NO_FIX_DOP: Final = 99.99
UNKNOWN_ACCEL_BOUND_MPS2: Final = 2.0
"""Bound on unmodelled acceleration used to inflate the accuracy of a solution that has not been
refreshed (sent position = last position + velocity * age, accuracy grows by a * age^2 / 2)."""
DEFAULT_STALE_AFTER_S: Final = 3.0
"""A solution older than this is not extrapolated any further: an explicit no-fix is sent and the
FC falls back to its IMU (REQUIREMENTS N10, "no estimate for 3 s")."""
CHI2_2DOF_95: Final = 5.991464547107979
"""95% quantile of chi-square with 2 degrees of freedom: r95 = sqrt(CHI2_2DOF_95 * lambda_max)."""

# --- status to the ground station (NAMED_VALUE_FLOAT names are at most 10 characters) ---------
NVF_SOURCE: Final = "TF_SRC"
NVF_CONFIDENCE: Final = "TF_CONF"
NVF_ANCHOR_AGE: Final = "TF_ANCH_S"
NVF_RADIUS95: Final = "TF_R95_M"
NVF_GNSS_TRUSTED: Final = "TF_GNSS_OK"
NVF_GNSS_DISTANCE: Final = "TF_GNSS_DM"
"""Distance (m) between our estimate and the GNSS fix the FC reports, -1 when unknown: lets the
operator see a spoofed GNSS walking away from the camera estimate."""
NVF_NAMES: Final = (NVF_SOURCE, NVF_CONFIDENCE, NVF_ANCHOR_AGE, NVF_RADIUS95, NVF_GNSS_TRUSTED,
                    NVF_GNSS_DISTANCE)
NVF_MAX_NAME_CHARS: Final = 10
ANCHOR_AGE_NONE_S: Final = -1.0
"""Sent as TF_ANCH_S when no satellite anchor has been accepted yet (NAMED_VALUE_FLOAT has no
representation a ground station plots well for infinity)."""
SOURCE_LABEL_CODES: Final = {
    "no_fix": 0,
    "dead_reckoned": 1,
    "visual_propagated": 2,
    "satellite_anchored": 3,
}
"""TF_SRC values: higher is better, so a ground-station plot reads like a quality bar."""
CONFIDENCE_SCALE_M: Final = 50.0
"""TF_CONF = exp(-r95 / CONFIDENCE_SCALE_M), 0 for no fix: 1 for a tight fix, 0.37 at the 50 m
design bound of REQUIREMENTS N7, ~0 beyond 200 m. A display aid; r95 is the real number."""
STATUS_RATE_MIN_HZ: Final = 1.0
STATUS_RATE_MAX_HZ: Final = 2.0
LABEL_CHANGE_SEVERITY: Final = {
    "no_fix": SEVERITY_CRITICAL,
    "dead_reckoned": SEVERITY_WARNING,
    "visual_propagated": SEVERITY_NOTICE,
    "satellite_anchored": SEVERITY_INFO,
}
"""Severity of the STATUSTEXT announcing a change to this label."""
SPOOF_TEXT_PREFIX: Final = "GNSS SPOOF REJECTED"

# --- operator re-localisation hints (ground_station.py) ---------------------------------------
RELOC_PREFIX: Final = "RELOC:"
RELOC_RE: Final = re.compile(
    r"^RELOC:\s*(?P<lat>[-+]?\d+(?:\.\d+)?)\s*,\s*(?P<lon>[-+]?\d+(?:\.\d+)?)"
    r"\s*,\s*(?P<radius>[-+]?\d+(?:\.\d+)?)\s*$"
)
RELOC_RADIUS_MIN_M: Final = 10.0
RELOC_RADIUS_MAX_M: Final = 50_000.0
RELOC_ACK_TEXT_PREFIX: Final = "RELOC ACK"
RELOC_NACK_TEXT_PREFIX: Final = "RELOC NACK"
RELOC_ACK_DEADLINE_S: Final = 2.0

# --- GNSS interference flags: where spoofing / jamming come from ------------------------------
# 1. GNSS_INTEGRITY (id 441, MAVLink development dialect) carries the receiver's own
#    jamming_state / spoofing_state per receiver id (0 = GPS_RAW_INT, 1 = GPS2_RAW). States
#    MITIGATED (2) and DETECTED (3) both set the flag: for trust, "the receiver saw an attack" is
#    what matters, whether or not it believes it coped.
# 2. GPS_RAW_INT / GPS2_RAW have no such fields, so the flags attached to a GnssSample are the
#    latest GNSS_INTEGRITY state of that receiver, dropped after GNSS_FLAG_HOLD_S without news.
# 3. STATUSTEXT from the flight controller matching the patterns below (autopilots and receiver
#    drivers announce interference in text) sets the flag on every receiver for GNSS_FLAG_HOLD_S.
GNSS_JAMMING_STATE_MITIGATED: Final = mavlink.GPS_JAMMING_STATE_MITIGATED  # 2
GNSS_JAMMING_STATE_DETECTED: Final = mavlink.GPS_JAMMING_STATE_DETECTED  # 3
GNSS_SPOOFING_STATE_MITIGATED: Final = mavlink.GPS_SPOOFING_STATE_MITIGATED  # 2
GNSS_SPOOFING_STATE_DETECTED: Final = mavlink.GPS_SPOOFING_STATE_DETECTED  # 3
GNSS_FLAG_HOLD_S: Final = 5.0
STATUSTEXT_SPOOFING_RE: Final = re.compile(r"\bspoof", re.IGNORECASE)
STATUSTEXT_JAMMING_RE: Final = re.compile(r"\bjam(?:m|\b)", re.IGNORECASE)

# --- FC time alignment (clock_alignment.py) ---------------------------------------------------
CLOCK_OFFSET_WINDOW_S: Final = 20.0
"""Sliding window of the min-filter on (arrival - FC time). Long enough to contain a
low-latency sample, short enough that 50 ppm of crystal drift costs < 1 ms."""
UNIX_EPOCH_THRESHOLD_US: Final = 10**15
"""A MAVLink time_usec above this (year 2001 as UNIX microseconds, ~31 years as uptime) is UNIX
epoch time; below it is time since FC boot (MAVLink's own rule: infer from the magnitude)."""

# --- MAVLink 2 signing --------------------------------------------------------------------------
SIGNING_KEY_BYTES: Final = 32
SIGNING_EPOCH_UNIX_S: Final = 1_420_070_400
"""Signing timestamps count 10 microsecond units since 2015-01-01 00:00:00 UTC."""
SIGNING_NEW_STREAM_TOLERANCE: Final = 6_000_000
"""A new (link id, system, component) stream is accepted if its timestamp is at most one minute
behind ours (the MAVLink signing specification's rule)."""
SIGNING_HANDSHAKE_TIMEOUT_S: Final = 3.0
SIGNING_HANDSHAKE_RETRY_S: Final = 0.3
SIGNING_OUTBOUND_LINK_ID: Final = 0
SIGNING_ALWAYS_UNSIGNED_MSG_IDS: Final = frozenset({MSG_RADIO_STATUS})
"""Messages a signed ArduPilot channel still accepts unsigned (radios inject RADIO_STATUS)."""

# --- iNav MSP v2 --------------------------------------------------------------------------------
MSP_V2_PREAMBLE: Final = b"$X"
MSP_DIRECTION_TO_FC: Final = ord("<")
MSP_DIRECTION_FROM_FC: Final = ord(">")
MSP_DIRECTION_ERROR: Final = ord("!")
MSP2_SENSOR_GPS: Final = 0x1F03
MSP_GPS_RATE_HZ: Final = 5.0
MSP_GPS_WEEK_UNKNOWN: Final = 0xFFFF
MSP_YAW_UNKNOWN: Final = 0xFFFF
MSP_FIX_NONE: Final = 0
MSP_FIX_3D: Final = 3

# --- PX4: auxiliary global position (REQUIREMENTS A3b) ----------------------------------------
# PX4 does not decode GPS_INPUT; its EKF2 fuses GLOBAL_POSITION_SENSOR (id 296, common.xml) as
# an "auxiliary global position" (AGP) when EKF2_AGP<i>_ID equals the message's `id` and
# EKF2_AGP<i>_CTRL enables it (README "PX4 output link").
MSG_GLOBAL_POSITION_SENSOR: Final = mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_SENSOR  # 296
GLOBAL_POSITION_SRC_VISION: Final = mavlink.GLOBAL_POSITION_SRC_VISION  # 2 (map matching)
GLOBAL_POSITION_SRC_ESTIMATOR: Final = mavlink.GLOBAL_POSITION_SRC_ESTIMATOR  # 6
GLOBAL_POSITION_FLAG_UNHEALTHY: Final = mavlink.GLOBAL_POSITION_UNHEALTHY  # 1
GLOBAL_POSITION_FLAG_PRIMARY: Final = mavlink.GLOBAL_POSITION_PRIMARY  # 2
GLOBAL_POSITION_INVALID_LATLON: Final = 2**31 - 1
"""INT32_MAX: the message's 'invalid' value of lat/lon (sent with the no-fix report)."""
PX4_AGP_SENSOR_ID_DEFAULT: Final = 1
PX4_AGP_RATE_MIN_HZ: Final = 1.0
PX4_AGP_RATE_MAX_HZ: Final = 20.0
PX4_AGP_TIMEOUT_S: Final = 5.0
"""PX4 stops fusing an aux global position source after ~5 s without a sample."""

# --- object localisation over MAVLink (REQUIREMENTS N11) --------------------------------------
MSG_CAMERA_FOV_STATUS: Final = mavlink.MAVLINK_MSG_ID_CAMERA_FOV_STATUS  # 271
MSG_CAMERA_TRACKING_IMAGE_STATUS: Final = mavlink.MAVLINK_MSG_ID_CAMERA_TRACKING_IMAGE_STATUS
MSG_CAMERA_TRACKING_GEO_STATUS: Final = mavlink.MAVLINK_MSG_ID_CAMERA_TRACKING_GEO_STATUS  # 276
MSG_GIMBAL_DEVICE_ATTITUDE_STATUS: Final = mavlink.MAVLINK_MSG_ID_GIMBAL_DEVICE_ATTITUDE_STATUS
CAMERA_TRACKING_STATUS_IDLE: Final = mavlink.CAMERA_TRACKING_STATUS_FLAGS_IDLE  # 0
CAMERA_TRACKING_STATUS_ACTIVE: Final = mavlink.CAMERA_TRACKING_STATUS_FLAGS_ACTIVE  # 1
CAMERA_TRACKING_STATUS_ERROR: Final = mavlink.CAMERA_TRACKING_STATUS_FLAGS_ERROR  # 2
CAMERA_TRACKING_MODE_POINT: Final = mavlink.CAMERA_TRACKING_MODE_POINT  # 1
CAMERA_TRACKING_MODE_RECTANGLE: Final = mavlink.CAMERA_TRACKING_MODE_RECTANGLE  # 2
GIMBAL_FLAGS_YAW_LOCK: Final = mavlink.GIMBAL_DEVICE_FLAGS_YAW_LOCK  # 16
GIMBAL_FLAGS_YAW_IN_VEHICLE_FRAME: Final = mavlink.GIMBAL_DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME
GIMBAL_FLAGS_YAW_IN_EARTH_FRAME: Final = mavlink.GIMBAL_DEVICE_FLAGS_YAW_IN_EARTH_FRAME  # 64
