"""The simulated flight controller: a recorded flight played over MAVLink in real time.

Why: the onboard program must run unchanged against something that speaks to it exactly as an
ArduPilot FC does — real MAVLink 2 bytes over UDP/TCP/serial, ArduPilot's signing rules and its
GPS_INPUT acceptance rules — while the ground truth of the flight is known. `FcEmulator` (in the
autopilot package) supplies the FC behaviour; this module feeds it the dataset's telemetry on
the dataset's own schedule and logs every GPS_INPUT the FC accepted, for the evaluation.

Time: the FC "booted" `FC_BOOT_LEAD_S` before the dataset's t = 0, so a dataset time t maps to
FC boot time t + FC_BOOT_LEAD_S (time_boot_ms / boot-relative time_usec on the wire). The
navigation camera is triggered by the FC (as ArduPilot's camera trigger does): a frame's capture
time is an FC boot time, which the onboard program maps to its own clock through the link's
clock alignment (`terrafix.app.frame_sources.SimulatedCameraSource`).

What is sent, at the dataset's rates: HIGHRES_IMU (IMU), ATTITUDE (the FC's attitude estimate),
SCALED_PRESSURE (barometer, ISA against standard QNH), GPS_RAW_INT (the real receiver, attacks
included) with GNSS_INTEGRITY carrying the receiver's jamming/spoofing states, a 10 Hz
GLOBAL_POSITION_INT (the FC's own fused position: truth while the FC has a trusted GPS, then
a drift growing at FC_DRIFT_MPS from the first attacked GNSS sample, a stand-in for ArduPilot's
EKF coasting; it only matters for re-initialisation after a companion restart), a 1 Hz
EXTENDED_SYS_STATE (in air during the dataset, then on ground for `landed_hold_s` so
post-flight logic can be exercised), and HEARTBEAT (from the emulator).
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from terrafix.autopilot import constants as C
from terrafix.autopilot.fc_emulation import FcEmulator, GpsInputRecord
from terrafix.geo.geodesic import distance_m
from terrafix.recorder.schemas import dataclass_schema, record_of
from terrafix.sim.dataset import FlightDataset
from terrafix.sim.errors import SimError

log = logging.getLogger(__name__)
mavlink = C.DIALECT

FC_BOOT_LEAD_S = 42.0
"""Seconds the simulated FC has been up when the dataset's t = 0 is played."""
FC_BOOT_LEAD_NS = int(FC_BOOT_LEAD_S * 1e9)
STANDARD_QNH_HPA = 1013.25
FC_DRIFT_MPS = 0.5
"""Growth of the simulated FC's own position error once its GNSS is denied (m/s)."""
_GLOBAL_POSITION_PERIOD_NS = 100_000_000
_SYS_STATE_PERIOD_NS = 1_000_000_000
_HIGHRES_ACCEL_GYRO_PRESS = 0x003F | 0x0200 | 0x0800  # acc xyz, gyro xyz, abs pressure, p-alt

_GNSS_REPORT_LAG_NS = round(C.DEFAULT_GNSS_REPORT_LAG_S * 1e9)
_KIND_IMU, _KIND_ATT, _KIND_BARO, _KIND_GNSS, _KIND_GPOS, _KIND_STATE = range(6)


def fc_boot_ns(t_dataset_ns: int) -> int:
    """FC boot time (ns) of a dataset time."""
    return int(t_dataset_ns) + FC_BOOT_LEAD_NS


def isa_pressure_hpa(alt_m: float, qnh_hpa: float = STANDARD_QNH_HPA) -> float:
    """Static pressure at an ISA altitude (inverse of the barometric formula)."""
    return qnh_hpa * (1.0 - alt_m / 44330.769) ** (1.0 / 0.190263)


