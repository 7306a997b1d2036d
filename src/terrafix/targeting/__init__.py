"""Object localisation for the gimballed AI camera (REQUIREMENTS N11).

- `locate_target` / `TargetLocator` (locate.py): pixel + gimbal angles + zoom at a time ->
  WGS84 ground point with a 95% horizontal ellipse from the navigation covariance, attitude,
  gimbal, focal, pixel and ground-height uncertainty (linearised: geometry.py), or a
  `TargetRefusedError` with its reason.
- `PoseHistory` (history.py): the recent NavSolutions and FC attitudes, so a request at time t
  uses the pose at t.
- `LocalApiServer` (api.py): HTTP on a Unix socket (default) or loopback TCP only.
- `TrackingGeoReporter` (mavlink_tracking.py): CAMERA_TRACKING_IMAGE_STATUS + gimbal attitude
  -> CAMERA_TRACKING_GEO_STATUS to the ground station.
"""

from terrafix.targeting.errors import (
    RefusalReason,
    TargetingError,
    TargetInputError,
    TargetRefusedError,
)
from terrafix.targeting.geometry import GimbalFrame
from terrafix.targeting.history import PoseAt, PoseHistory
from terrafix.targeting.locate import (
    TargetFix,
    TargetingConfig,
    TargetLocator,
    TargetRequest,
    locate_target,
)

__all__ = [
    "GimbalFrame",
    "PoseAt",
    "PoseHistory",
    "RefusalReason",
    "TargetFix",
    "TargetInputError",
    "TargetLocator",
    "TargetRefusedError",
    "TargetRequest",
    "TargetingConfig",
    "TargetingError",
    "locate_target",
]
