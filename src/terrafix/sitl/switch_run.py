"""A flight against ArduPlane SITL that spoofs, then jams SITL's GPS1, and measures what
ArduPilot does through terrafix's GNSS switch (bench/sitl.py, tests/sitl).

What is real here: ArduPlane SITL (EKF3, AP_GPS, the mission), terrafix's `ArduPilotLink`
(signing, the pre-flight parameter check, GPS_INPUT at a fixed rate, the switch) and its GNSS
trust gate (`GnssTrustGate`, fed with SITL's receiver as the link delivers it). What stands in
for the camera navigation: a satellite-anchored estimate made from SITL's true state
(SIM_STATE) plus a slowly correlated error of `estimate_error_m` with an honest reported sigma,
so that ArduPilot's behaviour is measured apart from the vision pipeline's accuracy.

Topologies (the candidates of README "ArduPilot in the loop"):
- gps2_primary: SITL's GPS1 = the real receiver, terrafix = GPS2 (GPS_INPUT gps_id 1); the
  switch sets GPS_PRIMARY (docs/ardupilot/terrafix.parm). The shipped one.
- only_gps: terrafix is ArduPilot's only GPS (GPS1_TYPE 14, gps_id 0) and relays the receiver
  while it is trusted, its own estimate when not; ArduPilot is never switched.
- extnav: SITL's GPS1 only; terrafix sends VISION_POSITION_ESTIMATE and the switch is
  MAV_CMD_SET_EKF_SOURCE_SET 2 with EK3_SRC2_POSXY 6 (ExternalNav).

Timeline: take off in AUTO onto a loop over the imagery; `settle_s` after reaching it SITL's
GPS1 starts drifting (SIM_GPS1_GLTCH_X/Y, degrees, ramped at `spoof_rate_mps`); the gate
closes and terrafix switches ArduPilot; `jam_after_switch_s` later GPS1 is jammed
(SIM_GPS1_ENABLE 0) for `jam_s`; then the receiver comes back clean, the gate reopens (>= 10 s
stable and an anchor agreeing) and ArduPilot is switched back. Optionally the companion then
dies while ArduPilot is on terrafix (gps2_primary: GPS_AUTO_SWITCH 4 must fall back to GPS1).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from terrafix.autopilot import constants as C
from terrafix.autopilot.ardupilot import ArduPilotLink, ArduPilotLinkConfig, FcCallbacks
from terrafix.estimation.config import IntegrityConfig
from terrafix.estimation.events import GnssTrustChanged
from terrafix.estimation.gnss_gate import GnssObservation, GnssTrustGate
from terrafix.geo import LocalFrame
from terrafix.measurements import GnssSample, NavSolution, SourceLabel
from terrafix.sitl.control import (
    CMD_DO_JUMP,
    CMD_NAV_LOITER_UNLIM,
    CMD_NAV_TAKEOFF,
    CMD_NAV_WAYPOINT,
    PLANE_MODE_AUTO,
    PLANE_MODE_MANUAL,
    SitlControl,
    horizontal_error_m,
    mission_item,
    request_rates,
)
from terrafix.sitl.process import SERIAL1_PORT, ArduPlaneSitl, SitlError

log = logging.getLogger(__name__)
mavlink = C.DIALECT

Topology = Literal["gps2_primary", "only_gps", "extnav"]
TOPOLOGIES: tuple[str, ...] = ("gps2_primary", "only_gps", "extnav")
DEMO_HOME = (40.13771813135926, -105.14030382558585, 1520.0, 45.0)
"""The demo's take-off point: the centre of the dgsamples WV3 imagery (sim/scenarios/demo.toml
takes it as origin), on the ground at 1520 m, heading 45 deg."""
DEG_PER_M_LAT = 1.0 / 111_132.0

TOPOLOGY_PARAMS: dict[str, dict[str, float]] = {
    "gps2_primary": {},
    "only_gps": {"GPS1_TYPE": 14.0, "GPS2_TYPE": 0.0, "GPS_AUTO_SWITCH": 0.0},
    "extnav": {"GPS2_TYPE": 0.0, "GPS_AUTO_SWITCH": 1.0, "VISO_TYPE": 1.0,
               "VISO_POS_M_NSE": 3.0, "EK3_SRC2_POSXY": 6.0, "EK3_SRC2_VELXY": 0.0,
               "EK3_SRC2_POSZ": 1.0, "EK3_SRC2_VELZ": 0.0, "EK3_SRC2_YAW": 1.0},
}
COMMON_PARAMS = {"SIM_GPS1_ENABLE": 1.0, "RTL_AUTOLAND": 0.0}


@dataclass(frozen=True)
class SwitchRunConfig:
    topology: Topology = "gps2_primary"
    home: tuple[float, float, float, float] = DEMO_HOME
    loop_radius_m: float = 190.0
    loop_alt_m: float = 150.0
    loops: int = 4
    settle_s: float = 15.0
    spoof_rate_mps: float = 0.5
    spoof_bearing_deg: float = 60.0
    jam_after_switch_s: float = 25.0
    jam_s: float = 40.0
    reopen_timeout_s: float = 90.0
    companion_death: bool = True
    death_observe_s: float = 25.0
    estimate_sigma_m: float = 3.0
    estimate_error_m: float = 1.5
    estimate_error_tau_s: float = 20.0
    seed: int = 1
    timeout_s: float = 1100.0


@dataclass
class _Log:
    """Everything the run measured, on the companion's monotonic clock."""

    events: list[tuple[float, str]] = field(default_factory=list)
    published: list[tuple[int, float, float]] = field(default_factory=list)
    spoof: list[tuple[int, float]] = field(default_factory=list)
    gate: list[tuple[int, bool, str]] = field(default_factory=list)

    def event(self, what: str) -> None:
        self.events.append((time.monotonic(), what))
        log.info("sitl run: %s", what)


