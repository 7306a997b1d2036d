from __future__ import annotations

from terrafix.inference import DegradePolicy, ThermalMonitor, ThermalState


def test_monitor_reports_unavailable_without_nvml_or_jtop() -> None:
    mon = ThermalMonitor()
    state = mon.poll()
    mon.close()
    if mon.source == "unavailable":
        assert state.source == "unavailable" and state.throttled is None
    else:  # a GPU host: the state carries readings
        assert state.temperature_c is not None


def test_degrade_policy_cuts_keypoints_under_throttling_and_says_so() -> None:
    policy = DegradePolicy(nominal_keypoints=2048, throttled_keypoints=1024, hot_c=80.0)
    assert policy.keypoint_budget(ThermalState(0, "unavailable", None)) == (2048, "")
    assert policy.keypoint_budget(ThermalState(0, "nvml", False, 60.0, 20.0)) == (2048, "")
    n, why = policy.keypoint_budget(ThermalState(0, "nvml", True, 70.0, 25.0))
    assert n == 1024 and "throttling" in why
    n, why = policy.keypoint_budget(ThermalState(0, "jtop", None, 83.0, None))
    assert n == 1024 and "83" in why
