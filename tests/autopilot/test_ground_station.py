"""Ground station against a GCS peer process: status at 1-2 Hz, label-change and spoof texts,
RELOC hints as STATUSTEXT and COMMAND_LONG acknowledged within 2 s (REQUIREMENTS A4, N9)."""

from __future__ import annotations

import logging
import queue
import time

import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import HeartbeatSpec, MavlinkChannel
from terrafix.autopilot.ground_station import GroundStation, GroundStationConfig
from terrafix.autopilot.reloc_hint import RelocHint
from terrafix.measurements import SourceLabel

from .helpers import solution
from .peers import gcs_peer_main


@pytest.fixture
def gcs_and_station(start_peer):
    gcs = start_peer(gcs_peer_main, "udpin:127.0.0.1:0", {})
    channel = MavlinkChannel(f"udpout:127.0.0.1:{gcs.address[1]}", system_id=1,
                             component_id=C.COMPANION_COMPONENT_ID,
                             heartbeat=HeartbeatSpec(C.COMPANION_MAV_TYPE, C.AUTOPILOT_INVALID),
                             name="gs")
    hints: queue.Queue[RelocHint] = queue.Queue()
    gs = GroundStation(channel, GroundStationConfig(status_rate_hz=2.0),
                       on_reloc_hint=hints.put_nowait)
    channel.start()
    gs.start()
    yield gcs, gs, hints
    gs.close()
    channel.close()


def test_status_named_values_at_the_configured_rate(gcs_and_station):
    gcs, gs, _ = gcs_and_station
    gs.update(solution(time.monotonic_ns(), sigma_ne=4.0, anchor_age_s=2.5, gnss_trusted=True))
    time.sleep(3.0)
    nvf = gcs.call("collected")["nvf"]
    by_name: dict[str, list[float]] = {}
    for _, name, value in nvf:
        by_name.setdefault(name, []).append(value)
    assert set(by_name) == set(C.NVF_NAMES)
    # 2 Hz over ~3 s: about 6 each; counts only, generous margins
    assert all(3 <= len(v) <= 9 for v in by_name.values()), {k: len(v) for k, v in by_name.items()}
    assert by_name[C.NVF_SOURCE][-1] == C.SOURCE_LABEL_CODES[SourceLabel.SATELLITE_ANCHORED]
    assert by_name[C.NVF_RADIUS95][-1] == pytest.approx(4.0 * 5.991464547107979 ** 0.5, rel=1e-5)
    assert by_name[C.NVF_ANCHOR_AGE][-1] == pytest.approx(2.5)
    assert by_name[C.NVF_GNSS_TRUSTED][-1] == 1.0
    assert 0.0 < by_name[C.NVF_CONFIDENCE][-1] < 1.0
    assert by_name[C.NVF_GNSS_DISTANCE][-1] == -1.0  # no FC GNSS reported yet


def test_label_change_and_spoof_rejections_reach_the_operator(gcs_and_station):
    gcs, gs, _ = gcs_and_station
    gs.update(solution(time.monotonic_ns()))
    gs.update(solution(time.monotonic_ns(), label=SourceLabel.DEAD_RECKONED, sigma_ne=40.0))
    logging.disable(logging.CRITICAL)  # whatever the log configuration says...
    try:
        for k in range(4):  # a burst: the first goes at once, the rest coalesced, none lost
            gs.report_spoof_rejection(f"jump {900 + k}m")
        time.sleep(2.5)
    finally:
        logging.disable(logging.NOTSET)
    texts = gcs.call("collected")["texts"]
    label = [(sev, t) for _, sev, t in texts if t.startswith("TF ")]
    assert label == [(C.SEVERITY_WARNING, "TF satellite_anchored->dead_reckoned r95 98m")]
    spoof = [t for _, sev, t in texts if t.startswith(C.SPOOF_TEXT_PREFIX)]
    assert spoof[0] == "GNSS SPOOF REJECTED: jump 900m"
    assert spoof[1:] == ["GNSS SPOOF REJECTED: jump 903m x3"]
    assert all(len(t) <= 50 for _, _, t in texts)


def test_reloc_hint_as_statustext_is_acknowledged_and_delivered(gcs_and_station):
    gcs, _, hints = gcs_and_station
    elapsed, text = gcs.call("reloc_text", "RELOC:50.4501,30.5234,500")
    assert elapsed < C.RELOC_ACK_DEADLINE_S
    assert text == "RELOC ACK 50.45010,30.52340 r500"
    hint = hints.get(timeout=1.0)
    assert (hint.lat_deg, hint.lon_deg, hint.radius_m) == (50.4501, 30.5234, 500.0)
    assert hint.source == "STATUSTEXT" and hint.sender[0] == 255


def test_bad_reloc_text_is_nacked_with_a_reason_and_not_delivered(gcs_and_station):
    gcs, gs, hints = gcs_and_station
    elapsed, text = gcs.call("reloc_text", "RELOC:95.0,30.5,500")
    assert elapsed < C.RELOC_ACK_DEADLINE_S
    assert text == "RELOC NACK: lat 95 outside [-90,90]"
    assert hints.empty()
    assert gs.stats().hints_rejected == 1


def test_reloc_hint_as_command_long(gcs_and_station):
    gcs, gs, hints = gcs_and_station
    target = (1, C.COMPANION_COMPONENT_ID)
    elapsed, result, text = gcs.call("reloc_cmd", target, 300.0, 48.5, 35.25)
    assert elapsed is not None and elapsed < C.RELOC_ACK_DEADLINE_S
    assert result == C.RESULT_ACCEPTED
    assert text.startswith("RELOC ACK 48.50000,35.25000 r300")
    hint = hints.get(timeout=1.0)
    assert hint.source == "COMMAND_LONG" and hint.radius_m == 300.0

    elapsed, result, text = gcs.call("reloc_cmd", target, 2.0, 48.5, 35.25)
    assert result == C.RESULT_DENIED and elapsed < C.RELOC_ACK_DEADLINE_S
    assert text == "RELOC NACK: radius 2 m outside [10,50000]"
    assert hints.empty()
    assert gs.stats().hints_accepted == 1 and gs.stats().hints_rejected == 1
