"""The onboard program: `terrafix fly --config FILE`.

The composition root of the live system. It wires a frame source, the flight-controller link,
the ground station, the navigation core (`Navigator`: odometry, registration, estimator,
integrity) and the flight data recorder, and runs until the frames end, the FC reports the
flight over, or it is interrupted.

Lifecycle (REQUIREMENTS A5, T5, T6, A2, N10):
1. Every config value in force is logged and recorded (and hashed into the recorder header).
2. Take-off load, timed: the tile cache is opened read-only and its signed manifest verified,
   the visual positioner opens its map features and warms its models, the FC link is opened,
   the MAVLink signing handshake done and the FC's GNSS-switch parameters read on the signed
   link (refused when a switch would lose the position). Any failure refuses take-off (exit
   code 2).
3. Flight: link callbacks and the camera thread put samples into one inbox; the navigation
   thread releases them in time order after a short hold (frames reach us after their capture
   time, by the camera's readout delay) and feeds the `Navigator`. Its latest solution goes to
   the GPS_INPUT sender (which keeps its own fixed rate and extrapolates between solutions) and
   the ground-station status; integrity events go to the recorder and the ground station
   (spoof rejections through the channel that cannot be silenced); GNSS trust changes switch
   ArduPilot between the real receiver (GPS1) and terrafix (GPS2); operator hints (RELOC) go
   into the navigator as priors.
4. After the flight, the recorder footer is written (a clean footer gates the upload) and a
   summary (GPS_INPUT output statistics, capture→output latency, frame drops) is written.

No network listener is opened: the FC link is a client (`udpout:`/`tcp:`/serial) and nothing
else talks to the network (the optional targeting API listens on a Unix socket or loopback
only: targeting/api.py). Restart in flight: when the FC reports itself armed and in the air
at start-up, the navigator is initialised from the FC's own position (GLOBAL_POSITION_INT).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import math
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from terrafix.app.console import close_file_log, config_summary_lines, log_to_file
from terrafix.app.flight_telemetry import FlightCounters, FlightTelemetry
from terrafix.app.frame_sources import (
    DatasetFrameSource,
    FrameSource,
    SimulatedCameraSource,
    VideoCaptureSource,
)
from terrafix.app.preflight import PreflightError, verify_flight_cache
from terrafix.autopilot import (
    ArduPilotLink,
    ArduPilotLinkConfig,
    AutopilotError,
    FcCallbacks,
    GroundStation,
    GroundStationConfig,
    Px4Link,
    Px4OutputConfig,
)
from terrafix.autopilot.constants import MSG_SIM_STATE
from terrafix.camera import Extrinsics, Intrinsics, NavCameraConfig
from terrafix.config_files import load_toml_config, validate_config
from terrafix.eval.records import SOLUTION_SCHEMA, JsonlWriter, solution_record
from terrafix.geo import LocalFrame
from terrafix.mapping.tile_feed import FEED_RECORD_TYPES, FlightTileFeed, FlightTilesConfig
from terrafix.measurements import CameraFrame, FrameCaptured, GnssSample, NavSolution
from terrafix.navigation.navigator import (
    FRAME_REPORT_SCHEMA,
    NAV_EVENT_SCHEMA,
    FlightContext,
    Navigator,
    NavigatorConfig,
    NavigatorError,
    OperatorHint,
    event_record,
)
from terrafix.navigation.registration_runner import ThreadedRegistration
from terrafix.recorder import FlightRecorder
from terrafix.recorder.schemas import dataclass_schema, model_schema, record_from
from terrafix.targeting.onboard import OnboardTargeting, TargetingSection
from terrafix.tiles.errors import TileCacheError
from terrafix.tiles.private_keys import find_private_keys
from terrafix.upload.config import UploadConfig

log = logging.getLogger(__name__)


class FlyError(RuntimeError):
    """The onboard program cannot start (bad config) or must refuse take-off."""


class _Cfg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CameraSection(_Cfg):
    source: Literal["simulator", "device", "folder", "sitl"] = "simulator"
    """simulator: the simulated FC-triggered camera over `dataset`; device: OpenCV
    VideoCapture (`device`: index, path or GStreamer pipeline); folder: recorded frames;
    sitl: flying ArduPilot SITL, frames rendered from the real imagery (`sitl_imagery`) at
    SITL's true pose (SIM_STATE, asked for on the FC link), triggered at `sitl_rate_hz` on
    the FC clock (the take-off section gives the origin and the ground altitude)."""
    sitl_imagery: Literal["wv3", "wv2"] = "wv3"
    """Which dgsamples image the SITL camera sees (the map should be the other one)."""
    sitl_rate_hz: float = Field(3.0, gt=0.0, le=30.0)
    device: str = "0"
    dataset: Path | None = None
    """Simulator dataset or recorded-flight folder (frames.csv + images + meta.json)."""
    readout_s: float = Field(0.06, ge=0.0, le=1.0)
    hold_s: float = Field(0.04, ge=0.0, le=2.0)
    """Samples are released to the navigator this long after their time (plus readout_s for
    a camera that is not triggered by the FC), so that samples from different threads are
    fused in time order, frame capture announcements included. A frame's image may come
    later than that: it is fused at its announced capture time."""
    max_frame_lag_s: float = Field(0.6, gt=0.0, le=10.0)
    """A frame older than this when the navigator reaches it is dropped (counted): when the
    vision work cannot keep up, the newest frames matter, not a growing backlog."""


class TakeoffSection(_Cfg):
    """The operator's take-off origin and the flat-ground altitude (ignored in simulator mode,
    where the dataset's pre-flight data provide them)."""

    lat_deg: float | None = Field(None, ge=-90, le=90)
    lon_deg: float | None = Field(None, ge=-180, le=180)
    alt_m: float | None = None
    ground_alt_m: float | None = None


