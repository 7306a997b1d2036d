"""The hook the onboard program and the replay drive: frames + solutions in, flight tiles out.

Both loops already hand every input to the `Navigator` and drain its solutions and events; they
hand the same objects to a `FlightTileFeed` (`on_input`, `on_solutions`, `on_events`). The feed
never touches the navigator and never blocks the caller:
- on the caller's thread (microseconds): keep the FC attitude history, take at most one frame
  per `min_frame_interval_s` (each tile is still seen by several), wait for the output ticks
  that bracket its capture time, interpolate the pose there, judge eligibility (`judge`), and
  put an eligible frame on a bounded queue — when the worker is behind, the frame is dropped
  and counted, the navigation never waits;
- on the worker thread: orthorectify and merge (`TileMosaic`), score finished tiles against
  the map (`change_score`) and store them in the flight store with a recorder record each.
Frames live only in memory on their way through; no raw frame is ever written (REQUIREMENTS R3).

Pose at capture: position and heading interpolated between the two output ticks around the
capture time (10 Hz ticks; the navigator's calibrated heading, NavSolution.heading_rad, the
odometry's gyro + image heading turned by its calibration against the fixes: tenths of a
degree, where the estimator's yaw is off by degrees; the estimator's yaw only when a solution
carries none), roll and pitch from the FC attitude at that time; the camera from the
extrinsics. The frame's sigma is the position's with the heading's at the footprint's far
corner (eligibility.py).
"""

from __future__ import annotations

import bisect
import logging
import math
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from terrafix.camera import CameraError, CameraPose, ground_footprint_ned
from terrafix.geo.rotation import euler_to_R_body_to_ned
from terrafix.geo.tiles import TileId
from terrafix.mapping.change import change_score
from terrafix.mapping.eligibility import EligibilityConfig, horizontal_sigma_m, judge
from terrafix.mapping.flight_store import (
    DEFAULT_FLIGHT_CAP_BYTES,
    flight_store_root,
    open_flight_store,
    put_flight_tile,
)
from terrafix.mapping.provenance import TileProvenance, iso_utc
from terrafix.mapping.tile_mosaic import FinishedTile, FrameView, TileMosaic
from terrafix.measurements import AttitudeSample, CameraFrame, NavSolution
from terrafix.navigation.navigator import FlightContext
from terrafix.recorder.schemas import doc

log = logging.getLogger(__name__)

Recorder = Callable[[str, dict[str, Any]], None]
Reference = Callable[[TileId], np.ndarray | None]


class FlightTilesConfig(BaseModel):
    """`[flight_tiles]` of the onboard config (off by default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    enabled: bool = False
    folder: Path = Path("flight-tiles")
    """Flight stores live in <folder>/<flight_id>/."""
    zoom: int = Field(19, ge=10, le=22)
    """The map's zoom (the demo map is provisioned at z19)."""
    cap_bytes: int = Field(DEFAULT_FLIGHT_CAP_BYTES, ge=1 << 20)
    min_frame_interval_s: float = Field(1.0, ge=0.0)
    min_coverage: float = Field(0.99, gt=0.0, le=1.0)
    idle_frames: int = Field(3, ge=1)
    queue_frames: int = Field(4, ge=1, le=64)
    align_to_map: bool = True
    """Line each frame up with the map's tiles before merging it, within 3 sigma of its pose
    (`TileMosaic._aligned`); needs the map's tiles (a reference)."""
    drop_when_busy: bool = True
    """Live: a frame the worker has no room for is dropped (counted), the navigation never
    waits. A replay sets False: it is not real time, and waiting keeps it repeatable."""
    eligibility: EligibilityConfig = EligibilityConfig()


