"""Operator re-localisation hints: `RELOC:<lat>,<lon>,<radius_m>`.

Why validated here and not by the estimator: a hint with a typo must be refused while the operator
is still looking at the screen, with a reason they can act on ("lat 95.0 outside [-90, 90]"),
within the 2 s acknowledgement budget (REQUIREMENTS A4). What the estimator then does with a valid
hint (search the cache around it) is its own business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from terrafix.autopilot import constants as C
from terrafix.autopilot.errors import RelocHintError


@dataclass(frozen=True, slots=True)
class RelocHint:
    """A validated hint: the aircraft is believed within radius_m of (lat, lon).

    t_ns: companion monotonic arrival time; sender: (system id, component id) of the sender.
    """

    t_ns: int
    lat_deg: float
    lon_deg: float
    radius_m: float
    source: Literal["STATUSTEXT", "COMMAND_LONG"]
    sender: tuple[int, int]


def validate_hint_values(lat_deg: float, lon_deg: float, radius_m: float) -> None:
    """Raise RelocHintError with an operator-readable reason when a value is unusable."""
    if not all(math.isfinite(v) for v in (lat_deg, lon_deg, radius_m)):
        raise RelocHintError(f"non-finite value in {lat_deg},{lon_deg},{radius_m}")
    if not -90.0 <= lat_deg <= 90.0:
        raise RelocHintError(f"lat {lat_deg:g} outside [-90,90]")
    if not -180.0 <= lon_deg <= 180.0:
        raise RelocHintError(f"lon {lon_deg:g} outside [-180,180]")
    if not C.RELOC_RADIUS_MIN_M <= radius_m <= C.RELOC_RADIUS_MAX_M:
        raise RelocHintError(
            f"radius {radius_m:g} m outside [{C.RELOC_RADIUS_MIN_M:g},{C.RELOC_RADIUS_MAX_M:g}]"
        )


def parse_reloc_text(text: str, t_ns: int, sender: tuple[int, int]) -> RelocHint:
    """Parse and validate `RELOC:<lat>,<lon>,<radius_m>` (decimal degrees, metres)."""
    m = C.RELOC_RE.match(text.strip())
    if m is None:
        raise RelocHintError("expected RELOC:<lat>,<lon>,<radius_m>")
    lat, lon, radius = float(m["lat"]), float(m["lon"]), float(m["radius"])
    validate_hint_values(lat, lon, radius)
    return RelocHint(t_ns, lat, lon, radius, "STATUSTEXT", sender)


def hint_from_command(params: tuple[float, ...], t_ns: int, sender: tuple[int, int]) -> RelocHint:
    """A hint from COMMAND_LONG CMD_RELOC_HINT: param1 radius, param5 lat, param6 lon."""
    radius, lat, lon = float(params[0]), float(params[4]), float(params[5])
    validate_hint_values(lat, lon, radius)
    return RelocHint(t_ns, lat, lon, radius, "COMMAND_LONG", sender)


def ack_text(hint: RelocHint) -> str:
    """The STATUSTEXT acknowledgement (fits 50 characters)."""
    return f"{C.RELOC_ACK_TEXT_PREFIX} {hint.lat_deg:.5f},{hint.lon_deg:.5f} r{hint.radius_m:.0f}"


def nack_text(reason: str) -> str:
    return f"{C.RELOC_NACK_TEXT_PREFIX}: {reason}"[: C.STATUSTEXT_MAX_CHARS]
