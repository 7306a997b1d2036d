"""The GNSS switch topology (REQUIREMENTS A1, N9): real receiver on GPS1, terrafix on GPS2,
GPS_PRIMARY switched on trust changes and confirmed by the FC's PARAM_VALUE echo; the
pre-flight check reads the FC's parameters by name on the signed link and names each one that
would make a switch lose the position. Against the FC emulator over real UDP MAVLink."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from terrafix.autopilot import constants as C
from terrafix.autopilot.ardupilot import ArduPilotLink, ArduPilotLinkConfig, FcCallbacks
from terrafix.autopilot.errors import FcParameterError
from terrafix.autopilot.fc_emulation import ARDUPILOT_DEFAULT_PARAMS, TERRAFIX_TOPOLOGY_PARAMS
from terrafix.autopilot.gnss_switch import GnssSwitchPlan, switch_parameter_problems
from terrafix.autopilot.parameters import read_parm_file

from .peers import fc_peer_main

PARM_FILE = Path(__file__).resolve().parents[2] / "docs" / "ardupilot" / "terrafix.parm"
PLAN = GnssSwitchPlan("gps_primary", 0, 1, 1, 2)


def wait_for(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_the_shipped_parameter_file_passes_the_check_and_matches_the_emulator():
    shipped = read_parm_file(PARM_FILE)
    configured = {**ARDUPILOT_DEFAULT_PARAMS, **shipped}
    assert switch_parameter_problems(PLAN, configured) == []
    for name, value in TERRAFIX_TOPOLOGY_PARAMS.items():
        assert shipped[name] == value, name


def test_ardupilot_defaults_are_refused_naming_each_parameter():
    problems = switch_parameter_problems(PLAN, dict(ARDUPILOT_DEFAULT_PARAMS))
    text = " | ".join(problems)
    assert len(problems) == 2
    assert "GPS2_TYPE is 0" in text and "GPS_AUTO_SWITCH is 1" in text
    # blending and GPS affinity would keep the spoofed receiver in use
    bad = {**ARDUPILOT_DEFAULT_PARAMS, **TERRAFIX_TOPOLOGY_PARAMS, "GPS_AUTO_SWITCH": 2.0,
           "EK3_AFFINITY": 1.0, "EK3_SRC1_POSXY": 6.0}
    text = " | ".join(switch_parameter_problems(PLAN, bad))
    for name in ("GPS_AUTO_SWITCH is 2", "EK3_AFFINITY is 1", "EK3_SRC1_POSXY is 6"):
        assert name in text
    # a parameter the FC did not report is a problem too (fail closed)
    missing = {**ARDUPILOT_DEFAULT_PARAMS, **TERRAFIX_TOPOLOGY_PARAMS, "GPS2_TYPE": None}
    assert any(p.startswith("GPS2_TYPE: the flight controller did not report it")
               for p in switch_parameter_problems(PLAN, missing))


def test_source_set_switch_with_defaults_is_refused_naming_the_empty_source_set():
    plan = GnssSwitchPlan("ekf_source_set", 0, 0, 1, 2)
    values = {**ARDUPILOT_DEFAULT_PARAMS, "GPS1_TYPE": 14.0}
    problems = switch_parameter_problems(plan, values)
    assert len(problems) == 1 and problems[0].startswith("EK3_SRC2_POSXY is 0")
    assert "stop EKF3 aiding" in problems[0]


def _link(fc_port: int, switches: list, **over) -> ArduPilotLink:
    cfg = ArduPilotLinkConfig(connection=f"udpout:127.0.0.1:{fc_port}", **over)
    return ArduPilotLink(cfg, FcCallbacks(on_gnss_switch=switches.append))


def test_preflight_refuses_an_fc_with_default_parameters(start_peer):
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0",
                    {"telemetry_hz": 20, "params": dict(ARDUPILOT_DEFAULT_PARAMS)})
    link = _link(fc.address[1], [])
    try:
        link.open()
        with pytest.raises(FcParameterError, match="signed link"):
            link.check_switch_parameters()
        link.establish_signing()
        with pytest.raises(FcParameterError) as err:
            link.check_switch_parameters()
        msg = str(err.value)
        assert msg.startswith("take-off refused")
        assert "GPS2_TYPE is 0" in msg and "GPS_AUTO_SWITCH is 1" in msg
        reads = fc.call("summary")["param_reads"]
        assert set(PLAN.required_parameters()) <= set(reads)
    finally:
        link.close()


def test_switch_sets_gps_primary_confirmed_by_the_fc_echo(start_peer):
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0", {"telemetry_hz": 20})
    switches: list = []
    link = _link(fc.address[1], switches)
    try:
        link.open()
        link.establish_signing()
        values = link.check_switch_parameters()
        assert values["GPS2_TYPE"] == C.GPS_TYPE_MAV and values["GPS_AUTO_SWITCH"] == 4
        link.set_gnss_trusted(False)
        assert wait_for(lambda: len(switches) == 1)
        assert fc.call("summary")["params"]["GPS_PRIMARY"] == 1.0
        link.set_gnss_trusted(False)  # no change, no command
        link.set_gnss_trusted(True)
        assert wait_for(lambda: len(switches) == 2)
        assert [(s.trusted, s.target, s.answer, s.confirmed) for s in switches] == [
            (False, 1, 1.0, True), (True, 0, 0.0, True)]
        summary = fc.call("summary")
        assert summary["param_sets"] == [("GPS_PRIMARY", 1.0), ("GPS_PRIMARY", 0.0)]
        assert summary["ekf_source_sets"] == []  # the old command is not sent any more
        assert summary["rejected_unsigned"] == 0  # everything went over the signed link
    finally:
        link.close()


def test_an_unanswered_switch_is_reported_unconfirmed(start_peer):
    # an FC without the parameter stays silent, as ArduPilot does for an unknown name
    params = {k: v for k, v in {**ARDUPILOT_DEFAULT_PARAMS, **TERRAFIX_TOPOLOGY_PARAMS}.items()
              if k != "GPS_PRIMARY"}
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0", {"telemetry_hz": 20, "params": params})
    switches: list = []
    link = _link(fc.address[1], switches)
    try:
        link.open()
        link.establish_signing()
        link.set_gnss_trusted(False)
        assert wait_for(lambda: len(switches) == 1, 10.0)
        assert switches[0].answer is None and not switches[0].confirmed
    finally:
        link.close()


def test_the_fc_report_of_terrafix_own_receiver_is_not_fed_back_as_gnss(start_peer):
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0", {"telemetry_hz": 50})
    gnss: list = []
    link = ArduPilotLink(ArduPilotLinkConfig(connection=f"udpout:127.0.0.1:{fc.address[1]}"),
                         FcCallbacks(on_gnss=gnss.append))
    try:
        link.open()
        link.establish_signing()
        for _ in range(5):
            fc.call("gps2_raw")  # GPS2 = terrafix's own GPS_INPUT, echoed by ArduPilot
        assert wait_for(lambda: link.own_gps_echoes == 5)
        assert wait_for(lambda: len(gnss) >= 3)  # GPS_RAW_INT, the real receiver, still comes
        assert all(abs(g.lat_deg - 50.45) < 1e-6 for g in gnss)
    finally:
        link.close()


def test_take_off_asks_for_the_telemetry_and_slows_a_denied_rate_to_the_fcs_limit(start_peer):
    """ArduPilot streams on a companion port only what it is asked for, and DENIES a rate
    above 0.8x its main loop: the link asks for each message it reads on the signed link, and
    asks a denied one again slower until the FC accepts (50 Hz IMU -> 40 Hz at a 50 Hz loop)."""
    fc = start_peer(fc_peer_main, "udpin:127.0.0.1:0", {"telemetry_hz": 20})
    link = _link(fc.address[1], [])
    try:
        link.open()
        link.establish_signing()
        answers = link.request_telemetry()
        assert set(answers) == set(C.COMPANION_TELEMETRY_RATES_HZ)
        assert all(r == C.RESULT_ACCEPTED for r in answers.values()), answers
        got = {int(k): v for k, v in fc.call("summary")["message_intervals_us"].items()}
        assert got[C.MSG_RAW_IMU] == pytest.approx(1e6 / 40.0)  # 50 Hz denied, 40 accepted
        assert got[C.MSG_SCALED_PRESSURE] == pytest.approx(1e6 / 10.0)  # accepted as asked
        with pytest.raises(Exception, match="expected 0 < rate"):
            link.request_telemetry({C.MSG_RAW_IMU: 0.0})
    finally:
        link.close()
