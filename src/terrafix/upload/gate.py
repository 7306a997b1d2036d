"""The flight-state gate of the upload (REQUIREMENTS U2): nothing leaves while airborne.

The upload may start only when the flight controller itself says the aircraft is on the ground
(EXTENDED_SYS_STATE.landed_state == ON_GROUND, fresh) and disarmed (HEARTBEAT base_mode), and
the flight's recorder footer is clean. Everything else refuses, fail closed, with an ERROR
that names the state: UNDEFINED/UNKNOWN, IN_AIR, TAKEOFF, LANDING, armed, no answer from the
FC, a reading that fails, a stale reading, no clean footer.

One reading per attempt: `read_fc_state` takes the link's latest state once (after waiting a
bounded time for the FC's first answer, when the link was just opened); it never polls until
the state becomes acceptable. The operator (or the next `terrafix upload`) tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from terrafix.autopilot import constants as C
from terrafix.recorder import footer_problem
from terrafix.upload.errors import GateRefusedError

log = logging.getLogger(__name__)

LANDED_STATE_NAMES = {
    C.LANDED_STATE_UNDEFINED: "UNKNOWN",
    C.LANDED_STATE_ON_GROUND: "ON_GROUND",
    C.LANDED_STATE_IN_AIR: "IN_AIR",
    C.LANDED_STATE_TAKEOFF: "TAKEOFF",
    C.LANDED_STATE_LANDING: "LANDING",
}


@dataclass(frozen=True, slots=True)
class FcStateReading:
    """One reading of the FC: landed state (None: none received), its age, armed (None: no
    HEARTBEAT), or the error that made the reading fail."""

    landed_state: int | None
    landed_age_s: float | None
    armed: bool | None
    error: str | None = None

    @property
    def landed_name(self) -> str:
        if self.landed_state is None:
            return "NO_ANSWER"
        return LANDED_STATE_NAMES.get(self.landed_state, f"UNKNOWN({self.landed_state})")


def read_fc_state(link: object, *, wait_s: float = 0.0, newer_than_ns: int | None = None,
                  mono_ns: Callable[[], int] = time.monotonic_ns) -> FcStateReading:
    """One reading of an `ArduPilotLink`'s latest landed state and heartbeat.

    wait_s: how long to wait for the FC's HEARTBEAT and for an EXTENDED_SYS_STATE report
    (newer than `newer_than_ns` when given: the end of a flight waits for the report that
    follows it). A bounded wait for the one reading, not a polling loop on its value. With
    `newer_than_ns`, a report from before it does not count (it reads as no answer): after a
    signing handshake, a report that may have arrived unsigned before it must not open the
    gate."""
    try:
        if wait_s > 0:
            link.wait_for_fc(wait_s)  # type: ignore[attr-defined]
            link.wait_for_landed_state(wait_s, newer_than_ns)  # type: ignore[attr-defined]
        landed = link.landed_state  # type: ignore[attr-defined]
        hb = link.fc_heartbeat  # type: ignore[attr-defined]
    except Exception as exc:  # a failing read is a refusal, whatever failed
        return FcStateReading(None, None, None, f"{type(exc).__name__}: {exc}")
    if landed is not None and newer_than_ns is not None and landed.t_ns <= newer_than_ns:
        landed = None
    age = None if landed is None else (mono_ns() - landed.t_ns) / 1e9
    return FcStateReading(None if landed is None else int(landed.landed_state), age,
                          None if hb is None else bool(hb.armed))


def gate_problem(reading: FcStateReading, recorder_folder: Path | None) -> str | None:
    """Why the upload must not start, or None when it may."""
    if reading.error is not None:
        return f"the flight controller state could not be read ({reading.error})"
    if reading.landed_state is None:
        return "no answer from the flight controller (no EXTENDED_SYS_STATE received)"
    if reading.landed_state != C.LANDED_STATE_ON_GROUND:
        return f"the flight controller reports landed state {reading.landed_name}, " \
               f"expected ON_GROUND"
    if reading.landed_age_s is None or reading.landed_age_s > C.LANDED_STATE_MAX_AGE_S:
        return f"the flight controller's ON_GROUND report is {reading.landed_age_s:.1f} s old " \
               f"(at most {C.LANDED_STATE_MAX_AGE_S} s accepted)"
    if reading.armed is None:
        return "no HEARTBEAT from the flight controller: armed state unknown"
    if reading.armed:
        return "the flight controller is ARMED (on the ground but armed), expected disarmed"
    if recorder_folder is None:
        return "no flight recorder folder given: its footer cannot be checked"
    problem = footer_problem(recorder_folder)
    if problem is not None:
        return f"the flight recorder footer is not clean: {problem}"
    return None


def check_upload_gate(reading: FcStateReading, recorder_folder: Path | None) -> None:
    """Raise GateRefusedError (after an ERROR log naming the state) unless the upload may start."""
    problem = gate_problem(reading, recorder_folder)
    if problem is not None:
        log.error("upload refused: %s (landed state %s, armed %s)", problem,
                  reading.landed_name, reading.armed)
        raise GateRefusedError(f"upload refused: {problem}")
    log.info("upload gate open: ON_GROUND, disarmed, clean recorder footer in %s",
             recorder_folder)