@dataclass(frozen=True, slots=True)
class FcRunSummary:
    """What the simulated FC saw: GPS_INPUT acceptance and playback timing."""

    dataset_duration_s: float
    played_s: float
    messages_sent: int
    late_sends: int
    max_lateness_ms: float
    gps_input_count: int
    gps_input_decoded: int
    gps_input_rate_hz: float
    gps_input_max_gap_ms: float
    gps_input_jitter_ms: float
    gps_input_unhealthy_arrivals: int
    signing_active: bool
    setup_signing_accepted: int


class SimulatedFlightController:
    """Plays a `FlightDataset` over MAVLink as an ArduPilot FC would send it.

    connection: a pymavlink connection string for the FC end (e.g. `udpin:127.0.0.1:14551`
    when the companion connects with `udpout:`); speed: playback speed (1.0 = real time).
    key: a signing key the FC already holds (None = unsigned until the companion's
    SETUP_SIGNING). Thread model: `run()` blocks the calling thread; the emulator's reader and
    heartbeat threads handle the inbound side.
    """

    def __init__(self, dataset: FlightDataset, connection: str, *, speed: float = 1.0,
                 key: bytes | None = None, landed_hold_s: float = 5.0,
                 wait_for_companion_s: float = 30.0) -> None:
        if not (0.1 <= speed <= 20.0):
            raise SimError(f"playback speed must be within [0.1, 20], got {speed}")
        self.dataset = dataset
        self.speed = speed
        self.landed_hold_s = landed_hold_s
        self.wait_for_companion_s = wait_for_companion_s
        self.fc = FcEmulator(connection, key=key, allow_external_listen=False)
        self._stop = threading.Event()
        self._arrivals_dataset_ns: list[int | None] = []
        self._t0_mono_ns: int | None = None
        self._lock = threading.Lock()
        self._companion_seen = threading.Event()
        attacked = np.flatnonzero(dataset.gnss.attack != "none")
        self._denied_from_ns = int(dataset.gnss.t_ns[attacked[0]]) if attacked.size else None
        angle = float(np.random.default_rng(int(dataset.meta.get("seed", 0))).uniform(0, 2 * np.pi))
        self._drift_dir = (math.cos(angle), math.sin(angle))
        self.fc.on("HEARTBEAT", self._on_heartbeat)
        self.fc.on("GPS_INPUT", self._on_gps_input)

    # --- inbound hooks (emulator reader thread) ------------------------------------------------
    def _on_heartbeat(self, msg, _arrival_ns: int) -> None:
        if msg.type == C.COMPANION_MAV_TYPE:
            self._companion_seen.set()

    def _on_gps_input(self, _msg, arrival_ns: int) -> None:
        with self._lock:
            t0 = self._t0_mono_ns
            self._arrivals_dataset_ns.append(
                None if t0 is None else int((arrival_ns - t0) * self.speed))

    def stop(self) -> None:
        self._stop.set()

    # --- the schedule ---------------------------------------------------------------------------
    def _schedule(self) -> list[tuple[int, int, int]]:
        ds = self.dataset
        t_end = int(ds.truth.t_ns[-1])
        streams = [
            [(int(t), _KIND_IMU, i) for i, t in enumerate(ds.imu.t_ns)],
            [(int(t), _KIND_ATT, i) for i, t in enumerate(ds.attitude.t_ns)],
            [(int(t), _KIND_BARO, i) for i, t in enumerate(ds.baro.t_ns)],
            # a receiver reports its fix DEFAULT_GNSS_REPORT_LAG_S after the measurement,
            # and ArduPilot stamps GPS_RAW_INT then (as a u-blox M8 on a real FC)
            [(int(t) + _GNSS_REPORT_LAG_NS, _KIND_GNSS, i) for i, t in enumerate(ds.gnss.t_ns)],
            [(t, _KIND_GPOS, 0) for t in range(0, t_end + 1, _GLOBAL_POSITION_PERIOD_NS)],
            [(t, _KIND_STATE, 0) for t in range(0, t_end + 1, _SYS_STATE_PERIOD_NS)],
        ]
        return list(heapq.merge(*streams))

    def _message(self, kind: int, i: int, t_ns: int):
        ds = self.dataset
        boot_us = fc_boot_ns(t_ns) // 1000
        boot_ms = fc_boot_ns(t_ns) // 1_000_000
        if kind == _KIND_IMU:
            a, g = ds.imu.accel_body_mps2[i], ds.imu.gyro_body_radps[i]
            return mavlink.MAVLink_highres_imu_message(
                boot_us, float(a[0]), float(a[1]), float(a[2]), float(g[0]), float(g[1]),
                float(g[2]), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 25.0, 0x003F, 0)
        if kind == _KIND_ATT:
            r, p, y = (float(v) for v in ds.attitude.euler_rad[i])
            wr = (float(v) for v in ds.truth_at(t_ns).omega_body_radps)
            return mavlink.MAVLink_attitude_message(boot_ms, r, p, y, *wr)
        if kind == _KIND_BARO:
            return mavlink.MAVLink_scaled_pressure_message(
                boot_ms, isa_pressure_hpa(float(ds.baro.alt_m[i])), 0.0, 2500, 0)
        if kind == _KIND_GNSS:
            return self._gps_raw(i, boot_us)
        if kind == _KIND_GPOS:
            return self._global_position(t_ns, boot_ms)
        return mavlink.MAVLink_extended_sys_state_message(
            0, mavlink.MAV_LANDED_STATE_IN_AIR)

    def _gps_raw(self, i: int, boot_us: int):
        g = self.dataset.gnss
        fix = int(g.fix_type[i])
        has_pos = fix >= 2 and math.isfinite(float(g.lat_deg[i]))
        lat = round(float(g.lat_deg[i]) * 1e7) if has_pos else 0
        lon = round(float(g.lon_deg[i]) * 1e7) if has_pos else 0
        alt = round(float(g.alt_m[i]) * 1000) if has_pos else 0
        vn, ve = (float(v) for v in g.v_ned_mps[i][:2]) if has_pos else (0.0, 0.0)
        speed_cms = round(math.hypot(vn, ve) * 100)
        cog = round((math.degrees(math.atan2(ve, vn)) % 360.0) * 100) % 36000
        h_acc = float(g.h_acc_m[i])
        v_acc = float(g.v_acc_m[i])
        h_mm = int(min(h_acc * 1000, 4e9)) if math.isfinite(h_acc) else 0
        v_mm = int(min(v_acc * 1000, 4e9)) if math.isfinite(v_acc) else 0
        eph = min(int(h_acc / 5.0 * 100), 65534) if math.isfinite(h_acc) else 65535
        epv = min(int(v_acc / 5.0 * 100), 65534) if math.isfinite(v_acc) else 65535
        return mavlink.MAVLink_gps_raw_int_message(
            boot_us, fix, lat, lon, alt, eph, epv, speed_cms, cog, int(g.num_sats[i]), alt,
            h_mm, v_mm, 300, 0, 0)

    def _integrity(self, i: int):
        g = self.dataset.gnss
        jam = C.GNSS_JAMMING_STATE_DETECTED if bool(g.jamming[i]) else 1  # 1 = OK
        spoof = C.GNSS_SPOOFING_STATE_DETECTED if bool(g.spoofing[i]) else 1
        return mavlink.MAVLink_gnss_integrity_message(
            0, 0, 0, jam, spoof, 0, 255, 255, 255, 0, 255, 255)

    def _global_position(self, t_ns: int, boot_ms: int):
        s = self.dataset.truth_at(t_ns)
        alt_rel = float(s.alt_m) - float(self.dataset.meta["origin"]["alt_m"])
        vn, ve, vd = (float(v) for v in s.v_ned_mps)
        yaw = float(s.euler_rad[2])
        # the FC's own EKF drifts once GNSS is denied: a fixed-direction error growing
        # linearly (FC_DRIFT_MPS) from the first attacked GNSS sample
        lat, lon = float(s.lat_deg), float(s.lon_deg)
        if self._denied_from_ns is not None and t_ns > self._denied_from_ns:
            drift_m = FC_DRIFT_MPS * (t_ns - self._denied_from_ns) / 1e9
            lat += drift_m * self._drift_dir[0] / 111_320.0
            lon += drift_m * self._drift_dir[1] / (111_320.0 * math.cos(math.radians(lat)))
        return mavlink.MAVLink_global_position_int_message(
            boot_ms, round(lat * 1e7), round(lon * 1e7),
            round(float(s.alt_m) * 1000), round(alt_rel * 1000),
            round(vn * 100), round(ve * 100), round(vd * 100),
            round((math.degrees(yaw) % 360.0) * 100) % 36000)

    # --- playback -------------------------------------------------------------------------------
    def run(self) -> FcRunSummary:
        """Wait for the companion's heartbeat, play the dataset in real time (scaled by
        `speed`), report on-ground for `landed_hold_s`, and return the summary."""
        schedule = self._schedule()
        self.fc.start()
        try:
            if not self._companion_seen.wait(self.wait_for_companion_s):
                raise SimError(f"no companion heartbeat within {self.wait_for_companion_s} s")
            # give the companion a moment for its signing handshake before telemetry starts
            time.sleep(1.0)
            sent = late = 0
            max_late_ns = 0
            t0 = time.monotonic_ns()
            with self._lock:
                self._t0_mono_ns = t0
            for t_ns, kind, i in schedule:
                if self._stop.is_set():
                    break
                due = t0 + int(t_ns / self.speed)
                now = time.monotonic_ns()
                if due > now:
                    time.sleep((due - now) / 1e9)
                else:
                    lateness = now - due
                    max_late_ns = max(max_late_ns, lateness)
                    late += lateness > 20_000_000
                self.fc.send(self._message(kind, i, t_ns))
                sent += 1
                if kind == _KIND_GNSS:
                    self.fc.send(self._integrity(i))
                    sent += 1
            played_s = (time.monotonic_ns() - t0) / 1e9
            hold_end = time.monotonic() + self.landed_hold_s
            while time.monotonic() < hold_end and not self._stop.is_set():
                self.fc.send(mavlink.MAVLink_extended_sys_state_message(
                    0, mavlink.MAV_LANDED_STATE_ON_GROUND))
                time.sleep(0.5)
            signing_active = self.fc.signing_active
        finally:
            self.fc.close()
        return self._summary(played_s, sent, late, max_late_ns, signing_active)

    def _summary(self, played_s: float, sent: int, late: int, max_late_ns: int,
                 signing_active: bool) -> FcRunSummary:
        acc = self.fc.acceptance.summary()
        records = self.fc.acceptance.records
        return FcRunSummary(
            dataset_duration_s=float(self.dataset.truth.t_ns[-1]) / 1e9,
            played_s=played_s,
            messages_sent=sent,
            late_sends=late,
            max_lateness_ms=max_late_ns / 1e6,
            gps_input_count=len(records),
            gps_input_decoded=sum(r.decoded for r in records),
            gps_input_rate_hz=float(acc.get("rate_hz", 0.0)),
            gps_input_max_gap_ms=float(acc.get("max_gap_ms", math.inf)),
            gps_input_jitter_ms=float(acc.get("jitter_ms", math.inf)),
            gps_input_unhealthy_arrivals=int(acc.get("unhealthy_arrivals", 0)),
            signing_active=signing_active,
            setup_signing_accepted=self.fc.setup_signing_accepted,
        )

    def write_log(self, out_dir: Path, summary: FcRunSummary) -> Path:
        """Write `fc_gps_input.jsonl` (every GPS_INPUT the FC received, with the dataset time
        of its arrival and the error of its position against truth at that instant) and
        `fc_summary.json`, and the same as a flight log in `flight/` (MCAP: topics
        `fc/gps_input` at each arrival time and `fc/summary`, with their JSON Schemas, so
        the track the autopilot received opens in Foxglove or `terrafix fdr export`).
        GPS_INPUTs received before playback started (during the signing handshake) have
        `t_dataset_ns` None. Returns the folder."""
        out_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            arrivals = list(self._arrivals_dataset_ns)
        records: list[GpsInputRecord] = list(self.fc.acceptance.records)
        # arrivals were captured by our own hook in the same order as the emulator's records
        n = min(len(arrivals), len(records))
        rows: list[tuple[int, dict]] = []
        with (out_dir / "fc_gps_input.jsonl").open("w") as f:
            for t_ds, rec in zip(arrivals[:n], records[:n], strict=True):
                row = record_of(rec)
                row["t_dataset_ns"] = t_ds
                if rec.decoded and t_ds is not None \
                        and 0 <= t_ds <= int(self.dataset.truth.t_ns[-1]):
                    s = self.dataset.truth_at(t_ds)
                    row["error_m"] = float(distance_m(float(s.lat_deg), float(s.lon_deg),
                                                      rec.lat_deg, rec.lon_deg))
                else:
                    row["error_m"] = None
                f.write(json.dumps(row, allow_nan=False, default=_json_default) + "\n")
                rows.append((rec.arrival_ns, row))
        (out_dir / "fc_summary.json").write_text(
            json.dumps(asdict(summary), indent=2, default=_json_default) + "\n")
        _record_fc_log(out_dir / "flight", rows, summary)
        return out_dir