@dataclass(slots=True)
class FeedStats:
    frames_offered: int = 0
    frames_judged: int = 0
    frames_eligible: int = 0
    frames_low_trust: int = 0
    frames_dropped_busy: int = 0
    ineligible: dict[str, int] = field(default_factory=dict)
    frames_aligned: int = 0
    tiles_stored: int = 0
    tiles_low_trust: int = 0
    tiles_incomplete: int = 0
    tiles_dropped_cap: int = 0
    bytes_stored: int = 0
    worker_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FeedSummaryRecord:
    """The flight's in-flight tiles, recorded once when the feed closes (`mapping/summary`):
    the `FeedStats` counts, field for field (a key they gain must be declared here too)."""

    frames_offered: int = field(metadata=doc("camera frames offered to the feed"))
    frames_judged: int = field(metadata=doc("frames judged against the output's pose"))
    frames_eligible: int = field(metadata=doc("frames eligible for tiles (queued to mosaic)"))
    frames_low_trust: int = field(metadata=doc("eligible frames of low trust"))
    frames_dropped_busy: int = field(metadata=doc("frames dropped: the worker had no room"))
    ineligible: dict[str, int] = field(metadata=doc("reason -> frames judged ineligible"))
    frames_aligned: int = field(metadata=doc("frames aligned to the map's tiles"))
    tiles_stored: int = field(metadata=doc("tiles written to the flight store"))
    tiles_low_trust: int = field(metadata=doc("stored tiles of low trust"))
    tiles_incomplete: int = field(metadata=doc("tiles left incomplete at the end"))
    tiles_dropped_cap: int = field(metadata=doc("tiles dropped: the store's cap was reached"))
    bytes_stored: int = field(metadata=doc("bytes of tiles stored", unit="bytes"))
    worker_errors: int = field(metadata=doc("frames the worker failed on (skipped)"))


@dataclass(frozen=True, slots=True)
class FlightTileRecord:
    """One tile stored in the flight store (`mapping/tile`, by `put_flight_tile`): where, its
    JPEG's hash and size, its voting status and its provenance (`TileProvenance.to_dict`)."""

    tile: str = field(metadata=doc("z/x/y (XYZ scheme)"))
    sha256: str = field(metadata=doc("hex SHA-256 of the stored JPEG"))
    size: int = field(metadata=doc("JPEG size", unit="bytes"))
    status: str = field(metadata=doc("voting status the tile was stored with"))
    flight_id: str = field(metadata=doc("flight that captured the tile"))
    captured: str = field(metadata=doc("capture time of the newest frame used (UTC ISO)"))
    sigma_m: float = field(metadata=doc("largest horizontal 1-sigma of the frames' poses"))
    trust: str = field(metadata=doc("trust of the tile", choices=("normal", "low")))
    frames: tuple[str, ...] = field(metadata=doc("capture times (UTC ISO) of the frames merged"))
    change_score: float | None = field(metadata=doc(
        "0 (same as the map's tile) .. 1 (all changed); null without a map tile", unit=""))


@dataclass(frozen=True, slots=True)
class TileDroppedRecord:
    """A tile not stored, or evicted, for room in the flight store (`mapping/tile_dropped`)."""

    tile: str = field(metadata=doc("z/x/y (XYZ scheme)"))
    reason: str = field(metadata=doc("why (the flight store's cap)"))


FEED_RECORD_TYPES: dict[str, type] = {"mapping/summary": FeedSummaryRecord,
                                      "mapping/tile": FlightTileRecord,
                                      "mapping/tile_dropped": TileDroppedRecord}
"""Topic -> record class of what the feed hands `on_record` (schema: `dataclass_schema`)."""


