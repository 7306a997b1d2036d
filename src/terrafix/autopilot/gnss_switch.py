"""How ArduPilot is moved between the real GNSS receiver and terrafix, and which FC parameters
make that move keep the aircraft's position.

The topology (measured against ArduPlane SITL; README "ArduPilot in the loop"): the real
receiver stays ArduPilot's GPS1, terrafix is GPS2 (GPS2_TYPE 14, GPS_INPUT gps_id 1), and a
change of GNSS trust sets GPS_PRIMARY: 0 (the receiver) while trusted, 1 (terrafix) while not.
EKF3 resets its horizontal position to the newly selected receiver when the GPS it fuses
changes and keeps aiding; with GPS_AUTO_SWITCH 4 ArduPilot also falls back by itself to the
receiver when terrafix stops (companion dead: GPS2 loses its fix ~4 s later) and to terrafix
when the receiver loses its fix (jamming), before any command.

The alternative kept for FCs configured that way is MAV_CMD_SET_EKF_SOURCE_SET (an ExternalNav
or second-GPS source set); with ArduPilot's defaults (EK3_SRC2_POSXY 0) that command removes the
position source altogether, which the pre-flight check below refuses.

`switch_parameter_problems` is pure: it takes the values read from the FC and returns one
sentence per parameter that would make a switch lose the position (take-off is then refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from terrafix.autopilot import constants as C

SwitchMethod = Literal["gps_primary", "ekf_source_set"]


@dataclass(frozen=True, slots=True)
class GnssSwitchPlan:
    """What the link does on a change of GNSS trust.

    real_gps_instance / terrafix_gps_instance: 0-based ArduPilot receiver instances (the
    terrafix one is the GPS_INPUT gps_id). Source sets are 1-based (EK3_SRCn_*)."""

    method: SwitchMethod
    real_gps_instance: int
    terrafix_gps_instance: int
    source_set_trusted: int
    source_set_untrusted: int

    def required_parameters(self) -> tuple[str, ...]:
        common = (C.PARAM_AHRS_EKF_TYPE, C.gps_type_param(self.terrafix_gps_instance))
        if self.method == "gps_primary":
            return (*common, C.gps_type_param(self.real_gps_instance),
                    C.PARAM_GPS_AUTO_SWITCH, C.PARAM_EK3_AFFINITY,
                    C.ek3_src_posxy_param(self.source_set_trusted), C.PARAM_GPS_PRIMARY)
        return (*common, C.ek3_src_posxy_param(self.source_set_trusted),
                C.ek3_src_posxy_param(self.source_set_untrusted))

    def primary_for(self, trusted: bool) -> int:
        return self.real_gps_instance if trusted else self.terrafix_gps_instance


def switch_parameter_problems(plan: GnssSwitchPlan,
                              values: dict[str, float | None]) -> list[str]:
    """One sentence per FC parameter that would make a GNSS switch lose the position."""
    problems: list[str] = []

    def val(name: str) -> int | None:
        v = values.get(name)
        return None if v is None else round(v)

    def need(name: str, ok: bool, why: str) -> None:
        v = val(name)
        if v is None:
            problems.append(f"{name}: the flight controller did not report it ({why})")
        elif not ok:
            problems.append(f"{name} is {v}: {why}")

    ekf = val(C.PARAM_AHRS_EKF_TYPE)
    need(C.PARAM_AHRS_EKF_TYPE, ekf == C.AHRS_EKF_TYPE_EKF3,
         f"must be {C.AHRS_EKF_TYPE_EKF3} (EKF3), the estimator the switch is made for")
    tf_type = C.gps_type_param(plan.terrafix_gps_instance)
    need(tf_type, val(tf_type) == C.GPS_TYPE_MAV,
         f"must be {C.GPS_TYPE_MAV} (MAVLink) or ArduPilot ignores terrafix's GPS_INPUT "
         f"(gps_id {plan.terrafix_gps_instance})")
    trusted_src = C.ek3_src_posxy_param(plan.source_set_trusted)
    if plan.method == "gps_primary":
        if plan.real_gps_instance == plan.terrafix_gps_instance:
            problems.append("the real receiver and terrafix are configured as the same GPS "
                            f"instance {plan.real_gps_instance}")
        real_type = C.gps_type_param(plan.real_gps_instance)
        need(real_type, val(real_type) not in (None, C.GPS_TYPE_NONE),
             "no real receiver to switch back to")
        sw = val(C.PARAM_GPS_AUTO_SWITCH)
        need(C.PARAM_GPS_AUTO_SWITCH, sw in C.GPS_AUTO_SWITCH_OK,
             "must be 4 (primary if 3D fix) or 0 (primary): with 1 (use best) ArduPilot ignores "
             "GPS_PRIMARY and stays on the spoofed receiver, with 2 (blend) it mixes it in")
        aff = val(C.PARAM_EK3_AFFINITY)
        need(C.PARAM_EK3_AFFINITY, aff is not None and not aff & C.EK3_AFFINITY_GPS_BIT,
             "bit 0 (GPS affinity) must be clear: with it each EKF lane keeps its own receiver "
             "and the lanes on GPS1 stay on the spoofed one")
        need(trusted_src, val(trusted_src) == C.EK3_SOURCE_POSXY_GPS,
             f"must be {C.EK3_SOURCE_POSXY_GPS} (GPS): the switch selects the GPS the EKF uses")
    else:
        untrusted_src = C.ek3_src_posxy_param(plan.source_set_untrusted)
        need(trusted_src, val(trusted_src) not in (None, C.EK3_SOURCE_POSXY_NONE),
             "source set used while GNSS is trusted has no horizontal position source")
        u = val(untrusted_src)
        need(untrusted_src, u not in (None, C.EK3_SOURCE_POSXY_NONE),
             f"source set {plan.source_set_untrusted} (selected when GNSS is not trusted) has no "
             "horizontal position source: the switch would stop EKF3 aiding")
        if u is not None and u == val(trusted_src):
            problems.append(f"{untrusted_src} is {u}, the same source as {trusted_src}: the "
                            "switch would keep the spoofed receiver")
        elif u == C.EK3_SOURCE_POSXY_EXTNAV:
            problems.append(f"{untrusted_src} is {u} (ExternalNav): this link sends GPS_INPUT, "
                            "not VISION_POSITION_ESTIMATE, so the switch would leave EKF3 "
                            "without a position")
    return problems