FC_GPS_INPUT_SCHEMA = dataclass_schema(
    GpsInputRecord, title="terrafix.sim.FcGpsInput",
    description="One GPS_INPUT as the simulated FC received it (autopilot.fc_emulation), with "
                "the dataset time of its arrival and its horizontal error against truth.",
    extra={"t_dataset_ns": {"type": ["integer", "null"], "description": (
               "dataset time of the arrival (null: before playback). Unit: ns.")},
           "error_m": {"type": ["number", "null"], "description": (
               "horizontal distance to the true position at arrival (null: not decoded or "
               "outside the flight). Unit: m.")}})
FC_SUMMARY_SCHEMA = dataclass_schema(FcRunSummary, title="terrafix.sim.FcRunSummary")


def _record_fc_log(folder: Path, rows: list[tuple[int, dict]], summary: FcRunSummary) -> None:
    """The FC's log as a flight log (a previous one in the same folder is replaced)."""
    from terrafix.recorder import FlightRecorder

    if folder.is_dir():
        for old in folder.glob("*.mcap"):
            old.unlink()
    rec = FlightRecorder(folder, flight_id=f"sim-fc-{time.strftime('%Y%m%dT%H%M%S')}",
                         config_hash="simulated-fc")
    try:
        gps = rec.producer("fc/gps_input", FC_GPS_INPUT_SCHEMA, capacity=len(rows) + 16)
        for arrival_ns, row in rows:
            gps.record(arrival_ns, row)
        rec.producer("fc/summary", FC_SUMMARY_SCHEMA).record(time.monotonic_ns(),
                                                             record_of(summary))
    finally:
        rec.close()


def _json_default(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def run_simulated_fc(dataset_dir: str | Path, connection: str, *, speed: float = 1.0,
                     out_dir: str | Path | None = None, landed_hold_s: float = 5.0,
                     wait_for_companion_s: float = 30.0) -> FcRunSummary:
    """Play a dataset folder as a flight controller on `connection`; write the FC's log to
    `out_dir` (default: the dataset folder's `fc/` subfolder). The `terrafix sim fc` command."""
    from terrafix.sim.dataset import load_dataset

    ds = load_dataset(dataset_dir)
    fc = SimulatedFlightController(ds, connection, speed=speed, landed_hold_s=landed_hold_s,
                                   wait_for_companion_s=wait_for_companion_s)
    summary = fc.run()
    fc.write_log(Path(out_dir) if out_dir is not None else Path(dataset_dir) / "fc", summary)
    log.info("simulated FC: %d GPS_INPUT (%d decoded) at %.2f Hz, max gap %.0f ms",
             summary.gps_input_count, summary.gps_input_decoded, summary.gps_input_rate_hz,
             summary.gps_input_max_gap_ms)
    return summary
