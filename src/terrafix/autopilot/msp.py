"""MSP v2 framing and the MSP2_SENSOR_GPS payload (iNav's "MSP GPS" input).

Why: iNav accepts an external position only as a GPS sensor over MSP v2 (REQUIREMENTS A3).

Frame: "$X" + direction ('<' to the FC, '>' reply, '!' error) + flag u8 + function u16 LE +
payload size u16 LE + payload + CRC-8/DVB-S2 (poly 0xD5, init 0) over flag..payload.

MSP2_SENSOR_GPS (0x1F03) payload, 50 bytes little-endian, packed (iNav's
mspSensorGpsDataMessage_t, field by field):
  u8 instance | u16 gps_week (0xFFFF = unknown) | u32 ms_tow | u8 fix_type (0 none, 2 2D, 3 3D)
  | u8 satellites_in_view | u16 horizontal_pos_accuracy | u16 vertical_pos_accuracy
  | u16 horizontal_vel_accuracy | u16 hdop (x100) | i32 longitude (1e-7 deg)
  | i32 latitude (1e-7 deg) | i32 msl_altitude (cm) | i32 ned_vel_north, ned_vel_east,
  ned_vel_down (cm/s) | u16 true_yaw (cdeg, 0xFFFF = unknown) | u16 year | u8 month | u8 day
  | u8 hour | u8 min | u8 sec
Accuracy units: iNav's receiver divides the position accuracies by 10 to get its internal
centimetres, so they travel in millimetres (the struct's comment says cm; the code is what
counts, and REQUIREMENTS A3 says mm). iNav does not use horizontal_vel_accuracy; we send mm/s for
consistency. The u16 accuracy fields saturate at 65535 (65.5 m): a saturated value means "65.5 m
or worse", and a no-fix report carries fix_type 0 whatever its accuracies.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import astuple, dataclass

from terrafix.autopilot import constants as C
from terrafix.autopilot.errors import MspError
from terrafix.autopilot.gps_report import GpsReport

_HEADER = struct.Struct("<BHH")  # flag, function, size
_SENSOR_GPS = struct.Struct("<BHIBBHHHHiiiiiiHHBBBBB")
SENSOR_GPS_PAYLOAD_SIZE = _SENSOR_GPS.size  # 50
MAX_PAYLOAD = 4096


def crc8_dvb_s2(data: bytes | bytearray, crc: int = 0) -> int:
    """CRC-8/DVB-S2: polynomial 0xD5, initial value 0, no reflection, no final XOR."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0xD5) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def encode_frame(function: int, payload: bytes, *, direction: int = C.MSP_DIRECTION_TO_FC,
                 flag: int = 0) -> bytes:
    """One MSP v2 frame."""
    if not 0 <= function <= 0xFFFF:
        raise MspError(f"MSP function {function} outside 0..0xFFFF")
    if len(payload) > MAX_PAYLOAD:
        raise MspError(f"MSP payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if direction not in (C.MSP_DIRECTION_TO_FC, C.MSP_DIRECTION_FROM_FC, C.MSP_DIRECTION_ERROR):
        raise MspError(f"MSP direction {direction!r} is not one of '<', '>', '!'")
    body = _HEADER.pack(flag, function, len(payload)) + payload
    return C.MSP_V2_PREAMBLE + bytes([direction]) + body + bytes([crc8_dvb_s2(body)])


@dataclass(frozen=True, slots=True)
class MspFrame:
    direction: int
    flag: int
    function: int
    payload: bytes


class MspV2Parser:
    """Incremental MSP v2 parser: bytes in, complete frames out; bad CRCs and garbage counted."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.crc_errors = 0
        self.garbage_bytes = 0

    def feed(self, data: bytes) -> list[MspFrame]:
        self._buf += data
        frames: list[MspFrame] = []
        while True:
            start = self._buf.find(C.MSP_V2_PREAMBLE)
            if start < 0:
                keep = 1 if self._buf.endswith(b"$") else 0
                self.garbage_bytes += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
                return frames
            if start:
                self.garbage_bytes += start
                del self._buf[:start]
            if len(self._buf) < 8:
                return frames
            flag, function, size = _HEADER.unpack_from(self._buf, 3)
            if size > MAX_PAYLOAD or self._buf[2] not in (C.MSP_DIRECTION_TO_FC,
                                                          C.MSP_DIRECTION_FROM_FC,
                                                          C.MSP_DIRECTION_ERROR):
                self.garbage_bytes += 2
                del self._buf[:2]
                continue
            total = 8 + size + 1
            if len(self._buf) < total:
                return frames
            body = bytes(self._buf[3: 8 + size])
            if crc8_dvb_s2(body) != self._buf[8 + size]:
                self.crc_errors += 1
                del self._buf[:2]
                continue
            frames.append(MspFrame(self._buf[2], flag, function, body[5:]))
            del self._buf[:total]


@dataclass(frozen=True, slots=True)
class MspSensorGps:
    """MSP2_SENSOR_GPS in wire units (see the module docstring)."""

    instance: int
    gps_week: int
    ms_tow: int
    fix_type: int
    satellites_in_view: int
    horizontal_pos_accuracy_mm: int
    vertical_pos_accuracy_mm: int
    horizontal_vel_accuracy_mmps: int
    hdop_x100: int
    longitude_e7: int
    latitude_e7: int
    msl_altitude_cm: int
    ned_vel_north_cmps: int
    ned_vel_east_cmps: int
    ned_vel_down_cmps: int
    true_yaw_cdeg: int
    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int

    def pack(self) -> bytes:
        try:
            return _SENSOR_GPS.pack(*astuple(self))
        except struct.error as e:
            raise MspError(f"MSP2_SENSOR_GPS field out of range in {self}: {e}") from e

    @classmethod
    def unpack(cls, payload: bytes) -> MspSensorGps:
        if len(payload) != SENSOR_GPS_PAYLOAD_SIZE:
            raise MspError(f"MSP2_SENSOR_GPS payload has {len(payload)} bytes, expected "
                           f"{SENSOR_GPS_PAYLOAD_SIZE}")
        return cls(*_SENSOR_GPS.unpack(payload))


def _u16(x: float) -> int:
    return 0xFFFF if not math.isfinite(x) else int(min(max(round(x), 0), 0xFFFF))


def sensor_gps_from_report(report: GpsReport, instance: int = 0) -> MspSensorGps:
    """The MSP2_SENSOR_GPS content of a receiver-style report."""
    utc = time.gmtime(report.utc_unix_ns // 1_000_000_000)
    fix = C.MSP_FIX_3D if report.has_3d_fix else C.MSP_FIX_NONE
    vn, ve, vd = report.v_ned_mps
    return MspSensorGps(
        instance=instance,
        gps_week=report.gps_week if report.gps_week > 0 else C.MSP_GPS_WEEK_UNKNOWN,
        ms_tow=report.gps_week_ms,
        fix_type=fix,
        satellites_in_view=min(report.satellites, 255),
        horizontal_pos_accuracy_mm=_u16(report.h_acc_m * 1000),
        vertical_pos_accuracy_mm=_u16(report.v_acc_m * 1000),
        horizontal_vel_accuracy_mmps=_u16(report.speed_acc_mps * 1000),
        hdop_x100=_u16(report.hdop * 100),
        longitude_e7=round(report.lon_deg * 1e7),
        latitude_e7=round(report.lat_deg * 1e7),
        msl_altitude_cm=round(report.alt_m * 100),
        ned_vel_north_cmps=round(vn * 100),
        ned_vel_east_cmps=round(ve * 100),
        ned_vel_down_cmps=round(vd * 100),
        true_yaw_cdeg=C.MSP_YAW_UNKNOWN if report.yaw_deg is None
        else _u16(report.yaw_deg * 100) % 36000,
        year=utc.tm_year,
        month=utc.tm_mon,
        day=utc.tm_mday,
        hour=utc.tm_hour,
        minute=utc.tm_min,
        second=min(utc.tm_sec, 59),
    )


def encode_sensor_gps(report: GpsReport, instance: int = 0) -> bytes:
    """The complete MSP v2 frame carrying MSP2_SENSOR_GPS for a report."""
    return encode_frame(C.MSP2_SENSOR_GPS, sensor_gps_from_report(report, instance).pack())
