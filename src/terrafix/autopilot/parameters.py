"""Reading and setting flight-controller parameters by name (MAVLink parameter protocol).

Why by name and one at a time: the companion needs a handful of ArduPilot parameters (those that
decide whether a GNSS switch keeps the aircraft's position, and GPS_PRIMARY itself), not the
FC's ~1000-entry table; PARAM_REQUEST_READ with param_index -1 asks for exactly one. A set is
confirmed by ArduPilot's PARAM_VALUE echo of the new value, never assumed from the send.

ArduPilot sends PARAM_VALUE on every MAVLink channel, so an echo can also come from a set made
by a ground station; a set is confirmed only by an echo that carries the value we asked for.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import MavlinkChannel
from terrafix.autopilot.errors import LinkConfigError

mavlink = C.DIALECT


@dataclass(frozen=True, slots=True)
class ParamValue:
    """One PARAM_VALUE as received (arrival on the companion's monotonic clock)."""

    name: str
    value: float
    param_type: int
    arrival_ns: int


def _param_name(raw: object) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    return str(raw).rstrip("\x00")


def check_param_name(name: str) -> str:
    if not name or len(name) > C.PARAM_ID_MAX_CHARS or not name.isascii():
        raise LinkConfigError(f"parameter name must be 1..{C.PARAM_ID_MAX_CHARS} ASCII "
                              f"characters, got {name!r}")
    return name


class FcParameters:
    """PARAM_REQUEST_READ / PARAM_SET on a channel, answered by PARAM_VALUE. Thread-safe."""

    def __init__(self, channel: MavlinkChannel) -> None:
        self._channel = channel
        self._cond = threading.Condition()
        self._latest: dict[str, ParamValue] = {}
        channel.subscribe("PARAM_VALUE", self._on_param_value)

    def _on_param_value(self, msg: C.MavMessage, arrival_ns: int) -> None:
        pv = ParamValue(_param_name(msg.param_id), float(msg.param_value), int(msg.param_type),
                        arrival_ns)
        with self._cond:
            self._latest[pv.name] = pv
            self._cond.notify_all()

    def latest(self, name: str) -> ParamValue | None:
        with self._cond:
            return self._latest.get(name)

    def _wait(self, name: str, after_ns: int, deadline: float,
              want: float | None) -> ParamValue | None:
        with self._cond:
            while True:
                pv = self._latest.get(name)
                if pv is not None and pv.arrival_ns >= after_ns and (
                        want is None or _same(pv.value, want)):
                    return pv
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def read(self, target: tuple[int, int], name: str, *,
             timeout_s: float = C.PARAM_READ_TIMEOUT_S,
             retries: int = C.PARAM_READ_RETRIES) -> ParamValue | None:
        """The FC's current value of `name`, or None when it never answered (unknown name:
        ArduPilot stays silent)."""
        check_param_name(name)
        for _ in range(max(1, retries)):
            t0 = time.monotonic_ns()
            self._channel.send(mavlink.MAVLink_param_request_read_message(
                target[0], target[1], name.encode("ascii"), -1))
            pv = self._wait(name, t0, time.monotonic() + timeout_s, None)
            if pv is not None:
                return pv
        return None

    def read_many(self, target: tuple[int, int], names: tuple[str, ...], **kw) -> dict[
            str, float | None]:
        out: dict[str, float | None] = {}
        for name in names:
            pv = self.read(target, name, **kw)
            out[name] = None if pv is None else pv.value
        return out

    def set(self, target: tuple[int, int], name: str, value: float, *,
            param_type: int = C.PARAM_TYPE_REAL32, timeout_s: float = C.PARAM_READ_TIMEOUT_S,
            retries: int = C.PARAM_READ_RETRIES) -> ParamValue | None:
        """PARAM_SET and wait for the PARAM_VALUE echo carrying `value`; None when no such echo
        came (the set may or may not have happened: read it back to know)."""
        check_param_name(name)
        if not math.isfinite(value):
            raise LinkConfigError(f"parameter {name} value must be finite, got {value}")
        for _ in range(max(1, retries)):
            t0 = time.monotonic_ns()
            self._channel.send(mavlink.MAVLink_param_set_message(
                target[0], target[1], name.encode("ascii"), float(value), param_type))
            pv = self._wait(name, t0, time.monotonic() + timeout_s, float(value))
            if pv is not None:
                return pv
        return None


def _same(a: float, b: float) -> bool:
    """Equal as ArduPilot stores it (PARAM_VALUE is a float32)."""
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def read_parm_file(path) -> dict[str, float]:
    """NAME VALUE lines of an ArduPilot .parm file (comments '#', blank lines; ',' also
    separates, as Mission Planner writes)."""
    from pathlib import Path

    out: dict[str, float] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 2:
            raise LinkConfigError(f"{path}:{n}: expected 'NAME VALUE', got {line!r}")
        out[check_param_name(parts[0])] = float(parts[1])
    return out
