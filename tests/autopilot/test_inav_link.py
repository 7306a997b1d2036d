"""iNav link against an MSP port peer (TCP, like iNav SITL) and a GCS peer on the unsigned
MAVLink side channel (REQUIREMENTS A3)."""

from __future__ import annotations

import queue
import time

import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.inav import InavLink, InavLinkConfig
from terrafix.autopilot.msp import MspSensorGps
from terrafix.autopilot.position_output import PositionOutput
from terrafix.measurements import SourceLabel

from .helpers import solution
from .peers import gcs_peer_main, msp_peer_main
from .test_ardupilot_link import Publisher


def test_msp_gps_at_5hz_and_status_on_the_side_channel(start_peer):
    msp = start_peer(msp_peer_main, "127.0.0.1", {})
    gcs = start_peer(gcs_peer_main, "udpin:127.0.0.1:0", {})
    hints: queue.Queue = queue.Queue()
    cfg = InavLinkConfig(msp_connection=f"tcp:127.0.0.1:{msp.address[1]}",
                         status_connection=f"udpout:127.0.0.1:{gcs.address[1]}")
    link = InavLink(cfg, on_reloc_hint=hints.put_nowait)
    assert isinstance(link, PositionOutput)
    try:
        link.open()
        with Publisher(link, lat=47.1234567, lon=-122.7654321, sigma_ne=2.0, sigma_d=3.0,
                       v_ned=(0.0, 0.0, 0.0), sigma_v=0.2):
            link.start_output()
            assert link.ground_station is not None
            link.ground_station.update(solution(time.monotonic_ns()))
            time.sleep(2.6)
            got = msp.call("frames")
            elapsed, ack = gcs.call("reloc_text", "RELOC:47.12,-122.77,200")
        frames = got["frames"]
        # 5 Hz over ~2.6 s: about 13; counts only, generous margins
        assert 7 <= len(frames) <= 20
        assert got["crc_errors"] == 0 and got["garbage"] == 0
        assert all(f[1] == C.MSP_DIRECTION_TO_FC and f[2] == C.MSP2_SENSOR_GPS for f in frames)
        last = MspSensorGps.unpack(frames[-1][3])
        assert last.fix_type == C.MSP_FIX_3D
        assert (last.latitude_e7, last.longitude_e7) == (471234567, -1227654321)
        assert last.msl_altitude_cm == 18000
        # millimetres: 2 m and 3 m, grown a little by the solution's age (<= 0.1 s) at send time
        assert 2000 <= last.horizontal_pos_accuracy_mm <= 2050
        assert 3000 <= last.vertical_pos_accuracy_mm <= 3050
        assert last.horizontal_vel_accuracy_mmps == 200
        assert last.hdop_x100 == 50 and last.gps_week > 2000 and last.year >= 2024
        assert last.true_yaw_cdeg == C.MSP_YAW_UNKNOWN
        # the unsigned MAVLink side channel carries status and takes hints
        nvf = gcs.call("collected")["nvf"]
        assert {name for _, name, _ in nvf} == set(C.NVF_NAMES)
        assert elapsed < C.RELOC_ACK_DEADLINE_S and ack.startswith("RELOC ACK")
        assert hints.get(timeout=1.0).radius_m == 200.0

        # failsafe -> fix type 0
        with Publisher(link, failsafe=True, label=SourceLabel.NO_FIX):
            time.sleep(0.7)
            frames = msp.call("frames")["frames"]
        assert MspSensorGps.unpack(frames[-1][3]).fix_type == C.MSP_FIX_NONE
        assert link.stats().msp_error_frames == 0
    finally:
        link.close()


def test_rate_outside_range_is_refused():
    with pytest.raises(ValueError, match="rate_hz"):
        InavLinkConfig(msp_connection="tcp:127.0.0.1:5761", rate_hz=50.0)