class FlightTileFeed:
    """See module docstring. utc_of: input time (ns) -> UTC datetime of that instant.
    reference: the cached map tile for a z/x/y (None when the map has none), for the change
    score and the alignment to the map. on_record: (topic, dict) into the flight recorder."""

    def __init__(self, config: FlightTilesConfig, flight_id: str, context: FlightContext,
                 utc_of: Callable[[int], datetime], *, reference: Reference | None = None,
                 on_record: Recorder | None = None) -> None:
        self.config = config
        self.flight_id = flight_id
        self.context = context
        self._utc_of = utc_of
        self._reference = reference
        self._record = on_record or (lambda _t, _d: None)
        self.root = flight_store_root(config.folder, flight_id)
        self.store = open_flight_store(self.root, cap_bytes=config.cap_bytes)
        self.mosaic = TileMosaic(context.frame, context.ground_alt_m, context.intrinsics,
                                 config.zoom, min_coverage=config.min_coverage,
                                 idle_frames=config.idle_frames,
                                 reference=reference if config.align_to_map else None)
        self.stats = FeedStats()
        self._att_t: deque[int] = deque(maxlen=400)
        self._att: deque[tuple[float, float]] = deque(maxlen=400)
        self._sols: deque[NavSolution] = deque(maxlen=4096)
        self._waiting: deque[CameraFrame] = deque()
        self._t_last_taken_ns: int | None = None
        self._t_last_spoof_ns: int | None = None
        self._queue: queue.Queue[FrameView | None] = queue.Queue(maxsize=config.queue_frames)
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="flight-tiles", daemon=True)
        self._worker.start()
        self._closed = False

    # --- caller's thread -----------------------------------------------------------------
    def on_input(self, sample: object) -> None:
        if isinstance(sample, AttitudeSample):
            self._att_t.append(sample.t_ns)
            self._att.append((sample.roll_rad, sample.pitch_rad))
        elif isinstance(sample, CameraFrame):
            self.stats.frames_offered += 1
            last = self._t_last_taken_ns
            if last is None or (sample.t_ns - last) >= self.config.min_frame_interval_s * 1e9:
                self._t_last_taken_ns = sample.t_ns
                self._waiting.append(sample)
                while len(self._waiting) > 32:  # solutions stopped coming: keep the newest
                    self._waiting.popleft()

    def on_events(self, events: list[Any]) -> None:
        for ev in events:
            if type(ev).__name__ == "SpoofRejected":
                self._t_last_spoof_ns = max(self._t_last_spoof_ns or ev.t_ns, ev.t_ns)

    def on_solutions(self, solutions: list[NavSolution]) -> None:
        self._sols.extend(solutions)
        while self._waiting and self._sols and self._sols[-1].t_ns >= self._waiting[0].t_ns:
            self._resolve(self._waiting.popleft())
        # ticks older than the oldest waiting frame and than the last 5 s are not needed (a
        # frame may come after the ticks around its capture time: keep those)
        if self._sols:
            keep_from = self._sols[-1].t_ns - 5 * 10**9
            if self._waiting:
                keep_from = min(keep_from, self._waiting[0].t_ns)
            while len(self._sols) > 2 and self._sols[1].t_ns <= keep_from:
                self._sols.popleft()

    def _resolve(self, frame: CameraFrame) -> None:
        sol = self._solution_at(frame.t_ns)
        self.stats.frames_judged += 1
        if sol is None:
            self._ineligible("no_pose")
            return
        trust, reason = judge(sol, self._t_last_spoof_ns, self.config.eligibility)
        if trust is None:
            self._ineligible(reason)
            return
        att = self._roll_pitch_at(frame.t_ns)
        if att is None:
            self._ineligible("no_attitude")
            return
        ctx = self.context
        has_heading = math.isfinite(sol.heading_rad) and math.isfinite(sol.heading_var_rad2)
        yaw = sol.heading_rad if has_heading else sol.yaw_rad
        sigma_yaw = math.sqrt(max(sol.heading_var_rad2, 0.0)) if has_heading \
            else math.radians(self.config.eligibility.unknown_heading_sigma_deg)
        R_body_to_ned = euler_to_R_body_to_ned(att[0], att[1], yaw)
        p_body = ctx.frame.lla_to_ned(sol.lat_deg, sol.lon_deg, sol.alt_m)
        pose = CameraPose.from_body(p_body, R_body_to_ned, ctx.extrinsics)
        heading_sigma_m = sigma_yaw * self._footprint_radius_m(pose)
        trust, reason = judge(sol, self._t_last_spoof_ns, self.config.eligibility,
                              heading_sigma_m)
        if trust is None:
            self._ineligible(reason)
            return
        view = FrameView(frame.t_ns, self._utc_of(frame.t_ns), frame.image, pose.p_cam_ned,
                         pose.R_cam_to_ned, math.hypot(horizontal_sigma_m(sol), heading_sigma_m))
        try:
            self._queue.put(view, block=not self.config.drop_when_busy)
        except queue.Full:
            self.stats.frames_dropped_busy += 1
            return
        self.stats.frames_eligible += 1
        self.stats.frames_low_trust += int(trust == "low")

    def _footprint_radius_m(self, pose: CameraPose) -> float:
        """Horizontal distance (m) from the camera to the farthest footprint corner: how far
        a heading error moves the frame's worst tile, per radian. inf when a corner sees the
        sky (the mosaic paints nothing of such a frame anyway)."""
        try:
            corners = ground_footprint_ned(pose, self.context.intrinsics,
                                           self.mosaic.ground_down_m)
        except CameraError:
            return math.inf
        return float(np.max(np.linalg.norm(corners - pose.p_cam_ned[:2], axis=1)))

    def _ineligible(self, reason: str) -> None:
        self.stats.ineligible[reason] = self.stats.ineligible.get(reason, 0) + 1

    def _solution_at(self, t_ns: int) -> NavSolution | None:
        """The output interpolated to t_ns between the ticks around it (label, flags and
        covariance of the later tick, the more conservative for a growing sigma)."""
        sols = self._sols
        nxt = next((s for s in sols if s.t_ns >= t_ns), None)
        prev = next((s for s in reversed(sols) if s.t_ns <= t_ns), None)
        if nxt is None or prev is None:
            return None
        if nxt.t_ns == prev.t_ns:
            return nxt
        a = (t_ns - prev.t_ns) / (nxt.t_ns - prev.t_ns)
        dyaw = math.remainder(nxt.yaw_rad - prev.yaw_rad, 2.0 * math.pi)
        dheading = math.remainder(nxt.heading_rad - prev.heading_rad, 2.0 * math.pi)
        cov = np.maximum(np.asarray(prev.cov_p_ned_m2), np.asarray(nxt.cov_p_ned_m2))
        return NavSolution(t_ns, prev.lat_deg + a * (nxt.lat_deg - prev.lat_deg),
                           prev.lon_deg + a * (nxt.lon_deg - prev.lon_deg),
                           prev.alt_m + a * (nxt.alt_m - prev.alt_m), nxt.v_ned_mps, cov,
                           nxt.cov_v_ned_m2s2, prev.yaw_rad + a * dyaw, nxt.label,
                           nxt.anchor_age_s, nxt.gnss_trusted,
                           prev.failsafe or nxt.failsafe,
                           heading_rad=prev.heading_rad + a * dheading,
                           heading_var_rad2=max(prev.heading_var_rad2, nxt.heading_var_rad2)
                           if math.isfinite(prev.heading_var_rad2 + nxt.heading_var_rad2)
                           else math.nan)

    def _roll_pitch_at(self, t_ns: int) -> tuple[float, float] | None:
        ts = self._att_t
        if not ts:
            return None
        i = bisect.bisect_left(ts, t_ns)
        if i == 0:
            return self._att[0] if ts[0] - t_ns < 2e8 else None
        if i == len(ts):
            return self._att[-1] if t_ns - ts[-1] < 2e8 else None
        t0, t1 = ts[i - 1], ts[i]
        a = (t_ns - t0) / max(t1 - t0, 1)
        (r0, p0), (r1, p1) = self._att[i - 1], self._att[i]
        return r0 + a * (r1 - r0), p0 + a * (p1 - p0)

    # --- worker --------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            view = self._queue.get()
            try:
                finished = self.mosaic.flush() if view is None else self.mosaic.add(view)
                for tile in finished:
                    self._store(tile)
                with self._lock:
                    self.stats.tiles_incomplete = self.mosaic.incomplete
                    self.stats.frames_aligned = self.mosaic.frames_aligned
            except Exception:  # a bad frame must not end the flight's tiles
                self.stats.worker_errors += 1
                log.exception("flight tiles: frame at t=%s failed", None if view is None
                              else view.t_ns)
            if view is None:
                return

    def _store(self, tile: FinishedTile) -> None:
        ref = None
        if self._reference is not None:
            try:
                ref = self._reference(tile.tile)
            except Exception as exc:  # the map is only a comparison here
                log.debug("no reference for %s: %s", tile.tile, exc)
        trust = "normal" if tile.sigma_m <= self.config.eligibility.normal_sigma_m else "low"
        prov = TileProvenance(self.flight_id, tile.captured_utc, tile.sigma_m, trust,
                              tuple(iso_utc(t) for t in tile.frames),
                              None if ref is None else change_score(tile.image, ref))
        out = put_flight_tile(self.store, tile.tile, tile.image, prov, self._record)
        with self._lock:
            if out.stored:
                self.stats.tiles_stored += 1
                self.stats.tiles_low_trust += int(trust == "low")
                self.stats.bytes_stored += out.size_bytes
            self.stats.tiles_dropped_cap += len(out.dropped)

    def close(self) -> FeedStats:
        """Resolve what can be, finish every open tile, stop the worker, close the store."""
        if self._closed:
            return self.stats
        self._closed = True
        while self._waiting and self._sols and self._sols[-1].t_ns >= self._waiting[0].t_ns:
            self._resolve(self._waiting.popleft())
        for _ in self._waiting:  # no output tick after them: no pose to judge
            self.stats.frames_judged += 1
            self._ineligible("no_pose")
        self._queue.put(None)
        self._worker.join()
        self.store.close()
        log.info("flight tiles: %s in %s", self.stats.as_dict(), self.root)
        self._record("mapping/summary", self.stats.as_dict())
        return self.stats
