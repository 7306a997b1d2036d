"""The ground-station side of a SITL run on SERIAL0, and what it records.

SERIAL0 is ArduPilot's MAVLINK_COMM_0, which it always accepts unsigned (its "secure USB"
channel), so the harness can set SIM_* parameters, upload the mission and arm while terrafix's
own link on SERIAL1 is signed with the flight's key. Everything received is timestamped on
the companion's monotonic clock; SIM_STATE is SITL's true state (the ground truth).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import HeartbeatSpec, MavlinkChannel
from terrafix.autopilot.parameters import FcParameters
from terrafix.sitl.process import SERIAL0_PORT, SitlError

mavlink = C.DIALECT

PLANE_MODE_MANUAL = 0
PLANE_MODE_FBWA = 5
PLANE_MODE_AUTO = 10
PLANE_MODE_RTL = 11
PLANE_MODE_LOITER = 12
CMD_DO_SET_MODE = mavlink.MAV_CMD_DO_SET_MODE  # 176
CMD_COMPONENT_ARM_DISARM = mavlink.MAV_CMD_COMPONENT_ARM_DISARM  # 400
CMD_NAV_WAYPOINT = mavlink.MAV_CMD_NAV_WAYPOINT  # 16
CMD_NAV_TAKEOFF = mavlink.MAV_CMD_NAV_TAKEOFF  # 22
CMD_DO_JUMP = mavlink.MAV_CMD_DO_JUMP  # 177
CMD_NAV_LOITER_UNLIM = mavlink.MAV_CMD_NAV_LOITER_UNLIM  # 17
FRAME_GLOBAL_RELATIVE_ALT_INT = mavlink.MAV_FRAME_GLOBAL_RELATIVE_ALT_INT  # 6
MISSION_ACCEPTED = mavlink.MAV_MISSION_ACCEPTED  # 0


@dataclass(frozen=True, slots=True)
class Truth:
    t_ns: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    roll_rad: float
    pitch_rad: float
    yaw_rad: float
    v_ned: tuple[float, float, float]
    q_wxyz: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class ApPosition:
    """ArduPilot's own estimate (GLOBAL_POSITION_INT)."""

    t_ns: int
    time_boot_ms: int
    lat_deg: float
    lon_deg: float
    alt_m: float
    rel_alt_m: float


@dataclass(frozen=True, slots=True)
class EkfStatus:
    t_ns: int
    flags: int
    pos_horiz_variance: float

    @property
    def aiding_horizontal(self) -> bool:
        """EKF3 has an absolute horizontal position (it reports EKF_POS_HORIZ_ABS)."""
        return bool(self.flags & C.EKF_POS_HORIZ_ABS) and not (
            self.flags & C.EKF_CONST_POS_MODE)


def _text(raw: object) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    return str(raw).rstrip("\x00")


def truth_of_sim_state(msg: C.MavMessage, t_ns: int) -> Truth:
    """SITL's SIM_STATE (degrees E7 when lat_int is set, else degrees; rad; m/s) at arrival
    time t_ns on the companion clock."""
    lat = msg.lat_int / 1e7 if msg.lat_int else float(msg.lat)
    lon = msg.lon_int / 1e7 if msg.lon_int else float(msg.lon)
    return Truth(t_ns, lat, lon, float(msg.alt), float(msg.roll), float(msg.pitch),
                 float(msg.yaw), (float(msg.vn), float(msg.ve), float(msg.vd)),
                 (float(msg.q1), float(msg.q2), float(msg.q3), float(msg.q4)))