class MapSection(_Cfg):
    cache: Path = Path("build/cache-demo")
    manifest: Path | None = None
    """Signed flight manifest (default: `<cache>/manifest.json`)."""
    signer_fingerprint: str | None = Field(None, pattern=r"^[0-9a-fA-F]{16,64}$")
    """Pinned provisioning key: fingerprint (hex, as `terrafix tiles keygen` prints it) of
    the key that must have signed the manifest. Pin this or `public_key`; a key found in the
    cache is never trusted."""
    public_key: Path | None = None
    """Pinned provisioning key as a PEM file kept outside the cache."""
    require_manifest: bool = True


class RecorderSection(_Cfg):
    folder: Path = Path("flights")


class FlyConfig(_Cfg):
    flight_id: str = ""
    output: Path = Path("out/fly")
    camera: CameraSection = CameraSection()
    takeoff: TakeoffSection = TakeoffSection()
    map: MapSection = MapSection()
    autopilot: ArduPilotLinkConfig = ArduPilotLinkConfig(connection="udpout:127.0.0.1:14551")
    autopilot_firmware: Literal["ardupilot", "px4"] = "ardupilot"
    """ardupilot: GPS_INPUT; px4: GLOBAL_POSITION_SENSOR for EKF2's aux global position (the
    `autopilot` section's connection, signing and rate apply to both)."""
    px4: Px4OutputConfig = Px4OutputConfig()
    targeting: TargetingSection = TargetingSection()
    wait_for_fc_s: float = Field(30.0, gt=0.0)
    set_baro_reference: bool = False
    """Set the barometer's sea-level reference from the take-off altitude at start-up (only
    on the ground at the take-off point, after the FC's first SCALED_PRESSURE); otherwise the
    link's configured QNH stands."""
    ground_station: GroundStationConfig = GroundStationConfig()
    navigation: NavigatorConfig = NavigatorConfig()
    recorder: RecorderSection = RecorderSection()
    flight_tiles: FlightTilesConfig = FlightTilesConfig()
    """In-flight tiles into a flight store of their own (off by default)."""
    upload: UploadConfig = UploadConfig()
    upload_after_landing: bool = False
    """After the flight, once the FC says ON_GROUND and disarmed and the recorder footer is
    clean, upload the flight's tiles to `upload.url` (needs flight_tiles.enabled)."""
    upload_gate_wait_s: float = Field(10.0, gt=0.0, le=120.0)
    """How long the end of the flight waits for the FC's next landed-state report."""

    @staticmethod
    def load(path: str | Path) -> FlyConfig:
        return load_toml_config(FlyConfig, path, "config", FlyError)

    @staticmethod
    def from_dict(data: dict[str, Any], source: str = "<dict>") -> FlyConfig:
        return validate_config(FlyConfig, data, source, "config", FlyError)


def _pinned_signer(section: MapSection):
    """The provisioning key the manifest must be signed by, from the onboard config."""
    if section.public_key is not None:
        from terrafix.tiles.manifest import fingerprint, load_public_key

        key = load_public_key(section.public_key)
        if section.signer_fingerprint and not fingerprint(key).startswith(
                section.signer_fingerprint.lower()):
            raise FlyError(f"take-off refused: map.public_key {section.public_key} has "
                           f"fingerprint {fingerprint(key)}, not the pinned "
                           f"{section.signer_fingerprint}")
        return key
    if section.signer_fingerprint:
        return section.signer_fingerprint.lower()
    raise FlyError("take-off refused: no provisioning key pinned (set map.signer_fingerprint "
                   "or map.public_key in the onboard config)")


def log_config(cfg: FlyConfig) -> str:
    """Log every value in force, one line per key, to the log file (the console gets a
    short summary; both with -v); returns the config hash (sha256 of the canonical JSON)
    that goes into the recorder header."""
    flat = _flatten(json.loads(cfg.model_dump_json()))
    config_log = logging.getLogger("terrafix.config")
    for key, value in flat:
        config_log.info("config %s = %s", key, value)
    for line in config_summary_lines(cfg):
        log.info("%s", line)
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out: list[tuple[str, Any]] = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, d)]


