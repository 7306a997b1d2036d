"""Flight-controller telemetry -> typed samples on the companion clock.

Why a separate decoder: the link's reader thread only moves bytes; what the numbers mean (units,
frames, which IMU, where spoofing flags come from, how FC time maps to our clock) is decided
here, once, with no I/O, so it can be tested message by message.

Units on the wire (MAVLink common.xml) and what we make of them:
- RAW_IMU / SCALED_IMU2: accel mG, gyro mrad/s (ArduPilot sends RAW_IMU already scaled);
  HIGHRES_IMU: m/s^2 and rad/s. Body axes are FRD as the FC reports them. Only one IMU message
  type feeds the estimator (`imu_message`; "auto" locks onto the first type seen, instance 0),
  otherwise two physical IMUs would be interleaved as one.
- ATTITUDE: rad. GPS_RAW_INT / GPS2_RAW: degE7, mm, cm/s ground speed + course (cdeg); vertical
  velocity is not carried, so v_ned[2] is NaN. Accuracies from h_acc/v_acc (mm) when present,
  else DOP * NOMINAL_UERE_M, else inf.
- SCALED_PRESSURE: hPa -> altitude by the ISA barometric formula against a QNH (set it at
  take-off with `set_baro_reference`, so the altitude reads the known take-off altitude);
  HIGHRES_IMU.pressure_alt when flagged as updated. GLOBAL_POSITION_INT is the FC's own fused
  position: an FcPosition (for re-initialisation after a companion restart), not a baro sample,
  because its altitude depends on the GPS we feed it.
- Spoofing/jamming: see the mapping in constants.py (GNSS_INTEGRITY, then STATUSTEXT patterns).
- Times: *_boot_ms and boot-relative time_usec share one aligner; UNIX-epoch time_usec has its
  own (clock_alignment.py). A time of 0 means "not stamped": arrival time is used. A GNSS
  message stamped in UNIX time is stamped with its arrival instead: that time comes from the
  satellites, and a spoofer controls it, so it must never steer our clock. Either way the
  receiver's own latency (`gnss_lag_s`, ArduPilot's GPS_DELAY_MS: 0.12 s for a u-blox M8) is
  taken off: the report describes where the aircraft was that long before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from terrafix.autopilot import constants as C
from terrafix.autopilot.clock_alignment import FcClockAligner
from terrafix.measurements import AttitudeSample, BaroSample, GnssSample, ImuSample

G0 = 9.80665
ImuMessage = Literal["auto", "RAW_IMU", "SCALED_IMU2", "HIGHRES_IMU"]
_HIGHRES_PRESSURE_ALT_UPDATED = 0x800
_U16_INVALID = 0xFFFF
_U8_INVALID = 0xFF


class InboundValueError(ValueError):
    """A well-framed message whose values are impossible (counted, the sample dropped)."""


@dataclass(frozen=True, slots=True)
class FcHeartbeat:
    """HEARTBEAT from any component on the link."""

    t_ns: int
    system_id: int
    component_id: int
    mav_type: int
    autopilot: int
    base_mode: int
    custom_mode: int
    system_status: int

    @property
    def armed(self) -> bool:
        return bool(self.base_mode & C.MAV_MODE_FLAG_SAFETY_ARMED)

    @property
    def is_autopilot(self) -> bool:
        return self.autopilot != C.AUTOPILOT_INVALID and self.mav_type != C.MAV_TYPE_GCS


@dataclass(frozen=True, slots=True)
class FcStatusText:
    """STATUSTEXT from the flight controller (severity: MAV_SEVERITY, 0 = emergency)."""

    t_ns: int
    severity: int
    text: str


@dataclass(frozen=True, slots=True)
class LandedState:
    """EXTENDED_SYS_STATE.landed_state. Only ON_GROUND counts as on the ground (fail closed)."""

    t_ns: int
    landed_state: int

    @property
    def on_ground(self) -> bool:
        return self.landed_state == C.LANDED_STATE_ON_GROUND


@dataclass(frozen=True, slots=True)
class FcPosition:
    """The FC's own fused position (GLOBAL_POSITION_INT).

    alt_m: AMSL; rel_alt_m: above home; v_ned_mps: (3,) float64; heading_rad NaN when unknown.
    """

    t_ns: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    rel_alt_m: float
    v_ned_mps: np.ndarray
    heading_rad: float


@dataclass(frozen=True, slots=True)
class GnssInterference:
    """A report of jamming/spoofing (receiver_id -1 = all receivers, from a STATUSTEXT)."""

    t_ns: int
    receiver_id: int
    jamming: bool
    spoofing: bool
    source: Literal["GNSS_INTEGRITY", "STATUSTEXT"]


Sample = (ImuSample | AttitudeSample | BaroSample | GnssSample | FcHeartbeat | FcStatusText
          | LandedState | FcPosition | GnssInterference)


def pressure_altitude_m(press_hpa: float, qnh_hpa: float) -> float:
    """ISA barometric altitude (m) of a static pressure against a sea-level reference."""
    if not (press_hpa > 0 and qnh_hpa > 0):
        raise InboundValueError(f"pressure {press_hpa} hPa / QNH {qnh_hpa} hPa must be > 0")
    return 44330.769 * (1.0 - (press_hpa / qnh_hpa) ** 0.190263)


def qnh_for_altitude(press_hpa: float, alt_m: float) -> float:
    """The sea-level reference that makes `press_hpa` read `alt_m` (inverse of the above)."""
    return press_hpa / (1.0 - alt_m / 44330.769) ** (1.0 / 0.190263)


class _InterferenceState:
    """Latest jamming/spoofing per receiver, each report held for GNSS_FLAG_HOLD_S."""

    def __init__(self) -> None:
        self._by_receiver: dict[int, tuple[int, bool, bool]] = {}
        self._text: tuple[int, bool, bool] | None = None

    def update_receiver(self, t_ns: int, rid: int, jamming: bool, spoofing: bool) -> None:
        self._by_receiver[rid] = (t_ns, jamming, spoofing)

    def update_text(self, t_ns: int, jamming: bool, spoofing: bool) -> None:
        prev = self._text
        if prev is not None and t_ns - prev[0] <= C.GNSS_FLAG_HOLD_S * 1e9:
            jamming, spoofing = jamming or prev[1], spoofing or prev[2]
        self._text = (t_ns, jamming, spoofing)

    def flags(self, rid: int, t_ns: int) -> tuple[bool, bool]:
        jam = spoof = False
        hold = C.GNSS_FLAG_HOLD_S * 1e9
        for entry in (self._by_receiver.get(rid), self._text):
            if entry is not None and t_ns - entry[0] <= hold:
                jam, spoof = jam or entry[1], spoof or entry[2]
        return jam, spoof


class InboundDecoder:
    """Turns accepted pymavlink messages from the FC into samples (reader thread only)."""

    def __init__(self, *, imu_message: ImuMessage = "auto", qnh_hpa: float = 1013.25,
                 gnss_lag_s: float = 0.0) -> None:
        """gnss_lag_s: the receiver's latency from its measurement epoch to the report the FC
        stamps (ArduPilot stamps GPS_RAW_INT when its driver receives the fix); subtracted so
        that a GnssSample's t_ns is when the position was true."""
        if not (0.0 <= gnss_lag_s <= 1.0):
            raise InboundValueError(f"gnss_lag_s {gnss_lag_s}: expected 0 to 1 s")
        self._gnss_lag_ns = round(gnss_lag_s * 1e9)
        self._imu_message = imu_message
        self._boot = FcClockAligner()
        self._unix = FcClockAligner()
        self._interference = _InterferenceState()
        self.qnh_hpa = qnh_hpa
        self.last_pressure_hpa: float | None = None

    @property
    def imu_message(self) -> str:
        return self._imu_message

    @property
    def clock_offset_ns(self) -> int | None:
        """Current estimate of companion monotonic - FC boot clock."""
        return self._boot.offset_ns

    def set_baro_reference(self, alt_amsl_m: float) -> float:
        """Make the latest static pressure read `alt_amsl_m`; returns the QNH (hPa) now in use."""
        if self.last_pressure_hpa is None:
            raise InboundValueError("no SCALED_PRESSURE received yet: cannot set the reference")
        self.qnh_hpa = qnh_for_altitude(self.last_pressure_hpa, alt_amsl_m)
        return self.qnh_hpa

    # --- time -------------------------------------------------------------------------------
    def _t_boot_ms(self, ms: int, arrival_ns: int) -> int:
        if ms <= 0:
            return arrival_ns
        return self._boot.to_companion_ns(int(ms) * 1_000_000, arrival_ns)

    def _t_usec(self, us: int, arrival_ns: int) -> int:
        if us <= 0:
            return arrival_ns
        aligner = self._unix if us > C.UNIX_EPOCH_THRESHOLD_US else self._boot
        return aligner.to_companion_ns(int(us) * 1000, arrival_ns)

    # --- decoding ---------------------------------------------------------------------------
    def decode(self, msg: C.MavMessage, arrival_ns: int) -> list[Sample]:
        """Samples carried by one message (often one, sometimes none or two)."""
        mtype = msg.get_type()
        fn = getattr(self, "_" + mtype.lower(), None)
        if fn is None:
            return []
        return fn(msg, arrival_ns)

    def _imu_selected(self, mtype: str) -> bool:
        if self._imu_message == "auto":
            self._imu_message = mtype  # type: ignore[assignment]
        return self._imu_message == mtype

    @staticmethod
    def _finite(*values: float) -> None:
        if not all(math.isfinite(v) for v in values):
            raise InboundValueError(f"non-finite value in {values}")

    def _raw_imu(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        if getattr(m, "id", 0) != 0 or not self._imu_selected("RAW_IMU"):
            return []
        return [self._scaled_imu(m, self._t_usec(m.time_usec, arrival_ns))]

    def _scaled_imu2(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        if not self._imu_selected("SCALED_IMU2"):
            return []
        return [self._scaled_imu(m, self._t_boot_ms(m.time_boot_ms, arrival_ns))]

    @staticmethod
    def _scaled_imu(m, t_ns: int) -> ImuSample:
        accel = np.array([m.xacc, m.yacc, m.zacc], dtype=np.float64) * (G0 / 1000.0)
        gyro = np.array([m.xgyro, m.ygyro, m.zgyro], dtype=np.float64) / 1000.0
        return ImuSample(t_ns=t_ns, accel_body_mps2=accel, gyro_body_radps=gyro)

    def _highres_imu(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        if getattr(m, "id", 0) != 0:
            return []
        t_ns = self._t_usec(m.time_usec, arrival_ns)
        out: list[Sample] = []
        if self._imu_selected("HIGHRES_IMU"):
            self._finite(m.xacc, m.yacc, m.zacc, m.xgyro, m.ygyro, m.zgyro)
            out.append(ImuSample(
                t_ns=t_ns,
                accel_body_mps2=np.array([m.xacc, m.yacc, m.zacc], dtype=np.float64),
                gyro_body_radps=np.array([m.xgyro, m.ygyro, m.zgyro], dtype=np.float64),
            ))
        if m.fields_updated & _HIGHRES_PRESSURE_ALT_UPDATED and math.isfinite(m.pressure_alt):
            out.append(BaroSample(t_ns=t_ns, alt_m=float(m.pressure_alt)))
        return out

    def _attitude(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        self._finite(m.roll, m.pitch, m.yaw)
        return [AttitudeSample(t_ns=self._t_boot_ms(m.time_boot_ms, arrival_ns),
                               roll_rad=float(m.roll), pitch_rad=float(m.pitch),
                               yaw_rad=float(m.yaw))]

    def _scaled_pressure(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        self._finite(m.press_abs)
        alt = pressure_altitude_m(float(m.press_abs), self.qnh_hpa)
        self.last_pressure_hpa = float(m.press_abs)
        return [BaroSample(t_ns=self._t_boot_ms(m.time_boot_ms, arrival_ns), alt_m=alt)]

    def _gps(self, m: C.MavMessage, arrival_ns: int, receiver_id: int) -> list[Sample]:
        lat, lon = m.lat / 1e7, m.lon / 1e7
        if abs(lat) > 90.0 or abs(lon) > 180.0:
            raise InboundValueError(f"GPS lat/lon {lat}, {lon} outside [-90, 90] x [-180, 180]")
        us = int(m.time_usec)
        t_ns = (arrival_ns if us > C.UNIX_EPOCH_THRESHOLD_US else self._t_usec(us, arrival_ns)
                ) - self._gnss_lag_ns
        if m.vel != _U16_INVALID and m.cog != _U16_INVALID:
            speed, cog = m.vel / 100.0, math.radians(m.cog / 100.0)
            v = np.array([speed * math.cos(cog), speed * math.sin(cog), math.nan])
        else:
            v = np.full(3, math.nan)
        h_acc = (m.h_acc / 1000.0 if m.h_acc > 0
                 else m.eph / 100.0 * C.NOMINAL_UERE_M if m.eph != _U16_INVALID else math.inf)
        v_acc = (m.v_acc / 1000.0 if m.v_acc > 0
                 else m.epv / 100.0 * C.NOMINAL_UERE_M if m.epv != _U16_INVALID else math.inf)
        jam, spoof = self._interference.flags(receiver_id, t_ns)
        sats = 0 if m.satellites_visible == _U8_INVALID else int(m.satellites_visible)
        return [GnssSample(t_ns=t_ns, lat_deg=lat, lon_deg=lon, alt_m=m.alt / 1000.0,
                           v_ned_mps=v, h_acc_m=h_acc, v_acc_m=v_acc, fix_type=int(m.fix_type),
                           num_sats=sats, jamming=jam, spoofing=spoof)]

    def _gps_raw_int(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        return self._gps(m, arrival_ns, 0)

    def _gps2_raw(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        return self._gps(m, arrival_ns, 1)

    def _gnss_integrity(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        jam = m.jamming_state in (C.GNSS_JAMMING_STATE_MITIGATED, C.GNSS_JAMMING_STATE_DETECTED)
        spoof = m.spoofing_state in (C.GNSS_SPOOFING_STATE_MITIGATED,
                                     C.GNSS_SPOOFING_STATE_DETECTED)
        self._interference.update_receiver(arrival_ns, int(m.id), jam, spoof)
        return [GnssInterference(arrival_ns, int(m.id), jam, spoof, "GNSS_INTEGRITY")]

    def _global_position_int(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        lat, lon = m.lat / 1e7, m.lon / 1e7
        if abs(lat) > 90.0 or abs(lon) > 180.0:
            raise InboundValueError(f"FC position {lat}, {lon} outside [-90, 90] x [-180, 180]")
        hdg = math.radians(m.hdg / 100.0) if m.hdg != _U16_INVALID else math.nan
        return [FcPosition(t_ns=self._t_boot_ms(m.time_boot_ms, arrival_ns), lat_deg=lat,
                           lon_deg=lon, alt_m=m.alt / 1000.0, rel_alt_m=m.relative_alt / 1000.0,
                           v_ned_mps=np.array([m.vx, m.vy, m.vz], dtype=np.float64) / 100.0,
                           heading_rad=hdg)]

    def _statustext(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        raw = m.text
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
        text = text.rstrip("\x00")
        out: list[Sample] = [FcStatusText(arrival_ns, int(m.severity), text)]
        spoof = bool(C.STATUSTEXT_SPOOFING_RE.search(text))
        jam = bool(C.STATUSTEXT_JAMMING_RE.search(text))
        if spoof or jam:
            self._interference.update_text(arrival_ns, jam, spoof)
            out.append(GnssInterference(arrival_ns, -1, jam, spoof, "STATUSTEXT"))
        return out

    def _extended_sys_state(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        return [LandedState(arrival_ns, int(m.landed_state))]

    def _heartbeat(self, m: C.MavMessage, arrival_ns: int) -> list[Sample]:
        hdr = m.get_header()
        return [FcHeartbeat(arrival_ns, hdr.srcSystem, hdr.srcComponent, int(m.type),
                            int(m.autopilot), int(m.base_mode), int(m.custom_mode),
                            int(m.system_status))]