class SitlControl:
    """Ground station on SITL's SERIAL0: parameters, message rates, mission, mode, arming,
    and a recorder of truth, ArduPilot's position, EKF status and STATUSTEXT."""

    def __init__(self, port: int = SERIAL0_PORT) -> None:
        self.channel = MavlinkChannel(
            f"tcp:127.0.0.1:{port}", system_id=255,
            component_id=mavlink.MAV_COMP_ID_MISSIONPLANNER,
            heartbeat=HeartbeatSpec(C.MAV_TYPE_GCS, C.AUTOPILOT_INVALID), name="sitl-gcs")
        self.params = FcParameters(self.channel)
        self.lock = threading.Lock()
        self.truth: list[Truth] = []
        self.positions: list[ApPosition] = []
        self.ekf: list[EkfStatus] = []
        self.texts: list[tuple[int, int, str]] = []
        self.gps_raw: list[tuple[int, int, float, float]] = []
        self.gps2_raw: list[tuple[int, int, float, float]] = []
        self.mission_current: list[tuple[int, int]] = []
        self.heartbeat = None
        self._mission_requests: list[tuple[int, int]] = []
        self._mission_ack: int | None = None
        self._cond = threading.Condition(self.lock)
        self.on_truth: Callable[[Truth], None] | None = None
        self.channel.subscribe("*", self._on_message)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> None:
        self.channel.start()
        deadline = time.monotonic() + timeout_s
        while self.heartbeat is None:
            if time.monotonic() > deadline:
                raise SitlError("no HEARTBEAT from SITL on SERIAL0")
            time.sleep(0.1)
        request_rates(self.channel, self.target, GCS_RATES_HZ)

    def close(self) -> None:
        self.channel.close()

    @property
    def target(self) -> tuple[int, int]:
        hb = self.heartbeat
        return (1, 1) if hb is None else hb

    # --- inbound ------------------------------------------------------------------------------
    def _on_message(self, msg: C.MavMessage, t_ns: int) -> None:
        kind = msg.get_type()
        hdr = msg.get_header()
        if hdr.srcComponent != C.MAV_COMP_ID_AUTOPILOT1:
            return
        if kind == "SIM_STATE":
            tr = truth_of_sim_state(msg, t_ns)
            with self.lock:
                self.truth.append(tr)
            if self.on_truth is not None:
                self.on_truth(tr)
            return
        with self._cond:
            if kind == "HEARTBEAT":
                if msg.autopilot != C.AUTOPILOT_INVALID:
                    self.heartbeat = (hdr.srcSystem, hdr.srcComponent)
                    self.base_mode = int(msg.base_mode)
                    self.custom_mode = int(msg.custom_mode)
            elif kind == "GLOBAL_POSITION_INT":
                self.positions.append(ApPosition(t_ns, int(msg.time_boot_ms), msg.lat / 1e7,
                                                 msg.lon / 1e7, msg.alt / 1e3,
                                                 msg.relative_alt / 1e3))
            elif kind == "EKF_STATUS_REPORT":
                self.ekf.append(EkfStatus(t_ns, int(msg.flags), float(msg.pos_horiz_variance)))
            elif kind == "STATUSTEXT":
                self.texts.append((t_ns, int(msg.severity), _text(msg.text)))
            elif kind == "GPS_RAW_INT":
                self.gps_raw.append((t_ns, int(msg.fix_type), msg.lat / 1e7, msg.lon / 1e7))
            elif kind == "GPS2_RAW":
                self.gps2_raw.append((t_ns, int(msg.fix_type), msg.lat / 1e7, msg.lon / 1e7))
            elif kind == "MISSION_CURRENT":
                self.mission_current.append((t_ns, int(msg.seq)))
            elif kind in ("MISSION_REQUEST_INT", "MISSION_REQUEST"):
                self._mission_requests.append((int(msg.seq), 1 if kind.endswith("INT") else 0))
            elif kind == "MISSION_ACK":
                self._mission_ack = int(msg.type)
            self._cond.notify_all()

    def latest_truth(self) -> Truth | None:
        with self.lock:
            return self.truth[-1] if self.truth else None

    def latest_position(self) -> ApPosition | None:
        with self.lock:
            return self.positions[-1] if self.positions else None

    def texts_since(self, t_ns: int) -> list[str]:
        with self.lock:
            return [t for ts, _, t in self.texts if ts >= t_ns]

    def wait_text(self, needle: str, timeout_s: float, since_ns: int = 0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if any(needle in t for ts, _, t in self.texts if ts >= since_ns):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    # --- commands -----------------------------------------------------------------------------
    def message_interval(self, msg_id: int, hz: float) -> None:
        request_rates(self.channel, self.target, {msg_id: hz})

    def set_param(self, name: str, value: float, *, required: bool = True) -> bool:
        pv = self.params.set(self.target, name, value)
        if pv is None and required:
            raise SitlError(f"SITL did not confirm {name} = {value}")
        return pv is not None

    def get_param(self, name: str) -> float | None:
        pv = self.params.read(self.target, name)
        return None if pv is None else pv.value

    def command(self, command: int, params: tuple[float, ...]) -> int | None:
        ack = self.channel.command_long(*self.target, command, params, timeout_s=1.5,
                                        retries=3)
        return None if ack is None else int(ack.result)

    def set_mode(self, mode: int) -> bool:
        return self.command(CMD_DO_SET_MODE, (1.0, float(mode))) == C.RESULT_ACCEPTED

    def arm(self) -> int | None:
        return self.command(CMD_COMPONENT_ARM_DISARM, (1.0,))

    @property
    def armed(self) -> bool:
        return bool(getattr(self, "base_mode", 0) & C.MAV_MODE_FLAG_SAFETY_ARMED)

    def upload_mission(self, items: list[C.MavMessage], timeout_s: float = 20.0) -> None:
        """MISSION_COUNT, then each MISSION_ITEM_INT the FC asks for, until MISSION_ACK."""
        with self._cond:
            self._mission_requests.clear()
            self._mission_ack = None
        ts, tc = self.target
        self.channel.send(mavlink.MAVLink_mission_count_message(ts, tc, len(items), 0))
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._mission_ack is None:
                while self._mission_requests:
                    seq, _ = self._mission_requests.pop(0)
                    if 0 <= seq < len(items):
                        item = items[seq]
                        item.target_system, item.target_component = ts, tc
                        self.channel.send(item)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SitlError("mission upload: no MISSION_ACK")
                self._cond.wait(min(remaining, 0.5))
            if self._mission_ack != MISSION_ACCEPTED:
                raise SitlError(f"mission upload refused: MISSION_ACK type {self._mission_ack}")


GCS_RATES_HZ: dict[int, float] = {
    C.MSG_SIM_STATE: 40.0, C.MSG_GLOBAL_POSITION_INT: 10.0, C.MSG_EKF_STATUS_REPORT: 5.0,
    C.MSG_GPS_RAW_INT: 5.0, C.MSG_GPS2_RAW: 5.0, mavlink.MAVLINK_MSG_ID_MISSION_CURRENT: 2.0,
}
def request_rates(channel, target: tuple[int, int], rates_hz: dict[int, float]) -> None:
    """MAV_CMD_SET_MESSAGE_INTERVAL for each message, on the channel it must stream to."""
    for msg_id, hz in rates_hz.items():
        channel.command_long(*target, C.CMD_SET_MESSAGE_INTERVAL, (float(msg_id), 1e6 / hz),
                             timeout_s=1.0, retries=3)


def mission_item(seq: int, command: int, lat: float, lon: float, rel_alt_m: float,
                 params: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
                 ) -> C.MavMessage:
    return mavlink.MAVLink_mission_item_int_message(
        1, 1, seq, FRAME_GLOBAL_RELATIVE_ALT_INT, command, 0, 1, *params,
        round(lat * 1e7), round(lon * 1e7), float(rel_alt_m), 0)


def horizontal_error_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Flat-earth distance (m) between two nearby WGS84 points."""
    k = math.radians(1.0) * 6_378_137.0
    dn = (lat1 - lat2) * k
    de = (lon1 - lon2) * k * math.cos(math.radians(0.5 * (lat1 + lat2)))
    return math.hypot(dn, de)