class _Estimate:
    """Truth plus an AR(1) horizontal error of sigma `err` and correlation time `tau`."""

    def __init__(self, cfg: SwitchRunConfig) -> None:
        self.rng = np.random.default_rng(cfg.seed)
        self.err = cfg.estimate_error_m
        self.tau = cfg.estimate_error_tau_s
        self.e = np.zeros(2)
        self.t_last: int | None = None

    def error_at(self, t_ns: int) -> np.ndarray:
        if self.t_last is not None:
            dt = max(0.0, (t_ns - self.t_last) * 1e-9)
            a = math.exp(-dt / self.tau)
            self.e = a * self.e + math.sqrt(1 - a * a) * self.err * self.rng.standard_normal(2)
        else:
            self.e = self.err * self.rng.standard_normal(2)
        self.t_last = t_ns
        return self.e


def _loop_mission(cfg: SwitchRunConfig, frame: LocalFrame) -> list[Any]:
    r = cfg.loop_radius_m
    corners = [(r * math.cos(math.radians(a)), r * math.sin(math.radians(a)))
               for a in range(45, 405, 45)]  # clockwise octagon from the north-east
    lat0, lon0 = cfg.home[0], cfg.home[1]
    items = [mission_item(0, CMD_NAV_WAYPOINT, lat0, lon0, 0.0),
             mission_item(1, CMD_NAV_TAKEOFF, lat0, lon0, cfg.loop_alt_m,
                          (15.0, 0.0, 0.0, 0.0))]
    first = len(items)
    for n, e in corners:
        lat, lon, _ = frame.ned_to_lla(np.array([n, e, 0.0]))
        items.append(mission_item(len(items), CMD_NAV_WAYPOINT, float(lat), float(lon),
                                  cfg.loop_alt_m))
    items.append(mission_item(len(items), CMD_DO_JUMP, 0.0, 0.0, 0.0,
                              (float(first), float(cfg.loops - 1), 0.0, 0.0)))
    items.append(mission_item(len(items), CMD_NAV_LOITER_UNLIM, lat0, lon0, cfg.loop_alt_m))
    return items


def _solution(t_ns: int, lat: float, lon: float, alt: float, v_ned, sigma: float,
              yaw: float) -> NavSolution:
    return NavSolution(
        t_ns=t_ns, lat_deg=lat, lon_deg=lon, alt_m=alt, v_ned_mps=np.asarray(v_ned, float),
        cov_p_ned_m2=np.diag([sigma**2, sigma**2, 25.0]), cov_v_ned_m2s2=np.eye(3) * 0.25,
        yaw_rad=yaw, label=SourceLabel.SATELLITE_ANCHORED, anchor_age_s=0.5,
        gnss_trusted=False)


