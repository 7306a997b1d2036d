"""Build the flight review page: `build_review(flight_dir, out_dir, truth=None)`.

Everything on the page comes from the flight log (see `flight_data.py`); the map imagery
under the track from the tile cache the recorded config names (read-only), when it is there;
the error against truth only with `truth` (a simulator dataset: the log's companion times are
mapped to the dataset's through the FC clock offset recorded at take-off).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terrafix.eval.metrics import radius95_m
from terrafix.eval.records import ResultTrack
from terrafix.eval.verdicts import Verdict, verdict_table_html, verdicts
from terrafix.review import page as P
from terrafix.review import plots
from terrafix.review.errors import ReviewError
from terrafix.review.flight_data import (
    EVENT_TOPIC,
    FRAME_TOPIC,
    LATENCY_TOPIC,
    STATUS_TOPIC,
    SUMMARY_TOPIC,
    TAKEOFF_TOPIC,
    THERMAL_TOPIC,
    TILE_NAMES,
    UPLOAD_NAMES,
    FlightData,
    frame_drop_rate,
    latency_figures,
    load_flight,
    output_figures,
    recorder_figures,
)

log = logging.getLogger(__name__)

PAGE_FILE = "review.html"
FIGURES_FILE = "review.json"
INTEGRITY_KINDS = ("SpoofRejected", "GnssTrustChanged", "VisualBlackoutFailsafe",
                   "FailsafeCleared", "HintRequested", "HintApplied", "NoEstimate",
                   "EstimateResumed", "FilterLost", "FilterReset")


@dataclass(frozen=True, slots=True)
class ReviewResult:
    """page: review.html; verdicts: the table's rows; damage: what the reader reported."""

    page: Path
    verdicts: list[Verdict]
    damage: list[str]
    figures: dict[str, Any]


def build_review(flight_dir: str | Path, out_dir: str | Path | None = None,
                 truth: str | Path | None = None) -> ReviewResult:
    """Write review.html (+ PNGs, review.json) for the flight in `flight_dir` into `out_dir`
    (default FLIGHT_DIR/review)."""
    fd = load_flight(flight_dir)
    out = Path(out_dir) if out_dir is not None else Path(flight_dir) / "review"
    out.mkdir(parents=True, exist_ok=True)
    return _Builder(fd, out, Path(truth) if truth is not None else None).build()