@dataclass(frozen=True, slots=True)
class FlightSummary:
    """What the run produced (written to `summary.json`)."""

    flight_id: str
    takeoff_load_s: float
    frames_seen: int
    frames_processed: int
    frames_dropped: int
    frame_drop_rate: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_max_ms: float
    latency_registered_p95_ms: float
    """Frames that were matched against the map: capture -> their fix in a GPS_INPUT."""
    latency_odometry_p95_ms: float
    """Frames with odometry only: capture -> their odometry in a GPS_INPUT."""
    latency_stage_p50_ms: dict[str, float]
    """Median ms from the previous stage to each of STAGES (capture first)."""
    registrations_skipped_busy: int
    late_samples_dropped: int
    """Sensor samples that reached the inbox after newer ones had been fused (dropped)."""
    gps_input_sent: int
    solutions: int
    events: int
    recorder_clean: bool
    fc_clock_offset_ns: int | None


def _radius95_m(sol: NavSolution | None) -> float:
    """95% horizontal radius of a solution (m), NaN without one."""
    if sol is None:
        return math.nan
    cov = np.asarray(sol.cov_p_ned_m2, dtype=np.float64)[:2, :2]
    if not np.all(np.isfinite(cov)):
        return math.nan
    # chi2(2 dof, 95%) = 5.991 (no scipy import on the navigation thread)
    return float(math.sqrt(5.991464547107979 * max(float(np.linalg.eigvalsh(cov)[-1]), 0.0)))


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else math.nan


STAGES = ("arrived", "fed", "done", "published", "sent")
"""A frame's way to the autopilot: image in the inbox, handed to the navigator, reported by
it (odometry and any fix fused), first solution published after that, first GPS_INPUT sent
after that publication."""


class _LatencyMeter:
    """Capture -> GPS_INPUT latency of each frame's contribution (REQUIREMENTS A1), by stage.

    A frame is done when the navigator reports it (odometry fused, and for a registered frame
    its fix fused too). Every solution the navigator computes after that includes it, so the
    first solution published after the report is the first to carry it, and the first
    GPS_INPUT the sender makes after that publication is the first to send it: the latency
    is that send time minus the capture time. (The loop polls the sender's last send time,
    so when two sends fall between polls the later one is used: it never underestimates.)
    """

    def __init__(self, on_frame: Any = None) -> None:
        self._on_frame = on_frame
        """(index, capture_ns, registered, total_ms, stage_ms) per frame (the recorder)."""
        self._stamps: dict[int, dict[str, int]] = {}
        self._done: list[int] = []
        self._published: list[int] = []
        self._registered: dict[int, bool] = {}
        self.all_ms: list[float] = []
        self.registered_ms: list[float] = []
        self.odometry_ms: list[float] = []
        self.stage_ms: dict[str, list[float]] = {k: [] for k in STAGES}

    def stamp(self, index: int, capture_ns: int, stage: str, now_ns: int) -> None:
        self._stamps.setdefault(index, {"capture": capture_ns})[stage] = now_ns

    def frame_done(self, index: int, capture_ns: int, registered: bool, now_ns: int) -> None:
        self.stamp(index, capture_ns, "done", now_ns)
        self._registered[index] = registered
        self._done.append(index)

    def published(self, now_ns: int) -> None:
        for i in self._done:
            self._stamps[i]["published"] = now_ns
        self._published += self._done
        self._done.clear()

    def sent(self, last_sent_ns: int | None) -> None:
        if last_sent_ns is None or not self._published:
            return
        keep = []
        for i in self._published:
            st = self._stamps[i]
            if last_sent_ns < st["published"]:
                keep.append(i)
                continue
            st["sent"] = last_sent_ns
            ms = (last_sent_ns - st["capture"]) / 1e6
            self.all_ms.append(ms)
            registered = self._registered.pop(i)
            (self.registered_ms if registered else self.odometry_ms).append(ms)
            prev = st["capture"]
            stages = {}
            for k in STAGES:
                if k in st:
                    stages[k] = (st[k] - prev) / 1e6
                    self.stage_ms[k].append(stages[k])
                    prev = st[k]
            if self._on_frame is not None:
                self._on_frame(i, st["capture"], registered, ms, stages)
            del self._stamps[i]
        self._published = keep

    def stage_medians_ms(self) -> dict[str, float]:
        """Median time spent reaching each stage from the previous one (ms)."""
        return {k: float(np.median(v)) if v else math.nan for k, v in self.stage_ms.items()}


