"""The targeting package's one exception family."""

from __future__ import annotations


class TargetingError(ValueError):
    """Base of every targeting error (bad input, or a request that cannot be answered)."""


class TargetInputError(TargetingError):
    """A request value outside what the model accepts (names the value and the range)."""


class TargetRefusedError(TargetingError):
    """The request is valid but no honest answer exists; `reason` is one of RefusalReason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RefusalReason:
    """Machine-readable refusal reasons (the local API and MAVLink report them)."""

    NAVIGATION_FAILSAFE = "navigation_failsafe"
    """The navigation solution at that time is the explicit no-fix (failsafe / no_fix label /
    unusable covariance): a target position from it would be a guess."""
    NO_NAVIGATION_AT_TIME = "no_navigation_at_time"
    """No solution close enough to the requested time is held (too old, or in the future)."""
    RAY_MISSES_GROUND = "ray_misses_ground"
    """The pixel's ray points at or above the horizon: it never meets the ground."""
    BEYOND_RANGE_LIMIT = "beyond_range_limit"
    """The ray meets the ground farther than the configured slant-range limit."""
    NO_TERRAIN_HEIGHT = "no_terrain_height"
    """The DEM has no height where the ray goes (outside its coverage or a void)."""
    GRAZING_RAY = "grazing_ray"
    """The ray meets the ground at more than the configured angle from the vertical: the
    linearised ellipse would not describe the error there (tan grows too fast)."""
