"""Typed navigation-integrity events, for the recorder and the ground station.

The integrity layer emits these instead of log lines: the onboard program forwards every one
to the flight data recorder and the ground-station link, so no log configuration can hide
them. `MANDATORY` marks those that must reach the ground station even under rate limiting
(spoof rejections, failsafes, GNSS trust changes: REQUIREMENTS N9/N8). `statustext()` gives
the ≤ 50-character STATUSTEXT line, `severity` its MAVLink severity name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

VISUAL_BLACKOUT_FAILSAFE = "VISUAL_BLACKOUT_FAILSAFE"


def _clip(text: str) -> str:
    return text if len(text) <= 50 else text[:49] + "…"


@dataclass(frozen=True, slots=True)
class SpoofRejected:
    """A GNSS sample refused because of spoofing evidence (FC flag, failed innovation test,
    or the trust gate being closed for those reasons). offset_m: horizontal GNSS-vs-estimate
    distance; nis: its innovation NIS (NaN when not computed); count: rejections so far."""

    t_ns: int
    reason: str
    offset_m: float
    nis: float
    count: int
    severity: ClassVar[str] = "CRITICAL"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        return _clip(f"GNSS SPOOF rejected {self.offset_m:.0f}m {self.reason}")


@dataclass(frozen=True, slots=True)
class GnssTrustChanged:
    """The GNSS trust gate opened (trusted=True) or closed."""

    t_ns: int
    trusted: bool
    reason: str
    severity: ClassVar[str] = "WARNING"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        return _clip(f"GNSS {'TRUSTED' if self.trusted else 'UNTRUSTED'}: {self.reason}")


@dataclass(frozen=True, slots=True)
class LabelChanged:
    """The source label of the output changed (SourceLabel values)."""

    t_ns: int
    old: str
    new: str
    severity: ClassVar[str] = "NOTICE"
    MANDATORY: ClassVar[bool] = False

    def statustext(self) -> str:
        return _clip(f"NAV {self.new}")


@dataclass(frozen=True, slots=True)
class VisualBlackoutFailsafe:
    """The output turned into an explicit no-fix (REQUIREMENTS N8): a visual blackout of
    `blackout_s` without trusted GNSS, a 95% radius beyond the limit, or a LOST filter."""

    t_ns: int
    reason: str
    blackout_s: float
    radius95_m: float
    status: ClassVar[str] = VISUAL_BLACKOUT_FAILSAFE
    severity: ClassVar[str] = "CRITICAL"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        return _clip(f"{VISUAL_BLACKOUT_FAILSAFE} {self.reason}")


@dataclass(frozen=True, slots=True)
class FailsafeCleared:
    t_ns: int
    reason: str
    severity: ClassVar[str] = "NOTICE"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        return _clip(f"NAV failsafe cleared: {self.reason}")


@dataclass(frozen=True, slots=True)
class HintRequested:
    """Ask the operator for a re-localisation hint: registration was attempted and failed on
    ≥ N frames over ≥ T s (reason "registration failing"), or the 95% radius passed its limit
    ("radius"). frames_without_fix: failed frames in the current run of failures;
    seconds_without_fix: since that fix (or the start). lat/lon/radius95_m: the current
    estimate, to show the operator where we think we are."""

    t_ns: int
    frames_without_fix: int
    seconds_without_fix: float
    lat_deg: float
    lon_deg: float
    radius95_m: float
    reason: str = "registration failing"
    severity: ClassVar[str] = "WARNING"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        if self.reason == "radius":
            return _clip(f"NAV need RELOC hint, r95 {self.radius95_m:.0f}m")
        return _clip(f"NAV need RELOC hint, no fix {self.seconds_without_fix:.0f}s")


@dataclass(frozen=True, slots=True)
class HintApplied:
    """Outcome of an operator hint: "fused" (agreed with the estimate, used as a prior),
    "reset" (disagreed or the filter was LOST: position re-initialised on it)."""

    t_ns: int
    mode: str
    nis: float
    radius_m: float
    severity: ClassVar[str] = "NOTICE"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        return _clip(f"RELOC hint {self.mode} r={self.radius_m:.0f}m")


@dataclass(frozen=True, slots=True)
class NoEstimate:
    """No usable estimate for `seconds` (REQUIREMENTS N10): said once per outage."""

    t_ns: int
    seconds: float
    reason: str
    severity: ClassVar[str] = "CRITICAL"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        return _clip(f"NAV no estimate {self.seconds:.0f}s: FC use IMU")


@dataclass(frozen=True, slots=True)
class EstimateResumed:
    t_ns: int
    severity: ClassVar[str] = "NOTICE"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        return "NAV estimate resumed"


@dataclass(frozen=True, slots=True)
class FilterLost:
    """The backend declared itself LOST (covariance no longer positive definite)."""

    t_ns: int
    reason: str
    severity: ClassVar[str] = "CRITICAL"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        return _clip(f"NAV LOST: {self.reason}")


@dataclass(frozen=True, slots=True)
class FilterReset:
    """The estimate was re-initialised (warm start, consistent fixes the gate kept
    rejecting, operator hint). shift_m: horizontal jump of the position."""

    t_ns: int
    reason: str
    shift_m: float
    severity: ClassVar[str] = "WARNING"
    MANDATORY: ClassVar[bool] = True

    def statustext(self) -> str:
        return _clip(f"NAV reset {self.shift_m:.0f}m: {self.reason}")


NavEvent = (SpoofRejected | GnssTrustChanged | LabelChanged | VisualBlackoutFailsafe
            | FailsafeCleared | HintRequested | HintApplied | NoEstimate | EstimateResumed
            | FilterLost | FilterReset)