class _Inbox:
    """Samples from every thread, released in time order after `hold_ns`."""

    def __init__(self, hold_ns: int) -> None:
        self._q: queue.Queue[tuple[int, int, object]] = queue.Queue()
        self._heap: list[tuple[int, int, object]] = []
        self._seq = itertools.count()
        self._hold_ns = hold_ns

    @property
    def hold_ns(self) -> int:
        return self._hold_ns

    def put(self, t_ns: int, item: object) -> None:
        self._q.put((t_ns, next(self._seq), item))

    def release(self, now_ns: int, wait_s: float, flush: bool = False) -> list[object]:
        try:
            self._push(self._q.get(timeout=wait_s))
            while True:
                self._push(self._q.get_nowait())
        except queue.Empty:
            pass
        out = []
        while self._heap and (flush or self._heap[0][0] <= now_ns - self._hold_ns):
            out.append(heapq.heappop(self._heap)[2])
        return out

    def _push(self, entry: tuple[int, int, object]) -> None:
        heapq.heappush(self._heap, entry)


def _sim_context(dataset: Path) -> tuple[FlightContext, NavCameraConfig, dict[str, Any]]:
    from terrafix.app.replay import flight_context, nav_camera
    from terrafix.sim.dataset import load_dataset

    ds = load_dataset(dataset)
    return flight_context(ds), nav_camera(ds), ds.meta


SITL_TRUTH_RATE_HZ = 50.0
"""SIM_STATE (SITL's true state) rate for the SITL camera's pose interpolation."""


def _config_context(cfg: FlyConfig) -> tuple[FlightContext, NavCameraConfig]:
    t = cfg.takeoff
    if None in (t.lat_deg, t.lon_deg, t.alt_m, t.ground_alt_m):
        raise FlyError("takeoff.lat_deg, lon_deg, alt_m and ground_alt_m are required unless "
                       "camera.source = 'simulator'")
    cam = NavCameraConfig()
    K: Intrinsics = cam.processing_intrinsics()
    ext: Extrinsics = cam.extrinsics
    return FlightContext(LocalFrame(t.lat_deg, t.lon_deg, t.alt_m), float(t.ground_alt_m),
                         K, ext), cam


