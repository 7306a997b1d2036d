"""MAVLink camera tracking -> CAMERA_TRACKING_GEO_STATUS for the ground station (N11).

When the camera (or the FC on its behalf) reports active tracking with
CAMERA_TRACKING_IMAGE_STATUS, the tracked point (POINT mode) or the rectangle's centre
(RECTANGLE mode) is localised with the latest gimbal attitude (GIMBAL_DEVICE_ATTITUDE_STATUS)
and zoom (from CAMERA_FOV_STATUS's horizontal field of view), at the arrival time minus the
configured camera-to-companion latency, and sent as CAMERA_TRACKING_GEO_STATUS on the output
channel (the one the ground station hears).

Gimbal frames (the message's own rules): GIMBAL_DEVICE_FLAGS_YAW_IN_EARTH_FRAME -> yaw from
north; YAW_IN_VEHICLE_FRAME -> yaw from the vehicle heading; neither -> YAW_LOCK decides (earth
when set). In both, roll and pitch are relative to the horizon, so the aircraft's own roll and
pitch do not enter (geometry.GimbalFrame HEADING / EARTH).

Field mapping: lat/lon of the ground point, alt its terrain altitude, h_acc the 1-sigma along
the ellipse's major axis (as GPS accuracies are reported), v_acc the ground-height 1-sigma,
dist the slant range; velocities and heading NaN (not estimated). A refusal (failsafe
navigation, ray missing the ground, no gimbal attitude or zoom yet) is sent as
tracking_status ERROR with NaN accuracies, so the operator sees that the target is not
localised rather than a stale position.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

from terrafix.autopilot import constants as C
from terrafix.autopilot.channel import MavlinkChannel
from terrafix.geo.rotation import R_to_euler, quat_to_R
from terrafix.targeting.errors import TargetingError, TargetRefusedError
from terrafix.targeting.geometry import GimbalFrame
from terrafix.targeting.locate import TargetFix, TargetLocator, TargetRequest

log = logging.getLogger(__name__)
mavlink = C.DIALECT


@dataclass(frozen=True, slots=True)
class TrackingStats:
    image_status_received: int
    geo_status_sent: int
    geo_status_errors_sent: int
    last_refusal: str


def gimbal_frame_of_flags(flags: int) -> GimbalFrame:
    """The frame of GIMBAL_DEVICE_ATTITUDE_STATUS.q for its flags."""
    if flags & C.GIMBAL_FLAGS_YAW_IN_EARTH_FRAME:
        return GimbalFrame.EARTH
    if flags & C.GIMBAL_FLAGS_YAW_IN_VEHICLE_FRAME:
        return GimbalFrame.HEADING
    return GimbalFrame.EARTH if flags & C.GIMBAL_FLAGS_YAW_LOCK else GimbalFrame.HEADING


def zoom_from_hfov(hfov_deg: float, hfov_at_1x_deg: float) -> float:
    """Zoom factor of a pinhole lens whose horizontal field of view is hfov_deg."""
    return math.tan(math.radians(hfov_at_1x_deg) / 2) / math.tan(math.radians(hfov_deg) / 2)


def encode_geo_status(fix: TargetFix | None) -> C.MavMessage:
    """CAMERA_TRACKING_GEO_STATUS of a fix, or the ERROR status for None."""
    nan = math.nan
    if fix is None:
        return mavlink.MAVLink_camera_tracking_geo_status_message(
            C.CAMERA_TRACKING_STATUS_ERROR, 0, 0, nan, nan, nan, nan, nan, nan, nan, nan,
            nan, nan)
    return mavlink.MAVLink_camera_tracking_geo_status_message(
        C.CAMERA_TRACKING_STATUS_ACTIVE, round(fix.lat_deg * 1e7), round(fix.lon_deg * 1e7),
        fix.alt_m, fix.h_acc_m, fix.v_acc_m, nan, nan, nan, nan, fix.slant_range_m, nan, nan)


class TrackingGeoReporter:
    """Subscribes to the tracking inputs on `inbound`, sends geo status on `outbound`.

    Thread model: handlers run on the inbound channel's reader thread (a localisation is
    ~0.3 ms); `outbound.send` is thread-safe. `min_interval_s` limits the geo-status rate
    (a tracker may report at 30 Hz; a telemetry radio should not carry that)."""

    def __init__(self, locator: TargetLocator, inbound: MavlinkChannel,
                 outbound: MavlinkChannel | None = None, *, latency_s: float = 0.0,
                 min_interval_s: float = 0.1, attitude_max_age_s: float = 1.0) -> None:
        self._loc = locator
        self._in = inbound
        self._out = outbound or inbound
        self._latency_ns = int(latency_s * 1e9)
        self._min_interval_ns = int(min_interval_s * 1e9)
        self._att_max_age_ns = int(attitude_max_age_s * 1e9)
        self._lock = threading.Lock()
        self._gimbal: tuple[int, float, float, float, GimbalFrame] | None = None
        self._zoom: float | None = None
        self._last_sent_ns: int | None = None
        self._received = self._sent = self._errors = 0
        self._last_refusal = ""

    def start(self) -> None:
        self._in.subscribe("GIMBAL_DEVICE_ATTITUDE_STATUS", self._on_gimbal)
        self._in.subscribe("CAMERA_FOV_STATUS", self._on_fov)
        self._in.subscribe("CAMERA_TRACKING_IMAGE_STATUS", self._on_image_status)

    def stats(self) -> TrackingStats:
        with self._lock:
            return TrackingStats(self._received, self._sent, self._errors, self._last_refusal)

    def _on_gimbal(self, msg: C.MavMessage, arrival_ns: int) -> None:
        q = [float(v) for v in msg.q]
        if not all(math.isfinite(v) for v in q) or sum(v * v for v in q) < 1e-6:
            return
        roll, pitch, yaw = R_to_euler(quat_to_R(q))
        with self._lock:
            self._gimbal = (arrival_ns, roll, pitch, yaw, gimbal_frame_of_flags(int(msg.flags)))

    def _on_fov(self, msg: C.MavMessage, _arrival_ns: int) -> None:
        hfov = float(msg.hfov)
        if math.isfinite(hfov) and 0.0 < hfov < 180.0:
            z = zoom_from_hfov(hfov, self._loc.cfg.camera.hfov_at_1x_deg)
            with self._lock:
                self._zoom = max(1.0, z)

    def _on_image_status(self, msg: C.MavMessage, arrival_ns: int) -> None:
        with self._lock:
            self._received += 1
            if not int(msg.tracking_status) & C.CAMERA_TRACKING_STATUS_ACTIVE:
                return
            if (self._last_sent_ns is not None
                    and arrival_ns - self._last_sent_ns < self._min_interval_ns):
                return
            self._last_sent_ns = arrival_ns
            gimbal, zoom = self._gimbal, self._zoom
        fix: TargetFix | None = None
        try:
            fix = self._locate(msg, arrival_ns, gimbal, zoom)
        except TargetingError as exc:
            reason = exc.reason if isinstance(exc, TargetRefusedError) else "bad_request"
            with self._lock:
                self._last_refusal = reason
            log.info("tracked target not localised: %s", exc)
        self._out.send(encode_geo_status(fix))
        with self._lock:
            self._sent += 1
            self._errors += fix is None

    def _locate(self, msg: C.MavMessage, arrival_ns: int,
                gimbal: tuple[int, float, float, float, GimbalFrame] | None,
                zoom: float | None) -> TargetFix:
        if gimbal is None or arrival_ns - gimbal[0] > self._att_max_age_ns:
            raise TargetingError("no recent GIMBAL_DEVICE_ATTITUDE_STATUS")
        if zoom is None:
            raise TargetingError("no CAMERA_FOV_STATUS yet: zoom unknown")
        mode = int(msg.tracking_mode)
        if mode == C.CAMERA_TRACKING_MODE_RECTANGLE:
            x = 0.5 * (float(msg.rec_top_x) + float(msg.rec_bottom_x))
            y = 0.5 * (float(msg.rec_top_y) + float(msg.rec_bottom_y))
        else:
            x, y = float(msg.point_x), float(msg.point_y)
        if not (math.isfinite(x) and math.isfinite(y)):
            raise TargetingError(f"tracked point unknown (mode {mode}: {x}, {y})")
        cam = self._loc.cfg.camera
        _, roll, pitch, yaw, frame = gimbal
        req = TargetRequest(u_px=x * cam.width_px - 0.5, v_px=y * cam.height_px - 0.5,
                            pan_deg=math.degrees(yaw), tilt_deg=math.degrees(pitch),
                            roll_deg=math.degrees(roll), zoom=min(zoom, cam.max_zoom),
                            t_ns=arrival_ns - self._latency_ns, gimbal_frame=frame)
        return self._loc.locate(req)
