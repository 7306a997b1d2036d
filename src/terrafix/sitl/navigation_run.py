"""The SITL flight with terrafix's own navigation as the companion (closed loop).

`SwitchRun` measures ArduPilot's side of the switch with a stand-in estimate (truth plus a
correlated error). Here the companion is the onboard program itself (`OnboardProgram`, the
code `terrafix fly` runs): frames rendered from the real WorldView-3 imagery at SITL's true
pose (camera.source = "sitl", SIM_STATE on the signed SERIAL1 link, triggers on the FC clock),
matched against a WorldView-2 map cache provisioned and signed before the flight, fused with
ArduPilot's IMU, attitude and barometer by the navigator, whose integrity monitor tests SITL's
receiver (GPS_RAW_INT on the same link) and closes the gate on the spoof; the onboard program
then switches ArduPilot onto terrafix (GPS_PRIMARY), exactly as in flight. The same timeline
as `SwitchRun` (spoof drift, jam, restore, companion death) and its figures, plus terrafix's
own error against SITL's truth and how often the truth lay inside its reported 95 % radius.

What stays simulated: the camera (rendered, not a sensor) and, in SITL, the aircraft.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from terrafix.autopilot.ardupilot import ArduPilotLink
from terrafix.sitl.process import SERIAL1_PORT, SitlError
from terrafix.sitl.switch_run import (
    PublishedTrack,
    SwitchRun,
    SwitchRunConfig,
    _p95,
    horizontal_error_m,
)

log = logging.getLogger(__name__)

MAX_BANK_DEG = 30.0
"""ArduPlane's bank limit for the camera flight (its default lets it bank to ~70 deg in the
loop's corners, where a nadir camera sees the horizon): a navigation-camera mission limits the
bank, as the operator of a VPS flight would."""
SITL_GNSS_LAG_S = 0.1
"""SITL's GPS1 lag (SIM_GPS1_LAG_MS default 100 ms), the receiver latency the link takes off."""
MAP_MARGIN_M = 260.0
"""The map corridor reaches this far beyond the loop: a banked camera looks outwards."""


def prepare_map(cfg: SwitchRunConfig, flight_id: str, build: Path = Path("build")
                ) -> tuple[Path, str]:
    """Pre-flight: the WorldView-2 map around the loop in a signed cache (idempotent);
    returns (cache root, the provisioning key's fingerprint the onboard config pins)."""
    from shapely.affinity import affine_transform
    from shapely.geometry import Point

    from terrafix.app.preflight import prepare_flight_cache
    from terrafix.sim.world import DGSAMPLES, dgsamples_root

    files = sorted(dgsamples_root().glob(DGSAMPLES["wv2"][0]))
    if len(files) != 1:
        raise SitlError(f"expected one dgsamples wv2 image under {dgsamples_root()}, found "
                        f"{files} (scripts/bootstrap.sh installs them)")
    lat0, lon0, alt0, _ = cfg.home
    radius_deg = (cfg.loop_radius_m + MAP_MARGIN_M) / 111_132.0
    k_lon = 1.0 / math.cos(math.radians(lat0))
    circle = Point(0.0, 0.0).buffer(radius_deg, 32)
    corridor = affine_transform(circle, [k_lon, 0.0, 0.0, 1.0, lon0, lat0])
    root = build / "cache-dgsamples-wv2"
    prepared = prepare_flight_cache(root, files[0], flight_id=flight_id,
                                    takeoff=(lat0, lon0, alt0), corridor=corridor,
                                    extractor_name="xfeat", model_cache=build / "models")
    return root, prepared.signer_fingerprint


def fly_config(cfg: SwitchRunConfig, out: Path, cache: Path, signer: str, flight_id: str
               ) -> dict[str, Any]:
    """The onboard program's config for the SITL flight (a TOML file for `terrafix fly`)."""
    lat0, lon0, alt0, _ = cfg.home
    return {
        "flight_id": flight_id,
        "output": str(out / "fly"),
        "camera": {"source": "sitl", "sitl_imagery": "wv3", "sitl_rate_hz": 3.0},
        "takeoff": {"lat_deg": lat0, "lon_deg": lon0, "alt_m": alt0, "ground_alt_m": alt0},
        "map": {"cache": str(cache), "signer_fingerprint": signer},
        "autopilot": {"connection": f"tcp:127.0.0.1:{SERIAL1_PORT}", "gps_input_rate_hz": 10.0,
                      "gps_id": 1, "gnss_switch": "gps_primary", "check_fc_parameters": True,
                      "signing_timeout_s": 5.0,
                      # SITL's simulated receiver reports SIM_GPS1_LAG_MS (100 ms) late;
                      # measured here: 95-100 ms (the fix vs SIM_STATE)
                      "gnss_lag_s": SITL_GNSS_LAG_S},
        "wait_for_fc_s": 60.0,
        "set_baro_reference": True,
        "recorder": {"folder": str(out / "flights")},
        "navigation": {"odometry_attitude": {"relative_rotation": "fc"}},
    }