class OnboardProgram:
    """One flight of the onboard program (see the module docstring)."""

    def __init__(self, cfg: FlyConfig, *, on_event: Callable[[object], None] | None = None,
                 on_gnss_switch: Callable[[object], None] | None = None) -> None:
        """on_event: every navigation event as it is forwarded (a harness watching the gate);
        on_gnss_switch: every GNSS switch the link made, with ArduPilot's answer (link
        thread)."""
        self.cfg = cfg
        self._on_event_hook = on_event
        self._on_gnss_switch_hook = on_gnss_switch
        self.flight_id = cfg.flight_id or time.strftime("flight-%Y%m%dT%H%M%SZ", time.gmtime())
        self.out = Path(cfg.output)
        self.out.mkdir(parents=True, exist_ok=True)
        # a triggered (simulator) camera announces the capture at the trigger; a device or
        # a folder only after the readout: the hold must cover that too
        hold_s = cfg.camera.hold_s + (0.0 if cfg.camera.source in ("simulator", "sitl")
                                      else cfg.camera.readout_s)
        self.inbox = _Inbox(int(hold_s * 1e9))
        self._stop = threading.Event()
        self._frames_seen = 0
        self.tiles: FlightTileFeed | None = None
        self.upload_summary: dict[str, Any] | None = None
        self._landed = False
        self._fc_position = None
        self._arrived_ns: dict[int, int] = {}

    # --- take-off --------------------------------------------------------------------------
    def takeoff(self) -> float:
        """Everything before the first sample; returns the take-off load time (s)."""
        self._log_file = log_to_file(self.out / "fly.log")
        try:
            return self._takeoff()
        except BaseException:
            close_file_log(self._log_file)
            raise

    def _takeoff(self) -> float:
        cfg = self.cfg
        config_hash = log_config(cfg)
        t0 = time.perf_counter()
        if cfg.camera.source == "simulator":
            if cfg.camera.dataset is None:
                raise FlyError("camera.dataset is required with camera.source = 'simulator'")
            self.context, self.nav_camera, _meta = _sim_context(cfg.camera.dataset)
        else:
            self.context, self.nav_camera = _config_context(cfg)
        self.recorder = FlightRecorder(
            Path(cfg.recorder.folder) / self.flight_id, flight_id=self.flight_id,
            config_hash=config_hash,
            on_disk_full=lambda msg: self._gcs_text("CRITICAL", f"FDR DISK FULL {msg}"[:50]))
        self._rec_solution = self.recorder.producer("nav/solution", SOLUTION_SCHEMA)
        self._rec_event = self.recorder.producer("nav/event", NAV_EVENT_SCHEMA)
        self._rec_frame = self.recorder.producer("nav/frame", FRAME_REPORT_SCHEMA)
        self._rec_config = self.recorder.producer("config", model_schema(FlyConfig))
        self._rec_config.record(time.monotonic_ns(), json.loads(cfg.model_dump_json()))
        self.telemetry = FlightTelemetry(self.recorder, total_frames=None,
                                         summary_type=FlightSummary)
        logging.getLogger().addHandler(self.recorder.log_handler())
        # map: read-only, verified
        store = None
        if cfg.map.require_manifest:
            try:
                store = verify_flight_cache(
                    cfg.map.cache, cfg.map.manifest, pinned=_pinned_signer(cfg.map),
                    vps=cfg.navigation.vps,
                    models_required=cfg.navigation.registration.enabled)
            except (PreflightError, TileCacheError) as exc:
                raise FlyError(str(exc)) from None
        else:
            leaked = find_private_keys(cfg.map.cache)
            if leaked:
                raise FlyError(f"take-off refused: private key inside the cache: {leaked[0]}")
        self._store = store
        positioner = None
        if cfg.navigation.registration.enabled:
            from terrafix.vision.registration import VisualPositioner

            vps = cfg.navigation.vps.model_copy(update={"ground_alt_m":
                                                        self.context.ground_alt_m})
            positioner = VisualPositioner.open(cfg.map.cache, vps, self.nav_camera)
        # matches run on their own thread: the IMU, odometry and GPS_INPUT keep their pace
        # while a frame is matched; its fix is fused at its capture time when it is back
        runner = ThreadedRegistration(positioner.locate) if positioner is not None else None
        self.navigator = Navigator(cfg.navigation, self.context, positioner, runner)
        self.tiles = self._tile_feed()
        # FC link with signing
        self.targeting = (OnboardTargeting(cfg.targeting, self.context.frame,
                                           self.context.ground_alt_m)
                          if cfg.targeting.enabled else None)
        cb = FcCallbacks(
            on_imu=lambda s: self.inbox.put(s.t_ns, s),
            on_attitude=self._on_attitude,
            on_baro=lambda s: self.inbox.put(s.t_ns, s),
            on_gnss=self._on_gnss,
            on_fc_position=self._on_fc_position,
            on_landed_state=self._on_landed,
            on_output_sent=lambda report, t_ns: self.telemetry.output_sent(report, t_ns),
            on_gnss_switch=self._on_gnss_switch_hook)
        self.link = (Px4Link(cfg.autopilot, cb, px4=cfg.px4) if cfg.autopilot_firmware == "px4"
                     else ArduPilotLink(cfg.autopilot, cb))
        self.link.open()
        if not self.link.wait_for_fc(cfg.wait_for_fc_s):
            raise FlyError(f"take-off refused: no flight controller on "
                           f"{cfg.autopilot.connection} within {cfg.wait_for_fc_s} s")
        try:
            self.link.establish_signing()
            if cfg.autopilot.check_fc_parameters:
                # on the signed link: the parameters that decide whether a GNSS switch keeps
                # the position (docs/ardupilot/terrafix.parm)
                self.link.check_switch_parameters()
        except AutopilotError as exc:
            msg = str(exc)
            raise FlyError(msg if msg.startswith("take-off refused") else
                           f"take-off refused: {msg}") from None
        rates = dict(cfg.autopilot.telemetry_rates_hz)
        if cfg.camera.source == "sitl":
            rates[MSG_SIM_STATE] = SITL_TRUTH_RATE_HZ
            self._sitl_truth = self._subscribe_sitl_truth()
        self.link.request_telemetry(rates)
        # ArduPilot keeps GPS_PRIMARY across reboots: start from the trust the gate starts with
        self.link.set_gnss_trusted(cfg.navigation.estimation.integrity.gnss_trusted_at_start,
                                   force=True)
        if cfg.set_baro_reference:
            # on the ground at the take-off point: make the barometer read its known altitude
            self._set_baro_reference(self.context.frame.alt0_m)
        self.gcs = GroundStation(self.link.channel, cfg.ground_station,
                                 on_reloc_hint=self._on_hint)
        self.gcs.start()
        if self.targeting is not None:
            self.targeting.start(self.link.channel)
        self.link.start_output()
        load_s = time.perf_counter() - t0
        log.info("take-off load %.2f s (cache verified, models warm, signing done)", load_s)
        self.telemetry.takeoff(load_s, self.link.stats().clock_offset_ns)
        return load_s

    def _set_baro_reference(self, alt_amsl_m: float, wait_s: float = 5.0) -> None:
        """The barometer's reference from the FC's first SCALED_PRESSURE (streamed only once
        asked for, just before): waits up to `wait_s` for it, then refuses take-off."""
        from terrafix.autopilot.inbound import InboundValueError

        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.link.set_baro_reference(alt_amsl_m)
                return
            except InboundValueError as exc:
                if time.monotonic() > deadline:
                    raise FlyError(f"take-off refused: set_baro_reference is on but {exc} "
                                   f"within {wait_s:.0f} s (the FC must stream "
                                   "SCALED_PRESSURE on this link)") from None
                time.sleep(0.1)

    def _tile_feed(self) -> FlightTileFeed | None:
        """The in-flight tile feed (None when off): its store is separate from the map cache,
        which stays read-only; the map's tiles only score the change."""
        ft = self.cfg.flight_tiles
        if not ft.enabled:
            return None
        from datetime import UTC, datetime

        def utc_of(t_ns: int) -> datetime:  # companion monotonic -> UTC
            return datetime.fromtimestamp((time.time_ns() - (time.monotonic_ns() - t_ns))
                                          / 1e9, UTC)

        cache = self._store
        reference = None
        if cache is not None:
            def reference(tile):
                return cache.read_image(tile) if cache.get_record(tile) is not None else None

        producers: dict[str, Any] = {}

        def record(topic: str, data: dict[str, Any]) -> None:
            cls = FEED_RECORD_TYPES.get(topic)
            if cls is None:
                raise FlyError(f"tile feed record on {topic!r}: expected one of "
                               f"{sorted(FEED_RECORD_TYPES)}")
            prod = producers.get(topic)
            if prod is None:
                prod = producers[topic] = self.recorder.producer(topic, dataclass_schema(cls))
            prod.record(time.monotonic_ns(), record_from(cls, data, topic))

        return FlightTileFeed(ft, self.flight_id, self.context, utc_of, reference=reference,
                              on_record=record)

    # --- callbacks (reader threads: quick) -------------------------------------------------
    def _on_gnss(self, sample) -> None:
        self.inbox.put(sample.t_ns, sample)
        self.gcs_fc_gnss = sample

    def _on_attitude(self, sample) -> None:
        self.inbox.put(sample.t_ns, sample)
        if self.targeting is not None:
            self.targeting.add_attitude(sample)

    def _on_fc_position(self, pos) -> None:
        self._fc_position = pos

    def _on_landed(self, state) -> None:
        self._landed = bool(getattr(state, "on_ground", False))

    def _on_hint(self, hint) -> None:
        now = time.monotonic_ns()
        self.inbox.put(now, OperatorHint(now, hint.lat_deg, hint.lon_deg, hint.radius_m))

    def _gcs_text(self, severity: str, text: str) -> None:
        gcs = getattr(self, "gcs", None)
        if gcs is not None:
            from terrafix.autopilot import constants as C

            gcs.send_text(getattr(C, f"SEVERITY_{severity}", 2), text)

    # --- flight ----------------------------------------------------------------------------
    def _camera_thread(self, source: FrameSource) -> None:
        try:
            for frame in source:
                if self._stop.is_set():
                    break
                self._frames_seen += 1
                self._arrived_ns[frame.index] = time.monotonic_ns()
                self.inbox.put(frame.t_ns, frame)
        except Exception:
            log.exception("camera source failed")
        finally:
            self._camera_done.set()

    def _frame_source(self) -> FrameSource:
        cam = self.cfg.camera
        size = (self.context.intrinsics.width, self.context.intrinsics.height)
        if cam.source == "simulator":
            from terrafix.sim.flight_controller import fc_boot_ns

            return SimulatedCameraSource(cam.dataset, fc_boot_ns,
                                         self.link.fc_boot_to_companion_ns,
                                         readout_s=cam.readout_s)
        if cam.source == "sitl":
            from terrafix.sim.world import load_dgsamples_world
            from terrafix.sitl.camera import SitlCameraSource

            world = load_dgsamples_world(cam.sitl_imagery,
                                         ground_alt_m=self.context.ground_alt_m)
            return SitlCameraSource(world, self.context.intrinsics, self.context.extrinsics,
                                    self.context.frame, self._sitl_truth,
                                    self.link.fc_boot_to_companion_ns,
                                    self.link.companion_to_fc_boot_ns,
                                    rate_hz=cam.sitl_rate_hz, readout_s=cam.readout_s)
        if cam.source == "folder":
            if cam.dataset is None:
                raise FlyError("camera.dataset (a frames folder) is required with source folder")
            return DatasetFrameSource(cam.dataset)
        return VideoCaptureSource(int(cam.device) if cam.device.isdigit() else cam.device,
                                  size, latency_s=cam.readout_s)

    def _subscribe_sitl_truth(self):
        """SITL's true state from SIM_STATE on the FC link, buffered for the SITL camera."""
        from terrafix.sitl.camera import TruthBuffer
        from terrafix.sitl.control import truth_of_sim_state

        truth = TruthBuffer(self.context.frame)
        # SIM_STATE has no time field: it is stamped with its arrival less the delivery lag
        # of the ATTITUDE sent in the same burst (its FC time is known), so that the camera
        # renders the pose of the instant the navigation reads the FC's attitude for; at
        # arrival alone it is tens of ms late on a loaded companion (measured: 45 ms median)
        lag_ns = [0]

        def on_attitude(msg, arrival_ns: int) -> None:
            aligned = self.link.fc_boot_to_companion_ns(int(msg.time_boot_ms) * 1_000_000)
            if aligned is not None:
                lag_ns[0] = max(0, arrival_ns - aligned)

        self.link.channel.subscribe("ATTITUDE", on_attitude)
        self.link.channel.subscribe("SIM_STATE", lambda msg, t_ns: truth.add(
            truth_of_sim_state(msg, t_ns - lag_ns[0])))
        return truth

    def stop(self) -> None:
        """End the flight from another thread: the loop finishes and lands (`fly` returns)."""
        self._stop.set()

    def fly(self) -> FlightSummary:
        return self.navigate(self.takeoff())

    def navigate(self, load_s: float) -> FlightSummary:
        """The flight after `takeoff()` (which returned `load_s`), until the frames end or
        `stop()`."""
        # the GPS_INPUT sender and the link readers are Python threads: hand the interpreter
        # over every 1 ms (default 5) so a busy navigation thread cannot stretch their ticks
        sys.setswitchinterval(0.001)
        source = self._frame_source()
        self.camera_source = source
        self._camera_done = threading.Event()
        # the capture time goes to the navigator before the image is decoded (FrameCaptured)
        source.on_capture = lambda t_ns, index: self.inbox.put(t_ns, FrameCaptured(t_ns, index))
        cam_thread = threading.Thread(target=self._camera_thread, args=(source,),
                                      name="camera", daemon=True)
        cam_thread.start()
        self.telemetry.set_total_frames(len(source) if hasattr(source, "__len__") else None)
        meter = _LatencyMeter(on_frame=self.telemetry.latency)
        pending_capture: dict[int, int] = {}
        n_solutions = n_events = processed = late_frames = stale_frames = late_samples = 0
        max_lag_ns = int(self.cfg.camera.max_frame_lag_s * 1e9)
        last_fed_ns = -(1 << 62)
        results = JsonlWriter(self.out / "results.jsonl")
        events = JsonlWriter(self.out / "events.jsonl")
        try:
            while not self._stop.is_set():
                done = self._camera_done.is_set()
                items = self.inbox.release(time.monotonic_ns(), 0.02, flush=done)
                for item in items:
                    t_item = getattr(item, "t_ns", last_fed_ns)
                    is_frame = isinstance(item, CameraFrame)
                    if t_item < last_fed_ns and not is_frame and not (
                            isinstance(item, GnssSample)
                            and last_fed_ns - t_item <= self.navigator.late_gnss_limit_ns):
                        # came after newer ones were fused: dropped (a receiver's report,
                        # stamped at its fix, may come later: the navigator takes it then)
                        late_samples += 1
                        continue
                    if is_frame:
                        if time.monotonic_ns() - item.t_ns > max_lag_ns:
                            # the navigator is behind real time: a stale frame would only
                            # delay the output further; drop it (counted) and keep up
                            stale_frames += 1
                            self._arrived_ns.pop(item.index, None)
                            continue
                        pending_capture[item.index] = item.t_ns
                        now = time.monotonic_ns()
                        meter.stamp(item.index, item.t_ns, "arrived",
                                    self._arrived_ns.pop(item.index, now))
                        meter.stamp(item.index, item.t_ns, "fed", now)
                    try:
                        self.navigator.feed(item)
                    except NavigatorError:
                        if not is_frame:
                            raise
                        # a frame older than newer samples that was not announced at its
                        # capture time (or announced too long ago): dropped and counted
                        pending_capture.pop(item.index, None)
                        late_frames += 1
                        continue
                    last_fed_ns = max(last_fed_ns, t_item)
                    if self.tiles is not None:
                        self.tiles.on_input(item)
                self.navigator.poll()
                if done and not items:
                    self.navigator.flush()
                sols = self.navigator.drain_solutions()
                for s in sols:
                    if self.targeting is not None:
                        self.targeting.add_solution(s)
                    record = solution_record(s)
                    results.write(record)
                    self._rec_solution.record(s.t_ns, record)
                n_solutions += len(sols)
                if self.tiles is not None:
                    self.tiles.on_solutions(sols)
                latest: NavSolution | None = self.navigator.current_solution()
                if latest is not None:
                    # every pass, not only at output ticks: a fix fused now reaches the
                    # sender now (the sender extrapolates it to its own send time)
                    self.link.publish(latest)
                    meter.published(time.monotonic_ns())
                    self.gcs.update(latest)
                meter.sent(self.link.output_stats().last_sent_mono_ns)
                now = time.monotonic_ns()
                for rep in self.navigator.drain_frame_reports():
                    processed += 1
                    cap = pending_capture.pop(rep.index, None)
                    if cap is not None:
                        meter.frame_done(rep.index, cap, rep.registered, now)
                    self._rec_frame.record(rep.t_ns, rep.record())
                evs = self.navigator.drain_events()
                if self.tiles is not None:
                    self.tiles.on_events(evs)
                for ev in evs:
                    n_events += 1
                    rec = event_record(ev)
                    events.write(rec)
                    self._rec_event.record(ev.t_ns, rec)
                    self._forward_event(ev)
                if self.telemetry.due(now):
                    self.telemetry.tick(now, FlightCounters(
                        self._frames_seen, processed, self.navigator.stats.registrations,
                        self.navigator.stats.fixes_fused, n_solutions, n_events,
                        _radius95_m(latest), self.link.stats().clock_offset_ns))
                if done and not items and self.inbox.release(now, 0.0, flush=True) == []:
                    break
        except KeyboardInterrupt:
            log.warning("interrupted: closing the flight")
        finally:
            self._stop.set()
            source.close()
            self.navigator.close()
            results.close()
            events.close()
        if late_samples:
            log.warning("%d sensor samples arrived more than the %.0f ms hold after newer ones "
                        "and were dropped", late_samples, self.inbox.hold_ns / 1e6)
        self._late_samples = late_samples
        if late_frames or stale_frames:
            log.warning("frames dropped: %d arrived after later samples were fused unannounced"
                        ", %d were "
                        "older than %.2f s when their turn came", late_frames, stale_frames,
                        self.cfg.camera.max_frame_lag_s)
        return self._land(load_s, processed, meter, n_solutions, n_events,
                          getattr(source, "dropped", 0))

    def _upload_after_landing(self, fc_reading) -> dict[str, Any] | None:
        """The post-flight upload, when configured: gate, then `upload_flight`. A refusal or a
        failed upload is logged (ERROR) and leaves the tiles PENDING for `terrafix upload`."""
        cfg = self.cfg
        if fc_reading is None or not (cfg.flight_tiles.enabled and cfg.upload.url):
            return None
        from terrafix.upload.errors import UploadError
        from terrafix.upload.post_flight import upload_flight

        try:
            summary = upload_flight(self.tiles.root, self.flight_id, cfg.upload, fc_reading,
                                    Path(cfg.recorder.folder) / self.flight_id)
        except UploadError as exc:
            log.error("post-flight upload not done: %s; run `terrafix upload` later", exc)
            return {"error": str(exc)}
        log.info("post-flight upload: %d accepted, %d duplicate, %d rejected", summary.accepted,
                 summary.duplicate, summary.rejected)
        return summary.as_dict()

    def _forward_event(self, ev) -> None:
        if self._on_event_hook is not None:
            self._on_event_hook(ev)
        kind = type(ev).__name__
        if kind == "SpoofRejected":
            self.gcs.report_spoof_rejection(ev.statustext())
        elif kind == "GnssTrustChanged":
            self.link.set_gnss_trusted(bool(ev.trusted))
            self._gcs_text("WARNING", ev.statustext())
        else:
            self._gcs_text(str(ev.severity), ev.statustext())

    def _land(self, load_s: float, processed: int, meter: _LatencyMeter,
              n_solutions: int, n_events: int, dropped_by_source: int) -> FlightSummary:
        offset_ns = self.link.stats().clock_offset_ns
        if self.tiles is not None:
            self.tiles.close()
        from terrafix.upload.gate import read_fc_state

        # the one reading the upload gate takes: the FC's next landed-state report
        fc_reading = read_fc_state(self.link, wait_s=self.cfg.upload_gate_wait_s,
                                   newer_than_ns=time.monotonic_ns()) \
            if self.cfg.upload_after_landing else None
        self.gcs.close()
        if self.targeting is not None:
            self.targeting.close()
        self.link.close()
        # after the close: the sender runs on while the upload gate waits for the FC's report
        out_stats = self.link.output_stats()
        if self._store is not None:
            self._store.close()
        seen = self._frames_seen + dropped_by_source
        dropped = seen - processed
        lat = np.asarray(meter.all_ms) if meter.all_ms else np.array([math.nan])
        summary = FlightSummary(
            flight_id=self.flight_id, takeoff_load_s=load_s, frames_seen=seen,
            frames_processed=processed, frames_dropped=dropped,
            frame_drop_rate=dropped / seen if seen else math.nan,
            latency_p50_ms=float(np.percentile(lat, 50)),
            latency_p95_ms=float(np.percentile(lat, 95)),
            latency_max_ms=float(np.max(lat)),
            latency_registered_p95_ms=_p95(meter.registered_ms),
            latency_stage_p50_ms=meter.stage_medians_ms(),
            latency_odometry_p95_ms=_p95(meter.odometry_ms),
            registrations_skipped_busy=self.navigator.stats.registrations_skipped_busy,
            late_samples_dropped=getattr(self, "_late_samples", 0),
            gps_input_sent=out_stats.sent,
            solutions=n_solutions, events=n_events,
            recorder_clean=False, fc_clock_offset_ns=offset_ns)
        self.telemetry.summary(summary)
        self.telemetry.close()
        footer = self.recorder.close()
        summary = replace(summary, recorder_clean=bool(footer.clean_shutdown))
        # after the footer: the upload gate needs a clean one
        self.upload_summary = self._upload_after_landing(fc_reading)
        if self.upload_summary is not None:
            (self.out / "upload.json").write_text(
                json.dumps(self.upload_summary, indent=2, default=str) + "\n")
        (self.out / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
        log.debug("flight %s closed: %s", self.flight_id, summary)
        close_file_log(self._log_file)
        return summary