class SwitchRun:
    """One run (see the module docstring). Call `run()` inside a private network namespace."""

    def __init__(self, cfg: SwitchRunConfig) -> None:
        self.cfg = cfg
        self.frame = LocalFrame(cfg.home[0], cfg.home[1], cfg.home[2])
        self.log = _Log()
        self.est = _Estimate(cfg)
        self.gate = GnssTrustGate(IntegrityConfig(), True)
        self.gnss_q: queue.Queue[GnssSample] = queue.Queue()
        self.stop = threading.Event()
        self.spoof_ne = np.zeros(2)
        self.jammed = False
        self.trusted = True
        self.latest_est: tuple[int, np.ndarray] | None = None
        self.t_spoof_start: float | None = None
        self.t_gate_closed: float | None = None
        self.t_gate_reopened: float | None = None
        self.t_jam: float | None = None
        self.param_check: dict[str, Any] = {}
        self.switch_log: list[tuple[float, Any]] = []
        self._lock = threading.Lock()

    def _on_switch(self, result) -> None:
        self.switch_log.append((time.monotonic(), result))
        self.log.event(f"switch: {result}")

    # --- set-up -------------------------------------------------------------------------------
    def _link_config(self) -> ArduPilotLinkConfig:
        topo = self.cfg.topology
        return ArduPilotLinkConfig(
            connection=f"tcp:127.0.0.1:{SERIAL1_PORT}", gps_input_rate_hz=10.0,
            gps_id=0 if topo == "only_gps" else 1,
            gnss_switch="ekf_source_set" if topo == "extnav" else "gps_primary",
            check_fc_parameters=topo == "gps2_primary", signing_timeout_s=5.0)

    flight_params: ClassVar[Mapping[str, float]] = {}
    """More ArduPlane parameters for this kind of run (SITL defaults file)."""

    def _make_link(self) -> ArduPilotLink:
        return ArduPilotLink(self._link_config(),
                             FcCallbacks(on_gnss=self.gnss_q.put_nowait,
                                         on_gnss_switch=self._on_switch))

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        params = {**COMMON_PARAMS, **TOPOLOGY_PARAMS[cfg.topology], **self.flight_params}
        t_run0 = time.monotonic()
        with ArduPlaneSitl(cfg.home, params=params) as sitl:
            ctl = SitlControl()
            self.ctl = ctl
            try:
                ctl.start()
                self.log.event("SITL booted, SERIAL0 up")
                link = self._make_link()
                self.link = link
                try:
                    result = self._fly(ctl, link, t_run0)
                finally:
                    self.stop.set()
                    link.close()
            except Exception:
                log.error("SITL log tail:\n%s", sitl.log_text()[-3000:])
                raise
            finally:
                ctl.close()
        return result

    def _start_companion(self, link: ArduPilotLink) -> None:
        """The companion's take-off: signed link, parameter check, estimate and gate threads,
        GPS_INPUT output."""
        cfg = self.cfg
        link.open()
        if not link.wait_for_fc(60.0):
            raise SitlError("no HEARTBEAT from SITL on SERIAL1")
        sig = link.establish_signing()
        self.log.event(f"signing established in {sig.elapsed_s:.2f} s ({sig.attempts} tries)")
        request_rates(link.channel, (sig.fc_system_id, sig.fc_component_id),
                      {C.MSG_GPS_RAW_INT: 5.0})
        if cfg.topology == "gps2_primary":
            t0 = time.monotonic()
            values = link.check_switch_parameters()
            self.param_check = {"values": values, "seconds": time.monotonic() - t0}
            self.log.event(f"pre-flight parameter check passed: {values}")
            link.set_gnss_trusted(True, force=True)
        threads = [threading.Thread(target=self._publisher, daemon=True, name="estimate"),
                   threading.Thread(target=self._gate_loop, daemon=True, name="gate")]
        for t in threads:
            t.start()
        if cfg.topology != "extnav":
            link.start_output()

    def _on_gate_event(self, ev: object) -> None:
        """A change of the gate's GNSS trust: logged, timed, and (except only_gps, where
        ArduPilot has only terrafix) ArduPilot switched."""
        if not isinstance(ev, GnssTrustChanged):
            return
        self.log.gate.append((ev.t_ns, ev.trusted, ev.reason))
        self.log.event(f"gate {'opened' if ev.trusted else 'closed'}: {ev.reason}")
        with self._lock:
            self.trusted = ev.trusted
        if ev.trusted:
            self.t_gate_reopened = time.monotonic()
        elif self.t_gate_closed is None:
            self.t_gate_closed = time.monotonic()

    def _fly(self, ctl: SitlControl, link: ArduPilotLink, t_run0: float) -> dict[str, Any]:
        cfg = self.cfg
        self._start_companion(link)
        self._wait_ekf_ready(ctl)
        ctl.upload_mission(_loop_mission(cfg, self.frame))
        self.n_items = len(_loop_mission(cfg, self.frame))
        self.log.event(f"mission uploaded ({self.n_items} items, MISSION_ITEM_INT)")
        self._arm_auto(ctl)
        t_takeoff = time.monotonic()
        deadline = t_run0 + cfg.timeout_s
        # reach the loop, settle, then spoof
        self._wait(lambda: self._rel_alt(ctl) > 0.8 * cfg.loop_alt_m and self._seq(ctl) >= 3,
                   deadline, "reaching the loop")
        self.log.event("on the loop")
        self._sleep(cfg.settle_s)
        self.t_spoof_start = time.monotonic()
        self.log.event("spoof drift starts")
        threading.Thread(target=self._spoofer, daemon=True, name="spoofer").start()
        self._wait(lambda: self._on_terrafix_since() is not None, deadline,
                   "the switch to terrafix")
        self._sleep(cfg.jam_after_switch_s)
        self._jam(ctl, True)
        self._sleep(cfg.jam_s)
        self._jam(ctl, False)  # the receiver comes back clean
        t_restore = time.monotonic()
        self._wait(lambda: self.trusted, min(deadline, t_restore + cfg.reopen_timeout_s),
                   "GNSS trust to return", required=False)
        t_back = None
        if self.trusted:
            self._wait(lambda: self._switched_back() is not None, deadline,
                       "the switch back", required=False)
            t_back = self._switched_back()
            self._sleep(10.0)
        t_death = None
        if cfg.companion_death and cfg.topology == "gps2_primary":
            t_death = self._companion_death(link)
        self._wait(lambda: self._seq(ctl) >= self.n_items - 1, deadline,
                   "the mission to complete", required=False)
        self._sleep(3.0)
        out_stats = link.output_stats() if t_death is None else self._stats_before_death
        return self._metrics(ctl, link, t_takeoff, t_restore, t_back, t_death, out_stats,
                             time.monotonic() - t_run0)

    def _wait_ekf_ready(self, ctl: SitlControl) -> None:
        def ready() -> bool:
            with ctl.lock:
                e = ctl.ekf[-1] if ctl.ekf else None
            return e is not None and e.aiding_horizontal
        self._wait(ready, time.monotonic() + 120.0, "EKF3 to aid with GPS")
        self.log.event("EKF3 aiding")

    def _arm_auto(self, ctl: SitlControl) -> None:
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            if ctl.set_mode(PLANE_MODE_AUTO) and ctl.arm() == C.RESULT_ACCEPTED:
                self.log.event("armed in AUTO")
                return
            # some versions arm only in a manual mode: arm there, then AUTO
            if ctl.set_mode(PLANE_MODE_MANUAL) and ctl.arm() == C.RESULT_ACCEPTED \
                    and ctl.set_mode(PLANE_MODE_AUTO):
                self.log.event("armed in MANUAL, then AUTO")
                return
            time.sleep(2.0)
        raise SitlError("SITL refused to arm in AUTO: " + " | ".join(ctl.texts_since(0)[-8:]))

    # --- helpers ------------------------------------------------------------------------------
    def _wait(self, pred, deadline: float, what: str, required: bool = True) -> None:
        while not pred():
            if time.monotonic() > deadline:
                if required:
                    raise SitlError(f"timed out waiting for {what}; last texts: "
                                    + " | ".join(self.ctl.texts_since(0)[-8:]))
                self.log.event(f"timed out waiting for {what}")
                return
            time.sleep(0.1)

    @staticmethod
    def _sleep(s: float) -> None:
        time.sleep(s)

    @staticmethod
    def _rel_alt(ctl: SitlControl) -> float:
        p = ctl.latest_position()
        return -1.0 if p is None else p.rel_alt_m

    @staticmethod
    def _seq(ctl: SitlControl) -> int:
        with ctl.lock:
            return ctl.mission_current[-1][1] if ctl.mission_current else -1

    def _on_terrafix_since(self) -> float | None:
        """When ArduPilot went onto terrafix (the switch made and, for the switches ArduPilot
        confirms, confirmed)."""
        if self.cfg.topology == "only_gps":
            return self.t_gate_closed
        for t, s in list(self.switch_log):
            if not s.trusted and s.confirmed:
                return t
        return None

    def _switched_back(self) -> float | None:
        if self.cfg.topology == "only_gps":
            return self.t_gate_reopened
        if self.t_gate_reopened is None:
            return None
        after = [t for t, s in list(self.switch_log)
                 if s.trusted and s.confirmed and t >= self.t_gate_reopened - 1.0]
        return after[0] if after else None

    # --- threads ------------------------------------------------------------------------------
    def _publisher(self) -> None:
        """20 Hz: the stand-in estimate (and what the link sends from it)."""
        cfg = self.cfg
        while not self.stop.wait(0.05):
            tr = self.ctl.latest_truth()
            if tr is None:
                continue
            p = self.frame.lla_to_ned(tr.lat_deg, tr.lon_deg, tr.alt_m)
            now = time.monotonic_ns()
            dt = (now - tr.t_ns) * 1e-9
            ne = np.array([p[0] + tr.v_ned[0] * dt, p[1] + tr.v_ned[1] * dt])
            ne_est = ne + self.est.error_at(now)
            with self._lock:
                self.latest_est = (now, ne_est)
                trusted = self.trusted
                spoof = self.spoof_ne.copy()
                jammed = self.jammed
            if cfg.topology == "only_gps" and trusted and not jammed:
                # terrafix relays the receiver: in this topology SITL's spoofed GNSS reaches
                # ArduPilot only through us (the receiver = truth + the spoof offset)
                ne_out, sigma = ne + spoof, 1.0
            else:
                ne_out, sigma = ne_est, cfg.estimate_sigma_m
            lat, lon, _ = self.frame.ned_to_lla(np.array([ne_out[0], ne_out[1], p[2]]))
            self.log.published.append((now, float(lat), float(lon)))
            if cfg.topology == "extnav":
                self._send_extnav(ne_est, p[2], tr)
            else:
                self.link.publish(_solution(now, float(lat), float(lon), tr.alt_m, tr.v_ned,
                                            sigma, tr.yaw_rad))

    def _send_extnav(self, ne: np.ndarray, d: float, tr) -> None:
        """VISION_POSITION_ESTIMATE in the NED frame of the home point (SITL's GPS1 has no
        noise by default, so EKF3's origin is home)."""
        usec = time.monotonic_ns() // 1000
        cov = [0.0] * 21
        cov[0] = cov[6] = self.cfg.estimate_sigma_m ** 2
        cov[11] = 25.0
        self.link.channel.send(mavlink.MAVLink_vision_position_estimate_message(
            usec, float(ne[0]), float(ne[1]), float(d), tr.roll_rad, tr.pitch_rad, tr.yaw_rad,
            cov, 0))

    def _receiver_samples(self) -> GnssSample | None:
        """The receiver as the gate sees it: from the link (SITL's GPS1 in GPS_RAW_INT), or,
        with only_gps, computed here (ArduPilot does not read SITL's receiver then)."""
        if self.cfg.topology != "only_gps":
            try:
                return self.gnss_q.get(timeout=0.2)
            except queue.Empty:
                return None
        time.sleep(0.2)
        tr = self.ctl.latest_truth()
        if tr is None:
            return None
        with self._lock:
            spoof, jammed = self.spoof_ne.copy(), self.jammed
        p = self.frame.lla_to_ned(tr.lat_deg, tr.lon_deg, tr.alt_m)
        lat, lon, _ = self.frame.ned_to_lla(np.array([p[0] + spoof[0], p[1] + spoof[1], p[2]]))
        return GnssSample(time.monotonic_ns(), float(lat), float(lon), tr.alt_m,
                          np.asarray(tr.v_ned), 1.0, 2.0, 1 if jammed else 3, 0 if jammed else 12)

    def _gate_loop(self) -> None:
        cfg = self.cfg
        last_anchor = 0.0
        while not self.stop.is_set():
            g = self._receiver_samples()
            with self._lock:
                est = self.latest_est
            if g is None or est is None:
                continue
            _, ne_est = est
            usable = g.fix_type >= 3 and math.isfinite(g.lat_deg)
            events = []
            if usable:
                p = self.frame.lla_to_ned(g.lat_deg, g.lon_deg, g.alt_m)
                y = p[:2] - ne_est
                var_g = max(g.h_acc_m if math.isfinite(g.h_acc_m) else 99.0, 1.5) ** 2
                S = np.eye(2) * (cfg.estimate_sigma_m ** 2 + var_g)
                nis = float(y @ np.linalg.solve(S, y))
                v = g.v_ned_mps[:2] if np.all(np.isfinite(g.v_ned_mps[:2])) else np.zeros(2)
                obs = GnssObservation(g.t_ns, g.spoofing, g.jamming, True, nis, y, S, p[:2], v,
                                      var_g)
            else:
                obs = GnssObservation(g.t_ns, g.spoofing, g.jamming, False, math.nan, None)
            events += self.gate.observe(obs)
            now = time.monotonic()
            if now - last_anchor >= 1.0:
                last_anchor = now
                anchor = ne_est + self.est.rng.normal(0.0, 1.0, 2)
                events += self.gate.on_anchor(time.monotonic_ns(), anchor,
                                              np.eye(2) * cfg.estimate_sigma_m ** 2)
            for ev in events:
                if isinstance(ev, GnssTrustChanged):
                    self._on_gate_event(ev)
                    if self.cfg.topology != "only_gps":
                        self.link.set_gnss_trusted(ev.trusted)

    def _spoofer(self) -> None:
        """Ramp SITL's GPS1 glitch offset (degrees) until the receiver is restored."""
        cfg = self.cfg
        b = math.radians(cfg.spoof_bearing_deg)
        k_lon = DEG_PER_M_LAT / math.cos(math.radians(cfg.home[0]))
        assert self.t_spoof_start is not None
        while not self.stop.is_set() and not getattr(self, "_spoof_over", False):
            d = cfg.spoof_rate_mps * (time.monotonic() - self.t_spoof_start)
            ne = np.array([d * math.cos(b), d * math.sin(b)])
            with self._lock:
                self.spoof_ne = ne
            self.log.spoof.append((time.monotonic_ns(), d))
            if cfg.topology != "only_gps":
                self.ctl.set_param("SIM_GPS1_GLTCH_X", ne[0] * DEG_PER_M_LAT, required=False)
                self.ctl.set_param("SIM_GPS1_GLTCH_Y", ne[1] * k_lon, required=False)
            time.sleep(0.5)

    def _jam(self, ctl: SitlControl, on: bool) -> None:
        if on:
            with self._lock:
                self.jammed = True
            if self.cfg.topology != "only_gps":
                ctl.set_param("SIM_GPS1_ENABLE", 0.0)
            self.t_jam = time.monotonic()
            self.log.event("GPS1 jammed (SIM_GPS1_ENABLE 0)")
            return
        self._spoof_over = True
        time.sleep(0.6)
        with self._lock:
            self.jammed = False
            self.spoof_ne = np.zeros(2)
        if self.cfg.topology != "only_gps":
            ctl.set_param("SIM_GPS1_GLTCH_X", 0.0)
            ctl.set_param("SIM_GPS1_GLTCH_Y", 0.0)
            ctl.set_param("SIM_GPS1_ENABLE", 1.0)
        self.log.event("GPS1 restored, no spoof")

    def _companion_death(self, link: ArduPilotLink) -> float:
        """Put ArduPilot on terrafix, then stop terrafix altogether."""
        n = len(link.switches())
        link.set_gnss_trusted(False)
        self._wait(lambda: len(link.switches()) > n, time.monotonic() + 5.0,
                   "the switch before the companion's death", required=False)
        self._sleep(5.0)
        self._stats_before_death = link.output_stats()
        self._kill_companion(link)
        t = time.monotonic()
        self.log.event("companion dead (GPS_INPUT stopped, link closed)")
        self._sleep(self.cfg.death_observe_s)
        return t

    def _kill_companion(self, link: ArduPilotLink) -> None:
        self.stop.set()
        link.close()

    # --- metrics ------------------------------------------------------------------------------
    def _metrics(self, ctl: SitlControl, link: ArduPilotLink, t_takeoff: float,
                 t_restore: float, t_back: float | None, t_death: float | None, out_stats,
                 wall_s: float) -> dict[str, Any]:
        ns = 1e9
        with ctl.lock:
            truth = list(ctl.truth)
            pos = list(ctl.positions)
            ekf = list(ctl.ekf)
            texts = list(ctl.texts)
            seqs = list(ctl.mission_current)
        tt = np.array([t.t_ns for t in truth], dtype=np.int64)

        def truth_at(t_ns: int):
            j = _nearest(tt, t_ns, 0.1)
            return None if j is None else truth[j]

        def err(p) -> float | None:
            tr = truth_at(p.t_ns)
            return None if tr is None else horizontal_error_m(p.lat_deg, p.lon_deg,
                                                              tr.lat_deg, tr.lon_deg)

        mono_ns = 0  # time.monotonic() and time.monotonic_ns() read the same clock

        def to_ns(t: float | None) -> int | None:
            return None if t is None else int(t * ns)

        t_on = self._on_terrafix_since()
        t_end_main = t_death if t_death is not None else time.monotonic()

        def aiding_gaps(t0: float, t1: float) -> list[tuple[int, int]]:
            """(start ns, end ns) of each stretch EKF3 reported no absolute horizontal
            position (EKF_STATUS_REPORT)."""
            gaps: list[tuple[int, int]] = []
            a, b = to_ns(t0), to_ns(t1)
            sel = [e for e in ekf if a <= e.t_ns <= b]
            for e0, e1 in itertools.pairwise(sel):
                if not e0.aiding_horizontal:
                    if gaps and gaps[-1][1] == e0.t_ns:
                        gaps[-1] = (gaps[-1][0], e1.t_ns)
                    else:
                        gaps.append((e0.t_ns, e1.t_ns))
            return gaps

        def aiding_lost(t0: float, t1: float) -> float:
            return sum(b - a for a, b in aiding_gaps(t0, t1)) / ns

        # when ArduPilot's own position reached terrafix's after the switch (the EKF3 reset
        # onto the new receiver): within REACHED_M of what terrafix was sending then
        published = self._published_track()
        t_reset = None
        jump = None
        if t_on is not None:
            before = [p for p in pos if p.t_ns < to_ns(t_on)]
            for p in pos:
                if p.t_ns >= to_ns(t_on):
                    d = published.distance_m(p.t_ns, p.lat_deg, p.lon_deg)
                    if d is not None and d < REACHED_M:
                        t_reset = p.t_ns / ns - mono_ns / ns
                        e, eb = err(p), err(before[-1]) if before else None
                        jump = None if e is None or eb is None else eb - e
                        break
        spoof_at = None
        if t_reset is not None or t_on is not None:
            t_ref = to_ns(t_reset if t_reset is not None else t_on)
            prior = [d for t, d in self.log.spoof if t <= t_ref]
            spoof_at = prior[-1] if prior else 0.0
        spoof_at_close = None
        if self.t_gate_closed is not None:
            prior = [d for t, d in self.log.spoof if t <= to_ns(self.t_gate_closed)]
            spoof_at_close = prior[-1] if prior else 0.0
        on_tf_end = t_back if t_back is not None else t_end_main
        errs_on = [e for p in pos if t_reset is not None and to_ns(t_reset) <= p.t_ns
                   <= to_ns(on_tf_end) and (e := err(p)) is not None]
        errs_all = [e for p in pos if to_ns(t_takeoff) <= p.t_ns <= to_ns(t_end_main)
                    and (e := err(p)) is not None]
        death: dict[str, Any] | None = None
        if t_death is not None:
            errs_d = [e for p in pos if to_ns(t_death) <= p.t_ns and (e := err(p)) is not None]
            death = {"ekf_aiding_lost_s": aiding_lost(t_death, time.monotonic()),
                     "ardupilot_error_p95_m": _p95(errs_d),
                     "ardupilot_error_max_m": max(errs_d) if errs_d else None,
                     "texts": [x for t, _, x in texts if t >= to_ns(t_death)][:12]}
        completed = any(s >= self.n_items - 1 for _, s in seqs)
        phases = self._phases(t_takeoff, t_on, t_restore, t_back, t_end_main)
        rel = lambda t: None if t is None or self.t_spoof_start is None else round(  # noqa: E731
            t - self.t_spoof_start, 2)
        return {
            "topology": self.cfg.topology,
            "config": asdict(self.cfg),
            "wall_s": round(wall_s, 1),
            "signing": True,
            "param_check": self.param_check,
            "ekf_aiding_lost_s": round(aiding_lost(t_takeoff, t_end_main), 2),
            "ekf_aiding_gaps": [
                {"after_spoof_s": rel(a / ns), "seconds": round((b - a) / ns, 2),
                 "fc_texts_around": [x for t, _, x in texts if a - 2 * ns <= t <= b + 2 * ns]}
                for a, b in aiding_gaps(t_takeoff, t_end_main)],
            "stopped_aiding_texts": [x for _, _, x in texts if "stopped aiding" in x],
            "mission_completed": completed,
            "gate_closed_after_spoof_s": rel(self.t_gate_closed),
            "switch_confirmed_after_spoof_s": rel(t_on),
            "switch_to_terrafix_s": rel(t_reset),
            "spoof_offset_at_gate_close_m": _r(spoof_at_close),
            "spoof_offset_at_switch_m": _r(spoof_at),
            "position_jump_at_switch_m": _r(jump),
            "ardupilot_error_p95_m": _p95(errs_on),
            "ardupilot_error_max_on_terrafix_m": _r(max(errs_on)) if errs_on else None,
            "ardupilot_error_p95_whole_flight_m": _p95(errs_all),
            "ardupilot_error_by_phase": {
                name: {"p95_m": _p95(es), "max_m": _r(max(es)) if es else None}
                for name, (a, b) in phases.items()
                if (es := [e for p in pos if a is not None and b is not None
                           and to_ns(a) <= p.t_ns < to_ns(b) and (e := err(p)) is not None])},
            "gnss_trust_returned_after_restore_s": (
                None if self.t_gate_reopened is None else round(self.t_gate_reopened
                                                                 - t_restore, 2)),
            "switch_back_after_restore_s": None if t_back is None else round(
                t_back - t_restore, 2),
            "gps_input_max_gap_ms": _r(out_stats.max_gap_ms) if self.cfg.topology != "extnav"
            else None,
            "gps_input_sent": out_stats.sent,
            "switches": [asdict(s) for s in link.switches()],
            "gate": [(round(t / ns - mono_ns / ns - (self.t_spoof_start or 0), 2), tr, r)
                     for t, tr, r in self.log.gate],
            "companion_death": death,
            "events": [(round(t - (self.t_spoof_start or t), 2), w) for t, w in self.log.events],
            "fc_texts": [x for _, _, x in texts][-60:],
            **self._extra_metrics(truth_at, to_ns(t_reset), to_ns(on_tf_end), phases),
        }

    def _phases(self, t_takeoff: float, t_on: float | None, t_restore: float,
                t_back: float | None, t_end: float) -> dict[str, tuple[float | None,
                                                                   float | None]]:
        """The flight's phases (monotonic s): clean GNSS, spoofed before the switch, on
        terrafix with the spoofed receiver, jammed, restored before the switch back, after."""
        return {"clean_gnss": (t_takeoff, self.t_spoof_start),
                "spoofed_before_switch": (self.t_spoof_start, t_on),
                "on_terrafix_spoofed": (t_on, self.t_jam),
                "jammed": (self.t_jam, t_restore),
                "restored_before_switch_back": (t_restore, t_back),
                "after_switch_back": (t_back, t_end)}

    def _published_track(self) -> PublishedTrack:
        """What terrafix sent ArduPilot, by time (here: the stand-in estimate)."""
        return PublishedTrack.of(self.log.published)

    def _extra_metrics(self, truth_at, t_on_ns: int | None, t_off_ns: int | None,
                       phases: Mapping[str, tuple[float | None, float | None]]
                       ) -> dict[str, Any]:
        """More figures from a run whose companion is more than the stand-in estimate."""
        return {}


