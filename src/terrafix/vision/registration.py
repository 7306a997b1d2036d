"""Absolute fix: one camera frame + the autopilot's attitude + barometric altitude ↔ the
provisioned map → WGS84 position of the aircraft and of the frame centre, with a covariance
from the fit, or a rejection with its reason.

Per frame (`VisualPositioner.locate`):
1. pick the map level (zoom) whose resolution suits the height and warp the frame north-up
   onto a canvas at that resolution (`ortho.make_ortho_view`, at most 512 px first);
2. extract local features on the canvas (XFeat on ONNX Runtime or SIFT), with the keypoint
   budget set by the thermal degrade policy;
3. retrieve the top-K chunks by VLAD similarity (around the prior when one is given, over the
   whole cache otherwise) and re-rank them to N by geometric inliers (mutual NN over the
   chunks' map features + a RANSAC similarity per chunk);
4. re-match against the map features under the footprint that a re-ranked chunk's fit
   predicts (guided), fit the homography with MAGSAC and its plausibility checks;
5. solve the camera pose from the inliers with the attitude/height priors (`pose.solve_pose`),
   reproject into the map, reject above 2.5 px RMSE or on implausible tilt/height;
6. report the aircraft and frame-centre positions, the covariance, inlier statistics and the
   per-stage timings (summed over retries).

Steps 3–5 run first as a quick pass (the strongest features, the best chunk only), which
settles most frames; then as the full pass (more features, the N re-ranked chunks in turn).
A frame still unregistered is retried on a larger canvas at the same level when the first
canvas cropped its footprint, then at the next map level. The median frame thus costs one
network run on a 512-px canvas and a few small matrix products; only frames that would
otherwise be rejected pay for the retries.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from terrafix.camera import CameraPose as _CameraPose
from terrafix.camera import Intrinsics, NavCameraConfig, pixels_to_ground_ned
from terrafix.geo import LocalFrame
from terrafix.geo.tiles import global_px_to_lonlat, ground_resolution_m_per_px
from terrafix.inference import (
    DegradePolicy,
    InferenceConfig,
    ThermalMonitor,
    ThermalState,
    set_blas_threads,
)
from terrafix.measurements import AbsoluteFix, CameraFrame
from terrafix.vision.errors import VisionError
from terrafix.vision.features import FeatureExtractor, Features, SiftExtractor
from terrafix.vision.geometry import (
    GeometryConfig,
    HomographyFit,
    fit_homography,
    fit_similarity,
)
from terrafix.vision.mapfeatures import MapFeatures
from terrafix.vision.matching import match_mutual
from terrafix.vision.ortho import OrthoView, make_ortho_view
from terrafix.vision.pose import PosePriors, PoseSolution, solve_pose
from terrafix.vision.retrieval import RetrievalIndex, vlad
from terrafix.vision.xfeat import XFeatExtractor

log = logging.getLogger(__name__)


class VpsConfig(BaseModel):
    """Visual positioning settings (TOML section ``[vps]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    extractor: Literal["xfeat", "sift"] = "xfeat"
    model_cache: Path = Field(default=Path("build/models"),
                              description="Folder of built ONNX models (terrafix models build).")
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    blas_threads: int = Field(default=1, ge=0, description=(
        "Threads of the process's OpenBLAS (numpy/scipy), set when the positioner is "
        "created; 0 leaves them alone. 1: the descriptor products are small enough that "
        "threading them only adds contention on a 2-core computer (see "
        "terrafix.inference.threads)."))
    canvas_sizes: tuple[int, ...] = Field(default=(384, 512), description=(
        "Canvas sides (px, built XFeat model sizes) of the first attempt: the smallest that "
        "holds the footprint, else the largest with the footprint's centre. 512 rather than "
        "640: the network costs ~35% less and the development poses lost one fix in 200."))
    rescue_canvas_sizes: tuple[int, ...] = Field(default=(640,), description=(
        "Canvas for the retry at the same level when the first canvas cropped the footprint "
        "(empty: no such retry)."))
    max_keypoints: int = Field(default=2048, ge=64)
    throttled_keypoints: int = Field(default=1024, ge=64)
    rerank_keypoints: int = Field(default=1024, ge=64, description=(
        "Strongest frame keypoints used to re-rank the K chunks (all are used afterwards)."))
    rerank_map_features: int = Field(default=1536, ge=64, description=(
        "Strongest map features per chunk used for re-ranking."))
    guided_map_features: int = Field(default=6144, ge=64, description=(
        "Map features under the predicted footprint for the final match."))
    level_crop_factor: float = Field(default=2.0, ge=1.0, description=(
        "A map level is used while the footprint extent is at most this many times its "
        "largest canvas (the canvas then shows the centre of the footprint). 2.0 with the "
        "512-px first canvas keeps flights up to ~200 m on the finer level, which registered "
        "more of the development poses at 150–200 m than the coarser one."))
    top_k: int = Field(default=10, ge=1, description="Chunks retrieved (N2: K=10).")
    rerank_n: int = Field(default=3, ge=1, description="Chunks kept after re-ranking (N=3).")
    rerank_min_inliers: int = Field(default=6, ge=3, description=(
        "Similarity inliers a chunk needs to rank (the guided match then needs min_inliers)."))
    rerank_threshold_m: float = Field(default=3.0, gt=0.0, description=(
        "Re-ranking similarity inlier threshold on the ground (m): looser than the final "
        "one because a similarity ignores the perspective left by attitude errors."))
    max_attempts: int = Field(default=3, ge=1, description=(
        "Re-ranked chunks tried in turn with the guided match and pose solve."))
    guided_margin_m: float = Field(default=30.0, ge=0.0, description=(
        "Margin around the predicted footprint for the guided match (m)."))
    guided_gate_m: float = Field(default=15.0, ge=0.0, description=(
        "Guided matches farther than this (m) from the re-ranking fit's prediction are "
        "dropped before the homography fit (0 = keep all)."))
    normalize_canvas: bool = Field(default=False, description=(
        "Stretch the canvas contrast (1–99th percentile of its valid pixels) before "
        "extraction. Off by default: on the development poses it cost retrieval recall "
        "(the VLAD vocabulary is learned from the unstretched map) and gained no fix."))
    quick_pass: bool = Field(default=True, description=(
        "Verify with the quick budgets first and fall back to the full ones."))
    quick_rerank_keypoints: int = Field(default=512, ge=16)
    quick_rerank_map_features: int = Field(default=768, ge=16)
    quick_keypoints: int = Field(default=1024, ge=16, description=(
        "Strongest frame keypoints in the quick pass's guided match (its only attempt)."))
    level_fallbacks: int = Field(default=1, ge=0, description=(
        "Other map levels tried when the level chosen for the height gives no fix."))
    ratio: float = Field(default=0.95, gt=0.0, le=1.0, description="Matcher ratio test.")
    ransac_threshold_m: float = Field(default=1.4, gt=0.0, description=(
        "MAGSAC inlier threshold on the ground (m): converted to pixels of the map level in "
        "use, so that a finer level does not demand sub-metre agreement between two images "
        "that disagree by ~1.6 m."))
    min_inliers: int = Field(default=12, ge=6, description=(
        "Inliers the final homography and the pose need. 12: on the development poses fixes "
        "with 12–20 inliers were as accurate as the rest, and the pose checks (reprojection, "
        "attitude, height) still guard against a chance alignment."))
    sigma_tilt_deg: float = 0.5
    sigma_yaw_deg: float = 3.0
    sigma_height_m: float = 5.0
    sigma_keypoint_px: float = 1.0
    sigma_map_local_m: float = Field(default=1.0, ge=0.0, description=(
        "1-sigma local disagreement between map and camera imagery (different sensor, view "
        "angle, date) per point, on the ground."))
    map_sigma_m: float = Field(default=1.0, ge=0.0, description=(
        "1-sigma georeferencing uncertainty of the map imagery per axis (a property of the "
        "map source, added to every fix's covariance)."))
    max_reprojection_px: float = Field(default=2.5, description=(
        "N4: reject when the RMS distance between matched map points and the frame keypoints "
        "reprojected through the solved pose exceeds this, in pixels of the map's base "
        "(coarsest provisioned) zoom."))
    max_attitude_correction_deg: float = Field(default=9.0, gt=0.0, description=(
        "Largest angle between the solved and the autopilot's camera attitude: 3 × "
        "sigma_yaw_deg (the tilt is held, so this is mostly the yaw correction)."))
    max_height_ratio_error: float = 0.25
    ground_alt_m: float = Field(default=0.0, description="Ground altitude AMSL (m).")
    prior_margin_m: float = 150.0


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """Outcome of one frame.

    fix: the absolute fix, or None when rejected (then `reason` says why).
    z: map zoom used; candidates: (K,) chunk ids in retrieval order; reranked: (≤N,) chunk ids
    in inlier order with their inlier counts `rerank_inliers`; n_inliers / inlier_ratio /
    reprojection_rmse_px of the final fit (map px); degraded: the thermal policy's note ("" when
    nominal); timings_ms: per stage.
    """

    t_ns: int
    fix: AbsoluteFix | None
    reason: str
    z: int
    candidates: np.ndarray
    reranked: np.ndarray
    rerank_inliers: np.ndarray
    n_matches: int
    n_inliers: int
    inlier_ratio: float
    reprojection_rmse_px: float
    n_keypoints: int
    degraded: str
    thermal: ThermalState
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.fix is not None


@dataclass(slots=True)
class _Level:
    z: int
    features: MapFeatures
    index: RetrievalIndex


@dataclass(frozen=True, slots=True)
class _Pass:
    """Feature budgets of one verification pass: frame keypoints and map features per chunk
    for re-ranking, frame keypoints for the guided match, re-ranked chunks tried."""

    rerank_keypoints: int
    rerank_map_features: int
    guided_keypoints: int
    attempts: int


@dataclass(frozen=True, slots=True)
class _Verified:
    chunk: int
    fit: HomographyFit
    canvas_px: np.ndarray  # (M, 2) canvas keypoints of the matches
    map_gpx: np.ndarray  # (M, 2) global px of the matched map keypoints
    origin: np.ndarray  # (2,) global px subtracted for numerical conditioning


class VisualPositioner:
    """Per-frame absolute positioning against a provisioned tile cache."""

    def __init__(self, cache_root: Path, config: VpsConfig, extractor: FeatureExtractor,
                 levels: Sequence[_Level], camera: NavCameraConfig,
                 thermal: ThermalMonitor | None = None,
                 native_gsd_m: float | None = None) -> None:
        if not levels:
            raise VisionError(f"no map level for extractor {config.extractor} in {cache_root}")
        self.cache_root = Path(cache_root)
        self.config = config
        self.extractor = extractor
        self.levels = sorted(levels, key=lambda lv: -lv.z)  # finest first
        self.camera = camera
        self.intrinsics: Intrinsics = camera.processing_intrinsics()
        self.thermal = thermal or ThermalMonitor()
        self.policy = DegradePolicy(config.max_keypoints, config.throttled_keypoints)
        self.priors = PosePriors(np.radians(config.sigma_tilt_deg),
                                 np.radians(config.sigma_yaw_deg), config.sigma_height_m,
                                 config.sigma_keypoint_px)
        self.base_gsd_m = max(lv.features.gsd_m for lv in self.levels)
        self.native_gsd_m = native_gsd_m
        if config.blas_threads:
            set_blas_threads(config.blas_threads)

    @staticmethod
    def open(cache_root: str | Path, config: VpsConfig | None = None,
             camera: NavCameraConfig | None = None,
             extractor: FeatureExtractor | None = None) -> VisualPositioner:
        """Open the map features and retrieval indexes provisioned in `cache_root` and load
        (warm up) the models. `extractor` may be passed to share loaded models."""
        config = config or VpsConfig()
        root = Path(cache_root)
        manifest = root / "features" / "vps.json"
        if not manifest.is_file():
            raise VisionError(f"{root} has no visual-positioning data ({manifest}); run "
                              "`terrafix vps provision` first")
        info = json.loads(manifest.read_text())
        zooms = info.get("levels", {}).get(config.extractor, [])
        levels = [_Level(z, MapFeatures.open(root, config.extractor, z),
                         RetrievalIndex.open(root, config.extractor, z)) for z in zooms]
        if extractor is None:
            if config.extractor == "xfeat":
                extractor = XFeatExtractor.open(
                    config.model_cache,
                    [(s, s) for s in sorted({*config.canvas_sizes, *config.rescue_canvas_sizes})],
                    config.inference)
            else:
                extractor = SiftExtractor()
        return VisualPositioner(root, config, extractor, levels, camera or NavCameraConfig(),
                                native_gsd_m=info.get("native_gsd_m"))

    # --- per frame -----------------------------------------------------------------------

    def locate(self, frame: CameraFrame, R_body_to_ned_fc: np.ndarray, alt_m: float,
               prior: tuple[float, float, float] | None = None) -> RegistrationResult:
        """Register one frame. R_body_to_ned_fc: (3, 3) autopilot attitude at capture time;
        alt_m: barometric altitude (m AMSL); prior: (lat_deg, lon_deg, radius_m) or None to
        search the whole cache.

        The map level chosen for the height is tried first on a canvas of at most
        max(`canvas_sizes`) pixels. When that yields no fix, the same level is tried on the
        larger `rescue_canvas_sizes` canvas if the first one had to crop the footprint, then
        the next level (`level_fallbacks`) — a different map resolution often rescues frames
        around the height where the levels hand over. Retries cost time only on frames that
        would otherwise be rejected, so the median frame runs the network once, on the
        smaller canvas."""
        clock = _Clock()
        cfg = self.config
        state = self.thermal.poll()
        budget, degraded = self.policy.keypoint_budget(state)
        R_cam_fc = np.asarray(R_body_to_ned_fc, np.float64) @ self.camera.extrinsics.R_cam_to_body
        height = alt_m - cfg.ground_alt_m
        partial = {"t_ns": frame.t_ns, "degraded": degraded, "thermal": state}
        if not height > 10.0:
            return self._rejected(partial, clock, f"height above ground {height:.1f} m too low "
                                  "(> 10 m expected)")
        levels = self._levels_for(height, R_cam_fc)[: 1 + cfg.level_fallbacks]
        first, cropped = self._locate_at(levels[0], frame, R_body_to_ned_fc, R_cam_fc, height,
                                         prior, budget, partial, clock, cfg.canvas_sizes, True)
        if first.accepted:
            return first
        plan = [(lv, cfg.canvas_sizes) for lv in levels[1:]]
        if cropped and cfg.rescue_canvas_sizes:
            plan.insert(0, (levels[0], cfg.rescue_canvas_sizes))
        for level, sizes in plan:
            res, _ = self._locate_at(level, frame, R_body_to_ned_fc, R_cam_fc, height, prior,
                                     budget, partial, clock, sizes, False)
            if res.accepted:
                return res
        return replace(first, timings_ms=clock.ms())

    def _rejected(self, partial: dict, clock: _Clock, reason: str, z: int = -1,
                  **kw: object) -> RegistrationResult:
        base: dict[str, object] = dict(
            fix=None, reason=reason, z=z, candidates=np.zeros(0, np.int64),
            reranked=np.zeros(0, np.int64), rerank_inliers=np.zeros(0, np.int64), n_matches=0,
            n_inliers=0, inlier_ratio=0.0, reprojection_rmse_px=float("nan"), n_keypoints=0)
        base.update(kw)
        return RegistrationResult(**partial, **base, timings_ms=clock.ms())  # type: ignore

    def _locate_at(self, level: _Level, frame: CameraFrame, R_body_to_ned_fc: np.ndarray,
                   R_cam_fc: np.ndarray, height: float,
                   prior: tuple[float, float, float] | None, budget: int, partial: dict,
                   clock: _Clock, sizes: tuple[int, ...], quick: bool
                   ) -> tuple[RegistrationResult, bool]:
        """One attempt at one map level: canvas, features, retrieval, then verification —
        first (with `quick`) a cheap pass on the strongest features that settles most
        frames, then the full pass for those it leaves unregistered. The median frame pays
        only for the cheap pass; the hard ones pay for both. Returns the result and whether
        the canvas cropped the footprint."""
        cfg = self.config
        lat_ref = prior[0] if prior else float(level.features.meta["centre_lat_deg"])
        gsd = ground_resolution_m_per_px(level.z, lat_ref)
        try:
            view = make_ortho_view(frame.image, self.intrinsics, R_cam_fc, height, gsd, sizes)
        except VisionError as exc:
            return self._rejected(partial, clock, f"implausible tilt: {exc}", level.z), False
        image = _stretch(view.image, view.valid) if cfg.normalize_canvas else view.image
        clock.lap("ortho")
        feats = self.extractor.extract(image, budget, view.valid)
        clock.lap("features")
        if len(feats) < cfg.min_inliers:
            return self._rejected(partial, clock, f"too few keypoints ({len(feats)})", level.z,
                                  n_keypoints=len(feats)), view.cropped
        restrict = None
        if prior is not None:
            reach = prior[2] + cfg.prior_margin_m + view.size * gsd / 2.0
            restrict = level.index.near(prior[0], prior[1], reach)
        cands = level.index.search(vlad(feats.descriptors, level.index.vocabulary),
                                   cfg.top_k, restrict)
        clock.lap("retrieval")
        passes = [_Pass(cfg.rerank_keypoints, cfg.rerank_map_features, len(feats),
                        cfg.max_attempts)]
        if quick and cfg.quick_pass:
            passes.insert(0, _Pass(cfg.quick_rerank_keypoints, cfg.quick_rerank_map_features,
                                   cfg.quick_keypoints, 1))
        first: RegistrationResult | None = None
        for budgets in passes:
            res = self._verify(level, frame, view, feats, cands.ids, budgets, R_body_to_ned_fc,
                               R_cam_fc, height, gsd, partial, clock)
            if res.accepted:
                return res, view.cropped
            first = first or res
        assert first is not None
        return first, view.cropped

    def _verify(self, level: _Level, frame: CameraFrame, view: OrthoView, feats: Features,
                candidates: np.ndarray, budgets: _Pass, R_body_to_ned_fc: np.ndarray,
                R_cam_fc: np.ndarray, height: float, gsd: float, partial: dict,
                clock: _Clock) -> RegistrationResult:
        """Re-rank the candidates, then guided match + pose solve on the re-ranked chunks in
        order (up to `budgets.attempts`) until one passes every check."""
        cfg = self.config
        strongest = feats.subset(np.arange(min(len(feats), budgets.rerank_keypoints)))
        verified = self._rerank(level, candidates, strongest, budgets.rerank_map_features)
        order = sorted(range(len(verified)), key=lambda i: (not verified[i].fit.ok,
                                                            -verified[i].fit.n_inliers))
        top = [verified[i] for i in order[: cfg.rerank_n]]
        clock.lap("rerank")
        common = dict(z=level.z, candidates=candidates,
                      reranked=np.array([v.chunk for v in top], np.int64),
                      rerank_inliers=np.array([v.fit.n_inliers for v in top], np.int64),
                      n_keypoints=len(feats))
        if not top or not top[0].fit.ok:
            why = top[0].fit.reason if top else "no candidate chunk"
            return self._rejected(partial, clock, why or "no plausible fit", **common)
        guided_feats = feats.subset(np.arange(min(len(feats), budgets.guided_keypoints)))
        first_failure: tuple[str, dict] | None = None
        for hypothesis in top[: budgets.attempts]:
            if not hypothesis.fit.ok:
                break
            best = self._guided(level, hypothesis, guided_feats, view)
            clock.lap("match")
            if not best.fit.ok:
                failure: tuple[str, dict] = (best.fit.reason, {"n_matches": len(best.canvas_px)})
            else:
                fix, reason, stats = self._solve(frame, level, best, view, R_body_to_ned_fc,
                                                 R_cam_fc, height, gsd)
                clock.lap("pose")
                if fix is not None:
                    return RegistrationResult(**partial, fix=fix, reason="", **common, **stats,
                                              timings_ms=clock.ms())
                failure = (reason, stats)
            first_failure = first_failure or failure
        assert first_failure is not None
        return self._rejected(partial, clock, first_failure[0], **common, **first_failure[1])

    # --- steps ---------------------------------------------------------------------------

    def _levels_for(self, height: float, R_cam_to_ned: np.ndarray) -> list[_Level]:
        """Levels in the order to try: first the finest level whose largest canvas holds the
        footprint's extent divided by `level_crop_factor` (a finer level cropped to the
        centre of the footprint keeps more detail than a coarser one that holds all of it),
        else the coarsest; then the others by closeness of resolution."""
        pose = _CameraPose(np.array([0.0, 0.0, -height]), R_cam_to_ned)
        w, h = self.intrinsics.width, self.intrinsics.height
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
        ground, ok = pixels_to_ground_ned(corners, pose, self.intrinsics, 0.0)
        extent = float(np.ptp(ground[:, :2], axis=0).max()) if ok.all() else np.inf
        largest = max(self.config.canvas_sizes)
        chosen = self.levels[-1]
        for lv in self.levels:
            if extent <= self.config.level_crop_factor * largest * lv.features.gsd_m:
                chosen = lv
                break
        return sorted(self.levels, key=lambda lv: abs(lv.z - chosen.z) - 0.5 * (lv.z < chosen.z))

    def _geometry(self, level: _Level) -> GeometryConfig:
        return GeometryConfig(threshold_px=self.config.ransac_threshold_m / level.features.gsd_m,
                              min_inliers=self.config.min_inliers)

    def _match(self, feats: Features, map_feats: Features) -> tuple[np.ndarray, np.ndarray]:
        m = match_mutual(feats.descriptors, map_feats.descriptors, ratio=self.config.ratio)
        return feats.keypoints[m.idx0].astype(np.float64), map_feats.keypoints[m.idx1]

    def _rerank(self, level: _Level, chunks: np.ndarray, feats: Features,
                map_features: int) -> list[_Verified]:
        """Geometric verification of every candidate chunk. The chunks overlap, so their map
        features are gathered once (union of the chunks' strongest features), matched once
        against the frame (mutual NN over the union: stricter than per chunk), and each chunk
        then fits a similarity (`fit_similarity`) to the matches that fall inside it; a
        chunk needs only `rerank_min_inliers` to rank (the guided match decides)."""
        ids, rects = [], level.index.chunks[chunks]
        for x0, y0, x1, y1 in rects:
            idx = level.features.query_indices(x0, y0, x1, y1, map_features)
            ids.append(idx)
        union = np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
        map_kp = np.asarray(level.features.keypoints[union])
        map_desc = np.asarray(level.features.descriptors[union], dtype=np.float32)
        m = match_mutual(feats.descriptors, map_desc, ratio=self.config.ratio)
        canvas_all = feats.keypoints[m.idx0].astype(np.float64)
        map_all = map_kp[m.idx1]
        geometry = GeometryConfig(
            threshold_px=self.config.rerank_threshold_m / level.features.gsd_m,
            min_inliers=self.config.rerank_min_inliers)
        out = []
        for chunk, (x0, y0, x1, y1) in zip(chunks, rects, strict=True):
            inside = ((map_all[:, 0] >= x0) & (map_all[:, 0] < x1)
                      & (map_all[:, 1] >= y0) & (map_all[:, 1] < y1))
            origin = np.array([x0, y0])
            fit = fit_similarity(canvas_all[inside], map_all[inside] - origin, geometry)
            out.append(_Verified(int(chunk), fit, canvas_all[inside], map_all[inside], origin))
        return out

    def _guided(self, level: _Level, hypothesis: _Verified, feats: Features,
                view: OrthoView) -> _Verified:
        """Match all frame features against the map features under the footprint that the
        chunk's re-ranking fit predicts (plus `guided_margin_m`), and fit the homography
        with every check. Restricting the map side to the footprint is what lets the ratio
        test keep the true matches of a weak frame."""
        s = view.size
        corners = np.array([[0, 0, 1], [s, 0, 1], [s, s, 1], [0, s, 1]], np.float64)
        assert hypothesis.fit.H is not None
        q = corners @ hypothesis.fit.H.T
        q = q[:, :2] / q[:, 2:3] + hypothesis.origin
        margin = self.config.guided_margin_m / level.features.gsd_m
        x0, y0 = q.min(axis=0) - margin
        x1, y1 = q.max(axis=0) + margin
        _, mf = level.features.query(x0, y0, x1, y1, self.config.guided_map_features)
        canvas_px, map_gpx = self._match(feats, mf)
        if self.config.guided_gate_m > 0 and len(canvas_px):
            # Drop matches far from where the hypothesis puts them: MAGSAC's 4-point samples
            # then see mostly inliers and stop settling on a wild homography.
            pred = np.column_stack((canvas_px, np.ones(len(canvas_px)))) @ hypothesis.fit.H.T
            pred = pred[:, :2] / pred[:, 2:3] + hypothesis.origin
            near = np.linalg.norm(pred - map_gpx, axis=1) <= (
                self.config.guided_gate_m / level.features.gsd_m)
            canvas_px, map_gpx = canvas_px[near], map_gpx[near]
        origin = np.array([x0, y0])
        geometry = self._geometry(level)
        fit = fit_homography(canvas_px, map_gpx - origin, float(view.size), geometry)
        if not fit.ok and fit.reason.startswith("implausible"):
            # MAGSAC can settle on a 4-point model with a wild perspective part that still
            # collects the inliers (which bunch in part of the canvas). The canvas is already
            # rectified with the autopilot's attitude, so a similarity is an adequate model
            # for choosing inliers; the pose solve then models the perspective exactly and
            # applies its own tilt/scale checks.
            similar = fit_similarity(canvas_px, map_gpx - origin, geometry, float(view.size))
            if similar.ok:
                fit = similar
        return _Verified(hypothesis.chunk, fit, canvas_px, map_gpx, origin)

    def _solve(self, frame: CameraFrame, level: _Level, best: _Verified, view: OrthoView,
               R_body_fc: np.ndarray, R_cam_fc: np.ndarray, height: float, gsd: float
               ) -> tuple[AbsoluteFix | None, str, dict]:
        cfg = self.config
        inl = best.fit.inliers
        canvas_px, map_gpx = best.canvas_px[inl], best.map_gpx[inl]
        centre_gpx = map_gpx.mean(axis=0)
        lon0, lat0 = global_px_to_lonlat(centre_gpx[0], centre_gpx[1], level.z)
        local = LocalFrame(float(lat0), float(lon0), cfg.ground_alt_m)
        points = self._gpx_to_ned(local, map_gpx, level.z)
        pixels = view.canvas_to_frame(canvas_px)
        # Canvas keypoint noise → frame pixels, by the local scale of the warp at each point.
        J_scale = _local_scale(view.H_canvas_to_frame, canvas_px)
        sigma_px = J_scale * np.hypot(cfg.sigma_keypoint_px, cfg.sigma_map_local_m / gsd)
        # Initial camera position: canvas centre through the fit, minus the centre offset.
        c = (view.size - 1) / 2.0
        cq = best.fit.H @ np.array([c, c, 1.0])
        centre_ned = self._gpx_to_ned(local, (cq[:2] / cq[2] + best.origin)[None], level.z)[0]
        guess = np.array([centre_ned[0] - view.centre_ne_m[0],
                          centre_ned[1] - view.centre_ne_m[1], -height])
        keep = np.ones(len(points), bool)
        sol = None
        for _ in range(2):
            sol = solve_pose(points[keep], pixels[keep], sigma_px[keep], self.intrinsics,
                             R_cam_fc, guess, -height, self.priors)
            err_map = self._map_residuals(sol, pixels, points, gsd)
            new_keep = err_map < cfg.ransac_threshold_m / gsd
            if new_keep.sum() < cfg.min_inliers or np.array_equal(new_keep, keep):
                break
            keep = new_keep
            guess = sol.p_cam_ned
        assert sol is not None
        err_map = self._map_residuals(sol, pixels, points, self.base_gsd_m)[keep]
        n_in = int(keep.sum())
        rmse = float(np.sqrt(np.mean(err_map ** 2))) if n_in else float("inf")
        stats = dict(n_matches=len(best.canvas_px), n_inliers=n_in,
                     inlier_ratio=n_in / max(len(best.canvas_px), 1),
                     reprojection_rmse_px=rmse)
        if n_in < cfg.min_inliers:
            return None, f"too few inliers after pose ({n_in} < {cfg.min_inliers})", stats
        if not sol.success or not np.all(np.isfinite(sol.cov_p_ned)):
            return None, "degenerate geometry: pose solve did not converge", stats
        if rmse > cfg.max_reprojection_px:
            return None, (f"reprojection {rmse:.2f} px > {cfg.max_reprojection_px} px "
                          "against the map"), stats
        dR = sol.R_cam_to_ned @ R_cam_fc.T
        correction = float(np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1))))
        if correction > cfg.max_attitude_correction_deg:
            return None, (f"implausible tilt: solved attitude {correction:.1f}° from the "
                          f"autopilot's (≤ {cfg.max_attitude_correction_deg}°)"), stats
        h_fit = -sol.p_cam_ned[2]
        if abs(h_fit - height) > cfg.max_height_ratio_error * height:
            return None, (f"implausible scale: fitted height {h_fit:.0f} m vs barometric "
                          f"{height:.0f} m"), stats
        R_body = sol.R_cam_to_ned @ self.camera.extrinsics.R_cam_to_body.T
        p_body = sol.p_cam_ned - R_body @ self.camera.extrinsics.p_cam_in_body
        lat, lon, alt = local.ned_to_lla(p_body)
        pose = _CameraPose(sol.p_cam_ned, sol.R_cam_to_ned)
        centre, ok = pixels_to_ground_ned(np.array([[self.intrinsics.cx, self.intrinsics.cy]]),
                                          pose, self.intrinsics, 0.0)
        clat, clon, _ = local.ned_to_lla(centre[0]) if ok[0] else (lat, lon, alt)
        cov_ne = sol.cov_p_ned[:2, :2] + np.eye(2) * cfg.map_sigma_m ** 2
        fix = AbsoluteFix(t_ns=frame.t_ns, lat_deg=float(lat), lon_deg=float(lon),
                          alt_m=float(alt), cov_ne_m2=cov_ne, alt_var_m2=float(sol.cov_p_ned[2, 2]),
                          centre_lat_deg=float(clat), centre_lon_deg=float(clon),
                          reprojection_rmse_px=rmse, n_inliers=n_in,
                          inlier_ratio=stats["inlier_ratio"])
        return fix, "", stats

    @staticmethod
    def _gpx_to_ned(local: LocalFrame, gpx: np.ndarray, z: int) -> np.ndarray:
        lon, lat = global_px_to_lonlat(gpx[:, 0], gpx[:, 1], z)
        p = local.lla_to_ned(lat, lon, np.full(len(gpx), local.alt0_m))
        p[:, 2] = 0.0  # flat ground at the frame's origin altitude
        return p

    def _map_residuals(self, sol: PoseSolution, pixels: np.ndarray, points: np.ndarray,
                       gsd: float) -> np.ndarray:
        """Distance (map px) between each matched map point and where the solved pose puts
        its frame keypoint on the ground."""
        pose = _CameraPose(sol.p_cam_ned, sol.R_cam_to_ned)
        ground, ok = pixels_to_ground_ned(pixels, pose, self.intrinsics, 0.0)
        d = np.linalg.norm(ground[:, :2] - points[:, :2], axis=1) / gsd
        return np.where(ok, d, np.inf)