class CameraNavigationRun(SwitchRun):
    """`SwitchRun` whose companion is the onboard program (see the module docstring)."""

    flight_params: ClassVar[Mapping[str, float]] = {"ROLL_LIMIT_DEG": MAX_BANK_DEG}

    def __init__(self, cfg: SwitchRunConfig, out: Path, build: Path = Path("build")) -> None:
        if cfg.topology != "gps2_primary":
            raise SitlError(f"topology {cfg.topology!r}: the closed loop flies the shipped "
                            "gps2_primary topology only")
        super().__init__(cfg)
        from terrafix.app.fly import FlyConfig

        self.out = out
        self.flight_id = time.strftime(f"sitl-seed{cfg.seed}-%Y%m%dT%H%M%SZ", time.gmtime())
        cache, signer = prepare_map(cfg, self.flight_id, build)
        self.fly_cfg = FlyConfig.from_dict(fly_config(cfg, out, cache, signer, self.flight_id),
                                           "sitl closed loop")
        self.summary: Any = None
        self._rows: list[dict[str, Any]] | None = None
        self._nav_thread: threading.Thread | None = None
        self._nav_error: BaseException | None = None

    def _make_link(self) -> ArduPilotLink:
        from terrafix.app.fly import OnboardProgram

        self.program = OnboardProgram(self.fly_cfg, on_event=self._on_gate_event,
                                      on_gnss_switch=self._on_switch)
        t0 = time.monotonic()
        self.load_s = self.program.takeoff()
        # the onboard program's take-off: signing, parameter check, trust, telemetry rates,
        # GPS_INPUT output started
        self.param_check = {"checked_by": "onboard program take-off",
                            "takeoff_load_s": round(self.load_s, 2),
                            "seconds": round(time.monotonic() - t0, 2)}
        self.log.event(f"onboard program took off in {self.load_s:.2f} s (signed link, "
                       "parameter check passed)")
        # what the FC said its attitude was, beside SITL's truth (for the analysis of the
        # camera geometry: the navigation uses the former, the camera renders the latter)
        self.fc_attitude: list[tuple[int, int, float, float, float]] = []
        self.program.link.channel.subscribe("ATTITUDE", lambda m, t: self.fc_attitude.append(
            (t, int(m.time_boot_ms), float(m.roll), float(m.pitch), float(m.yaw))))
        self.fc_gps: list[tuple[int, int, float, float, float, float]] = []
        self.program.link.channel.subscribe("GPS_RAW_INT", lambda m, t: self.fc_gps.append(
            (t, int(m.time_usec), m.lat / 1e7, m.lon / 1e7, m.vel / 100.0, m.cog / 100.0)))
        return self.program.link

    def _start_companion(self, link: ArduPilotLink) -> None:
        def navigate() -> None:
            try:
                self.summary = self.program.navigate(self.load_s)
            except BaseException as exc:  # reported by the run, not lost in a thread
                self._nav_error = exc
                log.exception("onboard program failed")

        self._nav_thread = threading.Thread(target=navigate, name="onboard", daemon=True)
        self._nav_thread.start()

    def _kill_companion(self, link: ArduPilotLink) -> None:
        self.stop.set()
        self._end_program()

    def _end_program(self) -> None:
        if self._nav_thread is None:
            return
        self.program.stop()
        self._nav_thread.join(60.0)
        if self._nav_thread.is_alive():
            raise SitlError("the onboard program did not land within 60 s of stop()")
        self._nav_thread = None
        if self._nav_error is not None:
            raise SitlError(f"the onboard program failed: {self._nav_error}")

    def run(self) -> dict[str, Any]:
        try:
            result = super().run()
        finally:
            if self._nav_thread is not None:
                self.program.stop()
                self._nav_thread.join(60.0)
        return result

    def _solution_rows(self) -> list[dict[str, Any]]:
        """terrafix's results.jsonl (the onboard program landed first)."""
        self._end_program()  # already landed after a companion death; else land now
        if self._rows is None:
            self._rows = [json.loads(line) for line in
                          (self.out / "fly" / "results.jsonl").read_text().splitlines()
                          if line]
        return self._rows

    def _published_track(self) -> PublishedTrack:
        """terrafix's solutions (what each GPS_INPUT was made from)."""
        return PublishedTrack.of([(int(r["t_ns"]), r["lat_deg"], r["lon_deg"])
                                  for r in self._solution_rows()
                                  if r.get("lat_deg") is not None and not r.get("failsafe")])

    def _extra_metrics(self, truth_at, t_on_ns: int | None, t_off_ns: int | None,
                       phases: Mapping[str, tuple[float | None, float | None]]
                       ) -> dict[str, Any]:
        """terrafix's own solution against SITL's truth (whole flight, while ArduPilot was
        on it, and by phase) and the share of solutions whose 95 % radius held the truth."""
        rows = self._solution_rows()
        errs, inside, errs_on = [], [], []
        by_phase: dict[str, list[tuple[float, bool, str]]] = {k: [] for k in phases}
        for r in rows:
            if r.get("lat_deg") is None or r.get("radius95_m") is None:
                continue
            tr = truth_at(int(r["t_ns"]))
            if tr is None:
                continue
            e = horizontal_error_m(r["lat_deg"], r["lon_deg"], tr.lat_deg, tr.lon_deg)
            errs.append(e)
            inside.append(e <= r["radius95_m"])
            if t_on_ns is not None and t_off_ns is not None and t_on_ns <= r["t_ns"] <= t_off_ns:
                errs_on.append(e)
            for name, (a, b) in phases.items():
                if a is not None and b is not None and a * 1e9 <= r["t_ns"] < b * 1e9:
                    by_phase[name].append((e, e <= r["radius95_m"], str(r.get("label"))))
        cam = getattr(self.program, "camera_source", None)
        off_t = list(getattr(cam, "off_imagery_t_ns", []))
        phase_figures = {}
        for name, vals in by_phase.items():
            if not vals:
                continue
            a, b = phases[name]
            es = [v[0] for v in vals]
            labels = [v[2] for v in vals]
            phase_figures[name] = {
                "seconds": round(b - a, 1), "solutions": len(vals),
                "error_p95_m": _p95(es), "error_max_m": round(max(es), 2),
                "inside95_share": round(float(np.mean([v[1] for v in vals])), 3),
                "label_shares": {k: round(labels.count(k) / len(labels), 3)
                                 for k in sorted(set(labels))},
                "frames_off_imagery": sum(1 for t in off_t if a * 1e9 <= t < b * 1e9)}
        with self.ctl.lock:
            truth = list(self.ctl.truth)
        np.savez_compressed(
            self.out / "attitude_vs_truth.npz",
            fc_attitude=np.array(self.fc_attitude, dtype=np.float64).reshape(-1, 5),
            fc_gps=np.array(self.fc_gps, dtype=np.float64).reshape(-1, 6),
            truth=np.array([(t.t_ns, t.roll_rad, t.pitch_rad, t.yaw_rad, t.lat_deg, t.lon_deg,
                             t.alt_m) for t in truth], dtype=np.float64).reshape(-1, 7))
        s = self.summary
        return {
            "navigation": "terrafix (camera over WV3 vs WV2 map, SITL IMU/attitude/baro)",
            "terrafix_solutions": len(errs),
            "terrafix_error_p95_m": _p95(errs),
            "terrafix_error_max_m": round(max(errs), 2) if errs else None,
            "terrafix_error_p95_on_terrafix_m": _p95(errs_on),
            "terrafix_inside95_share": round(float(np.mean(inside)), 3) if inside else None,
            "terrafix_by_phase": phase_figures,
            "frames_seen": None if s is None else s.frames_seen,
            "frames_processed": None if s is None else s.frames_processed,
            "frames_off_imagery": getattr(cam, "off_imagery", None),
            "registrations_fused": None if s is None else self.program.navigator.stats
            .fixes_fused,
            "latency_p95_ms": None if s is None else s.latency_p95_ms,
            "takeoff_load_s": round(self.load_s, 2),
        }


def main_in_netns(cfg: SwitchRunConfig, out_json: Path) -> dict[str, Any]:
    """One closed-loop flight (inside the private namespace); its JSON to `out_json`, the
    onboard program's outputs (fly/, flights/) beside it."""
    run_dir = Path("build") / "sitl-flights" / out_json.stem
    run_dir.mkdir(parents=True, exist_ok=True)
    result = CameraNavigationRun(cfg, run_dir).run()
    result["flight_folder"] = str(run_dir)
    out_json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result