REACHED_M = 5.0
"""ArduPilot is on terrafix once its own position is this close to what terrafix sent."""


@dataclass
class PublishedTrack:
    """Positions terrafix sent, by companion time: t_ns (N,), lat/lon (N,) degrees."""

    t_ns: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray

    @classmethod
    def of(cls, rows: list[tuple[int, float, float]]) -> PublishedTrack:
        a = np.array(rows, dtype=np.float64).reshape(-1, 3)
        order = np.argsort(a[:, 0], kind="stable")
        return cls(a[order, 0].astype(np.int64), a[order, 1], a[order, 2])

    def distance_m(self, t_ns: int, lat_deg: float, lon_deg: float,
                   within_s: float = 0.3) -> float | None:
        """Horizontal distance from the position sent nearest t_ns (None if none within
        `within_s`)."""
        j = _nearest(self.t_ns, t_ns, within_s)
        if j is None:
            return None
        return horizontal_error_m(lat_deg, lon_deg, float(self.lat_deg[j]),
                                  float(self.lon_deg[j]))


def _nearest(t_sorted_ns: np.ndarray, t_ns: int, within_s: float) -> int | None:
    """Index of the time in t_sorted_ns (N,) nearest t_ns, None if none within `within_s`."""
    i = int(np.searchsorted(t_sorted_ns, t_ns))
    cands = [k for k in (i - 1, i) if 0 <= k < len(t_sorted_ns)]
    if not cands:
        return None
    j = min(cands, key=lambda k: abs(int(t_sorted_ns[k]) - t_ns))
    return j if abs(int(t_sorted_ns[j]) - t_ns) <= within_s * 1e9 else None


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 2)


def _p95(xs: list[float]) -> float | None:
    return None if not xs else round(float(np.percentile(xs, 95)), 2)


def main_in_netns(cfg: SwitchRunConfig, out: Path) -> dict[str, Any]:
    """Run one flight (inside the private namespace) and write its JSON to `out`."""
    result = SwitchRun(cfg).run()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m terrafix.sitl.switch_run --topology T --out FILE` (inside the namespace)."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--topology", default="gps2_primary", choices=TOPOLOGIES)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--no-death", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--navigation", choices=("terrafix", "stand-in"), default="terrafix",
                    help="terrafix: the onboard program with its camera navigation (closed "
                    "loop); stand-in: SITL's truth plus a correlated error (ArduPilot's side "
                    "only)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = SwitchRunConfig(topology=args.topology, companion_death=not args.no_death,
                          seed=args.seed)
    if args.navigation == "terrafix":
        from terrafix.sitl.navigation_run import main_in_netns as closed_loop

        closed_loop(cfg, args.out)
    else:
        main_in_netns(cfg, args.out)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