def _local_scale(H: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Local linear scale (N,) of homography H at points uv (N, 2): sqrt|det J|."""
    p = np.column_stack((uv, np.ones(len(uv))))
    q = p @ H.T
    w = q[:, 2]
    x, y = q[:, 0] / w, q[:, 1] / w
    a = (H[0, 0] - x * H[2, 0]) / w
    b = (H[0, 1] - x * H[2, 1]) / w
    c = (H[1, 0] - y * H[2, 0]) / w
    d = (H[1, 1] - y * H[2, 1]) / w
    return np.sqrt(np.abs(a * d - b * c))


def _stretch(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(S, S) uint8 canvas linearly stretched between the 1st and 99th percentiles of its
    valid pixels (histogram, not a sort: ~1 ms)."""
    hist = np.bincount(image[valid], minlength=256)
    if hist.sum() < 16:
        return image
    cdf = np.cumsum(hist) / hist.sum()
    lo, hi = int(np.searchsorted(cdf, 0.01)), int(np.searchsorted(cdf, 0.99))
    if hi - lo < 8:
        return image
    lut = np.clip((np.arange(256) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return lut[image]


class _Clock:
    """Per-stage wall time (ms), summed over repeated stages (retries, level fallback)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + (now - self.last) * 1000.0
        self.last = now

    def ms(self) -> dict[str, float]:
        return {**self.stages, "total": (time.perf_counter() - self.start) * 1000.0}


__all__ = ["RegistrationResult", "VisualPositioner", "VpsConfig"]
