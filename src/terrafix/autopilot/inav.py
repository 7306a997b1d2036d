"""The companion's link to an iNav flight controller (REQUIREMENTS A3).

iNav takes our position as an "MSP GPS": MSP2_SENSOR_GPS frames at 5 Hz on a serial port whose
function is MSP (or iNav SITL's TCP port). iNav does not reply to sensor frames; anything it does
send back (an error frame for an unsupported function) is parsed and counted so a misconfigured
port shows up in the stats instead of as silence.

Status for the ground station goes over a separate, unsigned MAVLink side channel (iNav has no
MAVLink signing to share), using the same GroundStation as the ArduPilot setup; RELOC hints
arrive on it too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import ChannelStats, HeartbeatSpec, MavlinkChannel
from terrafix.autopilot.errors import LinkClosedError
from terrafix.autopilot.gps_report import GpsReport
from terrafix.autopilot.gps_sender import FixedRateGpsSender, LatestSlot, OutputStats
from terrafix.autopilot.ground_station import GroundStation, GroundStationConfig
from terrafix.autopilot.msp import MspV2Parser, encode_sensor_gps
from terrafix.autopilot.reloc_hint import RelocHint
from terrafix.autopilot.transport import ByteTransport, open_transport
from terrafix.measurements import NavSolution

log = logging.getLogger(__name__)


class InavLinkConfig(BaseModel):
    """Settings of the iNav link. `status_connection`: the unsigned MAVLink side channel to the
    ground station, or None for no status."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    msp_connection: str
    baud: int = Field(115200, gt=0)
    rate_hz: float = Field(C.MSP_GPS_RATE_HZ, ge=1.0, le=C.GPS_INPUT_RATE_MAX_HZ)
    instance: int = Field(0, ge=0, le=255)
    stale_after_s: float = Field(C.DEFAULT_STALE_AFTER_S, gt=0.0, le=10.0)
    send_yaw: bool = False
    status_connection: str | None = None
    status_system_id: int = Field(C.DEFAULT_SYSTEM_ID, ge=1, le=255)
    status_component_id: int = Field(C.COMPANION_COMPONENT_ID, ge=1, le=255)
    ground_station: GroundStationConfig = GroundStationConfig()
    allow_external_listen: bool = False


@dataclass(frozen=True, slots=True)
class InavLinkStats:
    output: OutputStats
    msp_frames_received: int
    msp_error_frames: int
    msp_crc_errors: int
    msp_garbage_bytes: int
    status_channel: ChannelStats | None


class InavLink:
    """MSP2_SENSOR_GPS output at a fixed rate plus an optional MAVLink status side channel.

    Thread model: an MSP reader thread and the sender thread; the side channel has its own reader
    and heartbeat threads and the ground station its status thread. Implements PositionOutput.
    """

    def __init__(
        self,
        config: InavLinkConfig,
        *,
        on_reloc_hint: Callable[[RelocHint], None] | None = None,
        transport: ByteTransport | None = None,
        status_transport: ByteTransport | None = None,
        mono_clock: Callable[[], int] = time.monotonic_ns,
        utc_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._cfg = config
        self._transport = open_transport(
            transport if transport is not None else config.msp_connection, baud=config.baud,
            allow_external_listen=config.allow_external_listen)
        self._write_lock = threading.Lock()
        self._slot: LatestSlot[NavSolution] = LatestSlot()
        self._sender = FixedRateGpsSender(
            self._slot, self._send_report, rate_hz=config.rate_hz,
            stale_after_s=config.stale_after_s, send_yaw=config.send_yaw, name="msp-gps",
            mono_clock=mono_clock, utc_clock=utc_clock)
        self._parser = MspV2Parser()
        self._frames_in = self._error_frames = 0
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, name="msp-reader", daemon=True)
        self._status: MavlinkChannel | None = None
        self.ground_station: GroundStation | None = None
        status_conn = status_transport if status_transport is not None \
            else config.status_connection
        if status_conn is not None:
            self._status = MavlinkChannel(
                status_conn, system_id=config.status_system_id,
                component_id=config.status_component_id,
                heartbeat=HeartbeatSpec(C.COMPANION_MAV_TYPE, C.AUTOPILOT_INVALID),
                allow_external_listen=config.allow_external_listen, name="inav-status")
            self.ground_station = GroundStation(self._status, config.ground_station,
                                                on_reloc_hint=on_reloc_hint)
        self._opened = False
        self._closed = False

    def open(self) -> None:
        if self._opened:
            return
        self._opened = True
        self._reader.start()
        if self._status is not None and self.ground_station is not None:
            self._status.start()
            self.ground_station.start()

    def start_output(self) -> None:
        if self._closed:
            raise LinkClosedError("the iNav link is closed")
        self.open()
        self._sender.start()

    def publish(self, solution: NavSolution) -> None:
        self._slot.put(solution)

    def output_stats(self) -> OutputStats:
        return self._sender.stats()

    def stats(self) -> InavLinkStats:
        return InavLinkStats(self._sender.stats(), self._frames_in, self._error_frames,
                             self._parser.crc_errors, self._parser.garbage_bytes,
                             self._status.stats() if self._status is not None else None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sender.stop()
        self._stop.set()
        if self._reader.is_alive():
            self._reader.join(timeout=2.0)
        if self.ground_station is not None:
            self.ground_station.close()
        if self._status is not None:
            self._status.close()
        self._transport.close()

    def __enter__(self) -> InavLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send_report(self, report: GpsReport) -> None:
        frame = encode_sensor_gps(report, self._cfg.instance)
        with self._write_lock:
            self._transport.write(frame)

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._transport.wait_readable(0.1):
                    continue
                data = self._transport.read()
            except OSError as e:
                log.warning("MSP transport error on %s: %s", self._transport.description, e)
                self._stop.wait(0.2)
                continue
            if not data:
                self._stop.wait(0.01)
                continue
            for frame in self._parser.feed(data):
                self._frames_in += 1
                if frame.direction == C.MSP_DIRECTION_ERROR:
                    self._error_frames += 1
                    log.warning("iNav answered MSP function 0x%04x with an error",
                                frame.function)