class _Builder:
    def __init__(self, fd: FlightData, out: Path, truth: Path | None) -> None:
        self.fd = fd
        self.out = out
        self.truth = truth
        self.t0 = fd.t0_ns
        self.figures: dict[str, Any] = {}
        self.notes: dict[str, str] = {}

    def rel_s(self, t_ns: np.ndarray | list[int] | int) -> np.ndarray:
        return (np.asarray(t_ns, dtype=np.float64) - self.t0) / 1e9

    # --- the page ------------------------------------------------------------------------
    def build(self) -> ReviewResult:
        fd = self.fd
        track = fd.track()
        sections = [
            self.section_track(track),
            self.section_confidence(track),
            self.section_integrity(track),
            self.section_registration(),
            self.section_output(),
            self.section_latency(),
            self.section_recorder(),
            self.section_tiles_upload(),
            self.section_thermal(),
            "<h2>Config</h2>" + P.config_details(fd.config),
        ]
        self.collect_verdict_figures()
        rows = verdicts(self.figures, self.notes)
        head = [self.section_header(track), self.section_damage(),
                "<h2>Verdicts</h2>" + verdict_table_html(rows)]
        html = P.document(f"terrafix flight review {fd.header.flight_id}", head + sections)
        page = self.out / PAGE_FILE
        page.write_text(html, encoding="utf-8")
        (self.out / FIGURES_FILE).write_text(json.dumps(_jsonable(
            {"flight_id": fd.header.flight_id, "damage": fd.damage, "figures": self.figures,
             "verdicts": [dataclasses.asdict(r) for r in rows]}), indent=2) + "\n")
        return ReviewResult(page, rows, list(fd.damage), self.figures)

    def section_header(self, track: ResultTrack | None) -> str:
        h = self.fd.header
        span = (max(r[-1].t_ns for r in self.fd.by_topic.values() if r) - self.t0) / 1e9
        n_sol = 0 if track is None else len(track)
        return (f"<h1>Flight review: {P.esc(h.flight_id)}</h1><p class='meta'>started "
                f"{P.esc(h.start_utc)} · {span:.0f} s logged · {n_sol} solutions · software "
                f"{P.esc(h.software_version)} · config {P.esc(h.config_hash[:12])} · log "
                f"<code>{P.esc(self.fd.folder)}</code></p>")

    def section_damage(self) -> str:
        if not self.fd.damage and self.fd.footer is not None:
            return ""
        items = "".join(f"<li>{P.esc(w)}</li>" for w in self.fd.damage) or (
            "<li>no flight footer: the recording did not close</li>")
        return ("<div class='damage'><b>Damaged log: read up to the damage.</b> Everything "
                "below is what the log held before it; figures that need the closing summary "
                f"come from the last status record instead.<ul>{items}</ul></div>")

    # --- track ---------------------------------------------------------------------------
    def section_track(self, track: ResultTrack | None) -> str:
        if track is None or not np.any(np.isfinite(track.lat_deg)):
            return "<h2>Track</h2>" + P.absent("no navigation solution with a position")
        ok = np.isfinite(track.lat_deg)
        cfg = self.fd.config or {}
        cache = (cfg.get("map") or {}).get("cache")
        bg, why = (None, "the config names no map cache") if not cache else plots.map_under(
            Path(cache), track.lon_deg[ok], track.lat_deg[ok])
        truth_ll = self.truth_lat_lon()
        plots.plot_track(self.out / "track.png", track, self.fd.payloads(FRAME_TOPIC), bg,
                         why, truth_ll)
        labels, counts = np.unique(track.label, return_counts=True)
        shares = [(f"share {lab}", float(c) / len(track)) for lab, c in zip(labels, counts,
                                                                           strict=True)]
        self.figures["map_zoom"] = None if bg is None else bg.z
        note = "" if bg is not None else P.absent(f"No map imagery under the track: {why}.")
        return ("<h2>Track</h2>" + note + P.image("track.png", "track coloured by source label")
                + P.kv_table(shares))

    def truth_lat_lon(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.truth is None:
            return None
        ds = self._dataset()
        step = max(1, len(ds.truth.t_ns) // 5000)
        return ds.truth.lat_deg[::step], ds.truth.lon_deg[::step]

    def _dataset(self) -> Any:
        if not hasattr(self, "_ds"):
            from terrafix.sim.dataset import load_dataset

            try:
                self._ds = load_dataset(self.truth)
            except Exception as exc:
                raise ReviewError(f"--truth {self.truth}: not a simulator dataset ({exc})"
                                  ) from None
        return self._ds

    # --- confidence and truth ------------------------------------------------------------
    def section_confidence(self, track: ResultTrack | None) -> str:
        if track is None:
            return "<h2>Confidence</h2>" + P.absent("no navigation solution in this log")
        t_s = self.rel_s(track.t_ns)
        err = None
        truth_html = ""
        if self.truth is not None:
            err, truth_html = self.truth_error(track)
        plots.plot_confidence(self.out / "confidence.png", t_s, track, err)
        r95 = radius95_m(track.cov_p_ned_m2[:, :2, :2])
        fin = np.isfinite(r95)
        age = track.anchor_age_s[np.isfinite(track.anchor_age_s)]
        rows = [("95% radius median (m)", float(np.median(r95[fin])) if fin.any() else math.nan),
                ("95% radius max (m)", float(np.max(r95[fin])) if fin.any() else math.nan),
                ("anchor age max (s)", float(age.max()) if len(age) else math.nan),
                ("failsafe (no-fix) share", float(np.mean(track.failsafe)))]
        return ("<h2>Reported 95% radius and anchor age</h2>" + P.image(
            "confidence.png", "95% radius and anchor age") + P.kv_table(rows) + truth_html)

    def truth_error(self, track: ResultTrack) -> tuple[tuple[np.ndarray, np.ndarray], str]:
        from terrafix.eval.evaluate import score_track
        from terrafix.eval.metrics import consistency, error_stats
        from terrafix.sim.flight_controller import FC_BOOT_LEAD_NS

        ds = self._dataset()
        offset = None
        for topic in (SUMMARY_TOPIC, STATUS_TOPIC, TAKEOFF_TOPIC):  # final value first
            for rec in reversed(self.fd.payloads(topic)):
                if isinstance(rec, dict) and rec.get("fc_clock_offset_ns") is not None:
                    offset = rec["fc_clock_offset_ns"]
                    break
            if offset is not None:
                break
        if offset is None:
            raise ReviewError(f"{self.fd.folder}: the log holds no FC clock offset (take-off "
                              "record), so its times cannot be matched to the truth")
        shift = int(offset) + FC_BOOT_LEAD_NS
        shifted = dataclasses.replace(track, t_ns=track.t_ns - shift)
        try:
            scored = score_track(shifted, ds)
        except Exception as exc:
            raise ReviewError(f"--truth {self.truth}: {exc}") from None
        acc = error_stats(scored.err_h_m).as_dict()
        cons = consistency(scored.err_ned_m, scored.cov_p_ned_m2).as_dict()
        self.figures.update({k: acc[k] for k in ("within_50m", "within_20m", "p_over_30m",
                                                  "p_over_100m")})
        self.figures["truth"] = {"accuracy": acc, "consistency": cons}
        err_t = self.rel_s(scored.t_ns + shift)
        rows = [(k, v) for k, v in acc.items()] + [
            ("inside the 95% ellipse", cons.get("inside_95")),
            ("NEES (2D) mean", cons.get("nees_mean"))]
        return (err_t, scored.err_h_m), ("<h3>Error against the simulator's truth</h3>"
                                         + P.kv_table(rows))

    # --- integrity -----------------------------------------------------------------------
    def section_integrity(self, track: ResultTrack | None) -> str:
        events = [e for e in self.fd.payloads(EVENT_TOPIC) if isinstance(e, dict)]
        marks = [(float(self.rel_s(int(e["t_ns"]))), str(e.get("kind")))
                 for e in events if e.get("kind") in INTEGRITY_KINDS and "t_ns" in e]
        parts = ["<h2>Labels, GNSS trust and integrity events</h2>"]
        if track is not None:
            plots.plot_timeline(self.out / "timeline.png", self.rel_s(track.t_ns), track,
                                marks)
            parts.append(P.image("timeline.png", "label and GNSS trust timeline"))
        spoof = [e for e in events if e.get("kind") == "SpoofRejected"]
        counts: dict[str, int] = {}
        for e in events:
            counts[str(e.get("kind"))] = counts.get(str(e.get("kind")), 0) + 1
        parts.append(P.kv_table([(f"{k} events", v) for k, v in sorted(counts.items())]
                                or [("events", 0)]))
        self.figures["spoof_rejections"] = len(spoof)
        top = max((int(e.get("count") or 0) for e in spoof), default=0)
        self.figures["spoof_rejections_unrecorded"] = max(0, top - len(spoof))
        if not spoof:
            self.notes["spoof_rejections_unrecorded"] = "no spoof rejection in this flight"
        rows = [[round(float(self.rel_s(int(e["t_ns"]))), 2), e.get("kind"),
                 e.get("severity", ""), e.get("statustext", ""), _event_detail(e)]
                for e in events if e.get("kind") in INTEGRITY_KINDS and "t_ns" in e]
        parts.append("<h3>Every integrity event</h3>" + P.list_table(
            ["t (s)", "event", "severity", "status text", "detail"], rows, limit=2000))
        labels = [[round(float(self.rel_s(int(e["t_ns"]))), 2), e.get("old"), e.get("new")]
                  for e in events if e.get("kind") == "LabelChanged"]
        table = P.list_table(["t (s)", "from", "to"], labels)
        parts.append(f"<h3>Label changes ({len(labels)})</h3>" + (
            table if len(labels) <= 12 else f"<details><summary>all {len(labels)} label "
            f"changes</summary>{table}</details>"))
        return "".join(parts)

    # --- registration --------------------------------------------------------------------
    def section_registration(self) -> str:
        frames = [f for f in self.fd.payloads(FRAME_TOPIC) if isinstance(f, dict)]
        parts = ["<h2>Registration against the map</h2>"]
        if not frames:
            self.figures["registration_attempts"] = self.figures["fixes_fused"] = 0
            return "".join(parts) + P.absent("no frame records in this log")
        reg = [f for f in frames if f.get("registered")]
        outcome = [_outcome(f) for f in reg]
        reasons: dict[str, int] = {}
        for o in outcome:
            reasons[o] = reasons.get(o, 0) + 1
        fused = reasons.get("fused", 0)
        self.figures["registration_attempts"] = len(reg)
        self.figures["fixes_fused"] = fused
        parts.append(P.kv_table([
            ("frames reported", len(frames)),
            ("odometry accepted", sum(bool(f.get("vo_accepted")) for f in frames)),
            ("registration attempts", len(reg)),
            ("fixes accepted by vision", sum(bool(f.get("fix_accepted_by_vision"))
                                             for f in reg)),
            ("fixes fused", fused),
            ("registration ms median", _median([f.get("registration_ms") for f in reg])),
            ("odometry ms median", _median([f.get("vo_ms") for f in frames]))]))
        if reg:
            t = self.rel_s([int(f["t_ns"]) for f in reg])
            plots.plot_registration(self.out / "registration.png", t, outcome)
            parts.append(P.image("registration.png", "registration outcomes"))
            parts.append("<h3>Outcomes</h3>" + P.list_table(
                ["outcome", "attempts"], [[k, v] for k, v in sorted(
                    reasons.items(), key=lambda kv: -kv[1])]))
        else:
            parts.append(P.absent("registration was not attempted (disabled or no map)"))
        return "".join(parts)

    # --- outputs -------------------------------------------------------------------------
    def section_output(self) -> str:
        topic = self.fd.output_topic()
        parts = ["<h2>Position output to the autopilot</h2>"]
        if topic is None:
            return "".join(parts) + P.absent(
                "no position-output topic (GPS_INPUT, MSP, PX4) in this log")
        t = self.fd.output_times_ns()
        f = output_figures(t)
        self.figures.update({k: v for k, v in f.items() if k.startswith("gps_input")})
        for k in ("gps_input_rate_hz", "gps_input_max_gap_ms", "gps_input_jitter_ms"):
            self.notes[k] = "as sent (companion side)"
        fix = [d.get("fix_type") for d in self.fd.payloads(topic) if isinstance(d, dict)]
        no_fix = sum(1 for x in fix if x is not None and x < 3)
        if len(t) > 1:
            plots.plot_output(self.out / "output.png", self.rel_s(t), topic)
            parts.append(P.image("output.png", "output rate and gaps"))
        parts.append(P.kv_table([
            ("topic", topic), ("messages", int(f["count"])),
            ("rate (Hz)", f["gps_input_rate_hz"]), ("max gap (ms)", f["gps_input_max_gap_ms"]),
            ("jitter, std of gaps (ms)", f["gps_input_jitter_ms"]),
            ("gaps over 250 ms", f["gaps_over_250ms"]),
            ("messages without a 3D fix", no_fix)]))
        return "".join(parts)

    def section_latency(self) -> str:
        lat = [d for d in self.fd.payloads(LATENCY_TOPIC) if isinstance(d, dict)]
        parts = ["<h2>Capture → output latency</h2>"]
        f = latency_figures(lat)
        if not f:
            return "".join(parts) + P.absent("no latency records in this log")
        self.figures["latency_p95_ms"] = f["latency_p95_ms"]
        self.figures["latency_max_ms"] = f["latency_max_ms"]
        t = self.rel_s([r.t_ns for r in self.fd.records(LATENCY_TOPIC)])
        total = np.array([d.get("total_ms", math.nan) for d in lat], dtype=float)
        registered = np.array([bool(d.get("registered")) for d in lat])
        plots.plot_latency(self.out / "latency.png", t, total, registered, f["stage_p50_ms"])
        parts.append(P.image("latency.png", "latency by stage"))
        parts.append(P.kv_table([("frames", f["n"]), ("p50 (ms)", f["latency_p50_ms"]),
                                 ("p95 (ms)", f["latency_p95_ms"]),
                                 ("max (ms)", f["latency_max_ms"]),
                                 ("registered frames p95 (ms)",
                                  f["latency_registered_p95_ms"])]))
        parts.append("<h3>By stage (ms from the previous stage)</h3>" + P.list_table(
            ["stage", "p50", "p95"], [[k, f["stage_p50_ms"][k], f["stage_p95_ms"][k]]
                                      for k in f["stage_p50_ms"]]))
        return "".join(parts)

    # --- recorder ------------------------------------------------------------------------
    def section_recorder(self) -> str:
        r = recorder_figures(self.fd)
        parts = ["<h2>Flight data recorder</h2>"]
        if "clean_shutdown" in r:
            self.figures["recorder_clean"] = bool(r["clean_shutdown"])
            self.figures["recorder_unmarked_drops"] = r["unmarked_drops"]
            parts.append(P.kv_table([(k, r[k]) for k in (
                "clean_shutdown", "records_written", "records_dropped", "dropped_overrun",
                "dropped_marked", "lost_disk", "rejected", "bytes_written", "segments",
                "rollovers", "degraded_episodes")]))
            parts.append("<h3>Per producer</h3>" + P.list_table(
                ["topic", "written", "dropped", "lost to disk", "rejected"],
                [[k, v["written"], v["dropped"], v["lost_disk"], v["rejected"]]
                 for k, v in r["producers"].items()]))
        else:
            self.figures["recorder_clean"] = False
            self.figures["recorder_unmarked_drops"] = None
            self.notes["recorder_unmarked_drops"] = "no footer: the drop counters are unknown"
            self.notes["recorder_clean"] = "no footer: " + ("; ".join(self.fd.damage)
                                                            or "recording not closed")
            parts.append(P.absent("No footer (the recording did not close): counters below "
                                  "are what the stream itself marks."))
            parts.append(P.kv_table([("drops marked in the stream", r["dropped_marked"])]))
        parts.append("<h3>Recorder events</h3>" + P.list_table(
            ["kind", "count"], [[k, v] for k, v in sorted(r["events_by_kind"].items())]))
        logs = [(rec.t_ns, rec.data) for rec in self.fd.records("fdr/log")
                if isinstance(rec.data, dict)]
        parts.append(f"<h3>Warnings and errors logged ({len(logs)})</h3>" + P.list_table(
            ["t (s)", "level", "logger", "message"],
            [[round(float(self.rel_s(t)), 2), d.get("level"), d.get("logger"),
              str(d.get("message", ""))[:300]] for t, d in logs], limit=200))
        topics = [[t, len(recs)] for t, recs in sorted(self.fd.by_topic.items())]
        self.figures["topic_records"] = dict(topics)
        parts.append("<h3>Topics</h3>" + P.list_table(["topic", "records read"], topics))
        return "".join(parts)

    def section_tiles_upload(self) -> str:
        parts = ["<h2>In-flight tiles and upload</h2>"]
        out_topic = self.fd.output_topic()
        for title, names in (("In-flight tiles", TILE_NAMES), ("Upload", UPLOAD_NAMES)):
            topics = [t for t in self.fd.matching(names) if t != out_topic]
            if not topics:
                parts.append(f"<h3>{title}</h3>" + P.absent(
                    f"no {title.lower()} topic in this log (none made, or a version that "
                    "does not record them)"))
                continue
            for t in topics:
                recs = [d for d in self.fd.payloads(t) if isinstance(d, dict)]
                parts.append(f"<h3>{title}: <code>{P.esc(t)}</code> ({len(recs)} records)"
                             "</h3>" + _records_digest(recs))
        return "".join(parts)

    def section_thermal(self) -> str:
        parts = ["<h2>Thermal and load</h2>"]
        th = [(r.t_ns, r.data) for r in self.fd.records(THERMAL_TOPIC)
              if isinstance(r.data, dict)]
        st = [(r.t_ns, r.data) for r in self.fd.records(STATUS_TOPIC)
              if isinstance(r.data, dict)]
        if not th and not st:
            return "".join(parts) + P.absent("no thermal or status records in this log")
        if th:
            sources = sorted({str(d.get("source")) for _, d in th})
            throttled = [d.get("throttled") for _, d in th]
            known = [x for x in throttled if x is not None]
            temps = np.array([np.nan if d.get("temperature_c") is None else d["temperature_c"]
                              for _, d in th], dtype=float)
            self.figures["thermal_source"] = ",".join(sources)
            parts.append(P.kv_table([
                ("source", ", ".join(sources)),
                ("polls", len(th)),
                ("throttled share", float(np.mean(known)) if known else "unknown"),
                ("max temperature (°C)", float(np.nanmax(temps)) if np.isfinite(temps).any()
                 else "not reported")]))
        load = np.array([d.get("load_avg_1m", np.nan) for _, d in st], dtype=float)
        temps_plot = np.array([np.nan if d.get("temperature_c") is None else d["temperature_c"]
                               for _, d in th], dtype=float)
        plots.plot_thermal(self.out / "thermal.png", self.rel_s([t for t, _ in th]),
                           temps_plot, self.rel_s([t for t, _ in st]), load)
        parts.append(P.image("thermal.png", "thermal state and CPU load"))
        return "".join(parts)

    # --- verdict figures -----------------------------------------------------------------
    def collect_verdict_figures(self) -> None:
        fd = self.fd
        rate, source = frame_drop_rate(fd)
        if math.isfinite(rate):
            self.figures["frame_drop_rate"] = rate
            self.notes["frame_drop_rate"] = source
        take = fd.last(TAKEOFF_TOPIC) or fd.last(SUMMARY_TOPIC)
        if take is not None and take.get("takeoff_load_s") is not None:
            self.figures["takeoff_load_s"] = float(take["takeoff_load_s"])
        frames = [f for f in fd.payloads(FRAME_TOPIC) if isinstance(f, dict)]
        rmse = [f.get("reprojection_rmse_px") for f in frames
                if f.get("fix_accepted_by_vision") and f.get("reprojection_rmse_px") is not None]
        if rmse:
            self.figures["reprojection_rmse_max_px"] = float(max(rmse))


def _outcome(f: dict[str, Any]) -> str:
    if f.get("fix_fused"):
        return "fused"
    if f.get("fix_accepted_by_vision"):
        return "rejected by the estimator gate"
    return str(f.get("fix_reason") or "rejected (no reason given)")


def _event_detail(e: dict[str, Any]) -> str:
    skip = {"kind", "t_ns", "severity", "statustext", "mandatory", "MANDATORY"}
    parts = []
    for k, v in e.items():
        if k in skip:
            continue
        if isinstance(v, float):
            parts.append(f"{k}={v:.6f}" if k.endswith("_deg") else f"{k}={v:.4g}")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def _median(values: list[Any]) -> float:
    v = [float(x) for x in values if isinstance(x, int | float)]
    return float(np.median(v)) if v else math.nan


def _records_digest(recs: list[dict[str, Any]]) -> str:
    """Counts of each string field's values (e.g. outcome, status) and the last record."""
    if not recs:
        return P.absent("no records")
    counts: dict[str, dict[str, int]] = {}
    for d in recs:
        for k, v in d.items():
            if isinstance(v, str) and len(v) <= 40 and k not in ("tile", "id", "sha256"):
                counts.setdefault(k, {})
                counts[k][v] = counts[k].get(v, 0) + 1
    rows = [[k, v, n] for k, vs in sorted(counts.items()) if len(vs) <= 12
            for v, n in sorted(vs.items(), key=lambda kv: -kv[1])]
    last = json.dumps(recs[-1], default=str)[:600]
    return (P.list_table(["field", "value", "records"], rows)
            + f"<p class='meta'>last record: <code>{P.esc(last)}</code></p>")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
