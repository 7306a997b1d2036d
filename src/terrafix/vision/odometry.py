"""Visual odometry: frame-to-frame horizontal motion of the aircraft from the nadir camera
(REQUIREMENTS N1, the mandatory KLT + RANSAC baseline).

Why this shape: a monocular camera alone gives motion only up to scale, but over flat ground
the flight controller's attitude and the height above ground fix everything else. Each tracked
pixel is turned into a ground point relative to the camera (ray rotated into NED with the FC
attitude at the frame time, intersected with the ground plane `height_agl_m` below), so one
static ground point seen in two frames gives the camera displacement directly:
C2 - C1 = g1 - g2. The remaining freedom between the two ground point sets is fitted as a
2-D rigid motion (translation + a small yaw correction) by RANSAC, because the FC's yaw
wobbles from message to message while its roll/pitch error is slow and cancels in the
difference. What cannot be observed is said in the covariance: the fit residuals over the
inliers, the relative attitude noise of the FC (a roll error shifts the whole ground set,
indistinguishable from translation) and the height uncertainty (a scale error).

Tracking is predicted: the features of the previous frame are projected into the current one
with both attitudes and the expected displacement (estimator velocity when given, otherwise
the last delta), and KLT starts from there. A sharp turn therefore costs nothing as long as
the footprints overlap; when they do not (< `min_overlap`), when the frame has no texture
(blackout, cloud, heavy blur) or the tracks disagree, the result says so (`tracking=False`
with a reason) instead of returning a guess.

Pixels and shapes: frames are (H, W) uint8 at the dataset's processing resolution and are
downscaled by `process_scale` here; ground points are (N, 2) north/east metres.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from terrafix.camera import Extrinsics, Intrinsics
from terrafix.geo.rotation import euler_tilt_axes_ned
from terrafix.measurements import CameraFrame, OdometryDelta
from terrafix.vision.errors import VisionError


class OdometryConfig(BaseModel):
    """Visual odometry settings (the `[odometry]` table of the navigation config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    process_scale: float = Field(0.5, gt=0.1, le=1.0)
    """Frames are tracked at this fraction of the processing resolution (0.5: 640x480)."""
    max_corners: int = Field(300, ge=20, le=5000)
    min_distance_px: float = Field(14.0, gt=0)
    quality_level: float = Field(0.003, gt=0, lt=1)
    min_corner_strength: float = Field(2.0e-5, ge=0)
    """Absolute floor on a corner's minimum eigenvalue (cv2.cornerMinEigenVal, 5x5 block on
    the lightly blurred raw frame) for it to count as texture: rejects the "corners" that
    sensor noise produces on a featureless cloud or black lens, where the relative quality
    level would accept them. Measured: simulated cloud/black frames stay below 4e-6 (90th
    percentile), faint synthetic farmland and real grass above 2e-5 for most corners."""
    clahe_clip: float = Field(2.0, ge=0)
    """Contrast-limited histogram equalisation (clip limit, 8x8 tiles) of the frame before
    detection and tracking: faint grass and haze keep enough gradient for KLT. 0: off."""
    lk_window_px: int = Field(21, ge=7, le=61)
    border_margin_px: float | None = Field(None, ge=0)
    """Corners and tracks closer than this to the frame's edge are not used (None: half the
    KLT window + 2 px). A window the edge cuts off weighs only its inner part, so the track
    follows a point nearer the centre than the corner itself; under the frame-to-frame
    rotation of a turn that is a systematic error perpendicular to the radius, i.e. the
    measured rotation comes out a few tenths of a percent short, and the heading integrated
    from it drifts by as much in every turn."""
    lk_levels: int = Field(3, ge=0, le=6)
    fb_max_px: float = Field(0.8, gt=0)
    """Forward-backward KLT consistency bound (pixels at process scale)."""
    min_features: int = Field(40, ge=5)
    """Fewer usable corners than this in the previous frame: no texture."""
    min_tracks: int = Field(25, ge=5)
    min_inlier_ratio: float = Field(0.5, gt=0, le=1)
    ransac_threshold_gsd: float = Field(2.5, gt=0)
    """RANSAC inlier threshold in ground sample distances of the previous frame."""
    ransac_iterations: int = Field(200, ge=10)
    min_overlap: float = Field(0.05, ge=0, lt=1)
    """Predicted footprint overlap below this: tracking is declared lost before trying."""
    blur_ratio: float = Field(0.25, gt=0, lt=1)
    """When tracking fails on a frame whose sharpness is below this fraction of the recent
    median, the reason given is blur (sharpness alone varies too much with the scene to be
    a gate of its own)."""
    attitude_rel_sigma_rad: float = Field(math.radians(0.1), ge=0)
    """1-sigma error of the FC's roll/pitch *difference* between two frames; it shifts the
    whole ground set by height x angle and is unobservable from the images."""
    gyro_rel_sigma_rad: float = Field(math.radians(0.03), ge=0)
    """1-sigma error of the relative rotation between two frames integrated from the gyro
    (bias-corrected by the estimator: residual bias ~0.05 deg/s over 1/3 s, scale factor
    in turns), used when the caller provides it."""
    attitude_abs_sigma_rad: float = Field(math.radians(0.5), ge=0)
    """1-sigma error of the *absolute* roll and pitch the frames are projected with (the
    FC's EKF tilt: typically 0.3-1 deg on a small fixed-wing). Both frames of a pair share
    it, so on a straight leg it cancels; it does not once the aircraft turns between them:
    the ground shift it causes (height x sec² of the look angle x the error, ~12 m at
    800 m and 40 deg of bank for 0.5 deg) turns with the aircraft, and each pair's delta
    carries the difference. Measured on a procedural 800 m flight with the true attitude
    and 0.7 deg of roll error: 1.5-2.3 m per 0.33 s pair in a 40 deg turn (16 deg, 20 %),
    against 0.03 m without. `OdometryDelta.tilt_error_ne_m` carries it per pair. When the
    frames are projected with a filtered attitude (`navigation.attitude`, the default) the
    filter lags the FC's error through a turn: the caller gives its axes
    (`process(tilt_axes_ned=...)`); with the FC's axes instead the model was off by half
    the error and 50 deg in direction at 800 m and 40 deg of bank."""
    height_sigma_floor_m: float = Field(0.5, ge=0)
    """Height-above-ground uncertainty used when the caller gives a smaller one (terrain
    relief under the flat-ground model)."""
    max_reference_age_s: float = Field(1.2, gt=0)
    """An unusable frame (no texture, blur) does not replace a good reference younger than
    this, so one bad frame costs one delta, not two. Keep it below the estimator's clone
    window (max_clones / frame rate) so the delta can still be fused."""
    max_yaw_correction_rad: float = Field(math.radians(3.0), gt=0)
    """A fitted yaw correction beyond this means the FC attitude and the images disagree:
    tracking is declared lost rather than trusted."""


@dataclass(frozen=True, slots=True)
class OdometryStats:
    """Diagnostics of the last processed frame (recorder / tuning).

    n_features: corners in the previous frame; n_tracks: KLT survivors; n_inliers: RANSAC
    inliers; residual_rms_m: ground residual of the rigid fit; yaw_correction_rad: fitted
    relative yaw of the ground fit; overlap: predicted footprint overlap 0-1; sharpness:
    texture measure. heading_error_rad: how much further the given attitudes turn about the
    vertical between the two frames than the images do (from the inter-image homography,
    see `homography_heading_error`; NaN when it could not be measured), and
    heading_error_var_rad2 its variance.
    """

    n_features: int
    n_tracks: int
    n_inliers: int
    residual_rms_m: float
    yaw_correction_rad: float
    overlap: float
    sharpness: float
    heading_error_rad: float = math.nan
    heading_error_var_rad2: float = math.nan


@dataclass(frozen=True, slots=True)
class _Keyframe:
    t_ns: int
    image: np.ndarray
    corners: np.ndarray  # (N, 2) float32 pixels at process scale
    n_strong: int
    R_cam_to_ned: np.ndarray
    R_body_to_ned: np.ndarray
    height_m: float
    height_var_m2: float
    sharpness: float
    tilt_axes_ned: np.ndarray
    """(3, 2) NED rotation axes of this frame's attitude error per radian of the FC's roll /
    pitch error (`OdometryAttitude.tilt_axes_at`, or the FC's own Euler axes)."""


def _rot2(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def fit_rigid_2d(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares dst ≈ Rot(θ)·src + t for (N, 2) point sets (2-D Kabsch); (θ, t (2,))."""
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - cs, dst - cd
    theta = math.atan2(float(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])),
                       float(np.sum(a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1])))
    return theta, cd - _rot2(theta) @ cs


def ransac_rigid_2d(src: np.ndarray, dst: np.ndarray, threshold: float, iterations: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Inlier mask (N,) of the best 2-point rigid hypothesis, refined twice on its inliers."""
    n = len(src)
    i = rng.integers(0, n, iterations)
    j = rng.integers(0, n, iterations)
    keep = i != j
    i, j = i[keep], j[keep]
    ds, dd = src[j] - src[i], dst[j] - dst[i]
    theta = np.arctan2(ds[:, 0] * dd[:, 1] - ds[:, 1] * dd[:, 0],
                       ds[:, 0] * dd[:, 0] + ds[:, 1] * dd[:, 1])
    c, s = np.cos(theta), np.sin(theta)
    # t = dst_i - R src_i for every hypothesis; residuals of every point under each one.
    tx = dst[i, 0] - (c * src[i, 0] - s * src[i, 1])
    ty = dst[i, 1] - (s * src[i, 0] + c * src[i, 1])
    px = c[:, None] * src[None, :, 0] - s[:, None] * src[None, :, 1] + tx[:, None]
    py = s[:, None] * src[None, :, 0] + c[:, None] * src[None, :, 1] + ty[:, None]
    r2 = (px - dst[None, :, 0]) ** 2 + (py - dst[None, :, 1]) ** 2
    counts = np.sum(r2 < threshold * threshold, axis=1)
    inl = r2[int(np.argmax(counts))] < threshold * threshold
    for _ in range(2):
        if inl.sum() < 3:
            break
        th, t = fit_rigid_2d(src[inl], dst[inl])
        res = dst - (src @ _rot2(th).T + t)
        inl = np.einsum("ij,ij->i", res, res) < threshold * threshold
    return inl


def _exp(w: np.ndarray) -> np.ndarray:
    R, _ = cv2.Rodrigues(np.asarray(w, dtype=np.float64).reshape(3, 1))
    return R


def plane_heading_error(x0: np.ndarray, x1: np.ndarray, R_cam0_to_ned: np.ndarray,
                        R_cam1_to_ned: np.ndarray, delta_ned_m: np.ndarray, height_m: float,
                        tilt_rel_sigma_rad: float, normal_sigma_rad: float = math.radians(20.0),
                        iterations: int = 10) -> tuple[float, float] | None:
    """How much further the given camera attitudes turn about the vertical between two
    frames than the images do: (angle rad, variance rad²), or None when not measurable.

    Why not the ground fit's yaw: that one is measured on ground points projected with the
    given attitudes, so their tilt error leaks into it: with a 0.5° roll error, forward flight
    alone shows ~0.008° of "rotation" per frame pair, always the same way, which integrates
    into degrees of heading over minutes. Here the two images of the (flat) ground are
    related by the plane-induced homography x1 ~ (R - t mᵀ) x0, R = R_c1ᵀ Exp(ω) R_c1 R_pred
    (R_pred: the relative rotation the attitudes give; ω: its error about NED axes), t the
    displacement in camera 1, m = n / height the ground plane in camera 0; Gauss-Newton on
    the pixel residuals from ω = 0, t from the ground fit and n from the attitude, with the
    horizontal components of ω held to the gyro's relative accuracy (over a short baseline a
    horizontal rotation trades off against translation: the bas-relief ambiguity) and n to
    its prior. ω about the vertical is then measured from the pixels, to second order free of
    the attitudes' tilt errors; its variance comes from the normal equations with the
    residuals' own scale.

    x0, x1: (N, 2) normalised image coordinates (distortion removed) of inlier matches;
    delta_ned_m: (3,) camera displacement guess; height_m: camera height above the ground.
    """
    n = len(x0)
    if n < 12:
        return None
    R_pred = R_cam1_to_ned.T @ R_cam0_to_ned
    n0 = R_cam0_to_ned.T @ np.array([0.0, 0.0, 1.0])  # ground normal in camera 0
    e1 = np.cross(n0, [1.0, 0.0, 0.0] if abs(n0[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n0, e1)
    X0 = np.column_stack((x0, np.ones(n)))
    sig_tilt = max(tilt_rel_sigma_rad, 1e-6)

    def residuals(p: np.ndarray) -> np.ndarray:
        w, t, a = p[:3], p[3:6], p[6:8]
        R = R_cam1_to_ned.T @ _exp(w) @ R_cam1_to_ned @ R_pred
        nn = n0 + a[0] * e1 + a[1] * e2
        m = nn / (np.linalg.norm(nn) * height_m)
        q = X0 @ (R - np.outer(t, m)).T
        return (q[:, :2] / q[:, 2:3] - x1).ravel()

    p = np.zeros(8)
    p[3:6] = R_cam1_to_ned.T @ np.asarray(delta_ned_m, dtype=np.float64)
    steps = np.array([1e-6] * 3 + [1e-4] * 3 + [1e-5] * 2)
    prior_sig = np.array([sig_tilt, sig_tilt, math.inf, math.inf, math.inf, math.inf,
                          normal_sigma_rad, normal_sigma_rad])
    prior_w = np.where(np.isfinite(prior_sig), 1.0 / prior_sig, 0.0)
    sigma2 = (1e-3) ** 2
    J = np.zeros((2 * n, 8))
    for _ in range(iterations):
        r = residuals(p)
        for k in range(8):
            dp = np.zeros(8)
            dp[k] = steps[k]
            J[:, k] = (residuals(p + dp) - r) / steps[k]
        sigma2 = max(float(r @ r) / max(2 * n - 8, 1), 1e-14)
        A = J.T @ J / sigma2 + np.diag(prior_w ** 2)
        b = J.T @ r / sigma2 + prior_w ** 2 * p
        try:
            step = np.linalg.solve(A, b)
        except np.linalg.LinAlgError:
            return None
        p = p - step
        if np.max(np.abs(step[:3])) < 1e-9:
            break
    r = residuals(p)
    sigma2 = max(float(r @ r) / max(2 * n - 8, 1), 1e-14)
    A = J.T @ J / sigma2 + np.diag(prior_w ** 2)
    try:
        cov = np.linalg.inv(A)
    except np.linalg.LinAlgError:
        return None
    if not (np.all(np.isfinite(p)) and cov[2, 2] > 0):
        return None
    return float(p[2]), float(cov[2, 2])


def polygon_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Area of the intersection of convex polygons a, b (K, 2) over the area of b."""
    area_b = abs(cv2.contourArea(b.astype(np.float32)))
    if area_b <= 0:
        return 0.0
    inter, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    return float(max(inter, 0.0) / area_b)


class VisualOdometry:
    """Stateful frame-to-frame odometry; feed frames in capture order with `process`.

    One instance per camera. Not thread-safe (the navigator owns it). The first frame, and the
    first after `reset()`, only becomes the reference and returns None.
    """

    def __init__(self, intrinsics: Intrinsics, extrinsics: Extrinsics,
                 config: OdometryConfig | None = None, seed: int = 0) -> None:
        self.config = config or OdometryConfig()
        s = self.config.process_scale
        w, h = round(intrinsics.width * s), round(intrinsics.height * s)
        self.full_intrinsics = intrinsics
        self.intrinsics = intrinsics if s == 1.0 else Intrinsics(
            w, h, intrinsics.fx * w / intrinsics.width, intrinsics.fy * h / intrinsics.height,
            (intrinsics.cx + 0.5) * w / intrinsics.width - 0.5,
            (intrinsics.cy + 0.5) * h / intrinsics.height - 0.5, intrinsics.dist)
        self.extrinsics = extrinsics
        self._rng = np.random.default_rng(seed)
        self._prev: _Keyframe | None = None
        self._last_delta: OdometryDelta | None = None
        self._sharpness_hist: deque[float] = deque(maxlen=15)
        self._unusable = False
        self.last_stats: OdometryStats | None = None
        self._clahe = cv2.createCLAHE(self.config.clahe_clip, (8, 8)) \
            if self.config.clahe_clip > 0 else None
        self._lk_criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
        corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
        self._corner_rays = self.intrinsics.pixel_to_ray(corners)
        m = self.config.border_margin_px
        self._margin_px = float(self.config.lk_window_px // 2 + 2 if m is None else m)
        mi = math.ceil(self._margin_px)
        self._detect_mask = np.zeros((h, w), np.uint8)
        self._detect_mask[mi:h - mi, mi:w - mi] = 255

    def _inner(self, px: np.ndarray) -> np.ndarray:
        """Mask (N,) of pixels at least the border margin inside the frame."""
        m, intr = self._margin_px, self.intrinsics
        return ((px[:, 0] >= m - 0.5) & (px[:, 0] <= intr.width - 0.5 - m)
                & (px[:, 1] >= m - 0.5) & (px[:, 1] <= intr.height - 0.5 - m))

    def reset(self) -> None:
        """Forget the reference frame (e.g. after a long gap)."""
        self._prev = None
        self._last_delta = None

    # ------------------------------------------------------------------ geometry helpers
    def _ground(self, px: np.ndarray, R_cam_to_ned: np.ndarray, height_m: float
                ) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N, 2) -> ground points (N, 2) NE relative to the camera, and a validity
        mask (rays at least ~6 degrees below the horizon)."""
        rays = self.intrinsics.pixel_to_ray(px) @ R_cam_to_ned.T
        ok = rays[:, 2] > 0.1
        d = np.where(ok, rays[:, 2], 1.0)
        return rays[:, :2] * (height_m / d)[:, None], ok

    def _project(self, g_ne: np.ndarray, R_cam_to_ned: np.ndarray, height_m: float
                 ) -> np.ndarray:
        """Ground points (N, 2) NE relative to the camera -> pixels (N, 2) (NaN behind)."""
        p = np.column_stack((g_ne, np.full(len(g_ne), height_m))) @ R_cam_to_ned
        px, _ = self.intrinsics.project(p)
        return px

    def _footprint(self, R_cam_to_ned: np.ndarray, height_m: float) -> np.ndarray | None:
        rays = self._corner_rays @ R_cam_to_ned.T
        if np.any(rays[:, 2] <= 0.05):
            return None
        return rays[:, :2] * (height_m / rays[:, 2])[:, None]

    # ------------------------------------------------------------------ image helpers
    def _prepare(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 2 or image.dtype != np.uint8:
            raise VisionError(f"odometry needs (H, W) uint8 frames, got {image.dtype} "
                              f"{image.shape}")
        fi = self.full_intrinsics
        if image.shape != (fi.height, fi.width):
            raise VisionError(f"frame is {image.shape[1]}x{image.shape[0]}, the camera model "
                              f"expects {fi.width}x{fi.height}")
        if self.config.process_scale == 1.0:
            return image
        return cv2.resize(image, (self.intrinsics.width, self.intrinsics.height),
                          interpolation=cv2.INTER_AREA)

    def _detect(self, raw: np.ndarray, track: np.ndarray) -> tuple[np.ndarray, int, float]:
        """Corners (N, 2) float32 to track (found on the contrast-equalised frame), how many
        of them are strong in the raw frame (the texture measure: an absolute floor on the
        raw minimum eigenvalue, which equalised sensor noise cannot pass), and a sharpness
        measure (mean squared Laplacian of the lightly smoothed raw frame)."""
        c = self.config
        smooth = cv2.GaussianBlur(raw, (0, 0), 1.0)
        lap = cv2.Laplacian(smooth, cv2.CV_32F, ksize=3)
        sharpness = float(np.mean(lap * lap))
        smooth_t = smooth if track is raw else cv2.GaussianBlur(track, (0, 0), 1.0)
        pts = cv2.goodFeaturesToTrack(smooth_t, c.max_corners, c.quality_level,
                                      c.min_distance_px, mask=self._detect_mask, blockSize=5)
        if pts is None:
            return np.zeros((0, 2), np.float32), 0, sharpness
        pts = pts.reshape(-1, 2)
        eig = cv2.cornerMinEigenVal(smooth, 5, ksize=3)
        xi = np.clip(np.round(pts[:, 0]).astype(int), 0, raw.shape[1] - 1)
        yi = np.clip(np.round(pts[:, 1]).astype(int), 0, raw.shape[0] - 1)
        n_strong = int(np.sum(eig[yi, xi] >= c.min_corner_strength))
        return pts.astype(np.float32), n_strong, sharpness

    # ------------------------------------------------------------------ main entry
    @property
    def reference_t_ns(self) -> int | None:
        """Capture time of the frame the next delta will be measured from (None: none)."""
        return None if self._prev is None else self._prev.t_ns

    def process(self, frame: CameraFrame, R_body_to_ned: np.ndarray, height_agl_m: float,
                height_var_m2: float = 0.0, v_ned_prior_mps: np.ndarray | None = None,
                R_ref_to_cur_body: np.ndarray | None = None,
                rel_sigma_rad: float | None = None,
                tilt_axes_ned: np.ndarray | None = None) -> OdometryDelta | None:
        """Displacement of the aircraft since the reference frame (normally the previous one).

        R_body_to_ned: (3, 3) FC attitude at the frame's capture time. height_agl_m: camera
        height above the ground plane (m) with its variance. v_ned_prior_mps: (3,) expected
        velocity (estimator), used only to predict where features move.
        R_ref_to_cur_body: (3, 3) rotation of the body from the reference frame's capture time
        (`reference_t_ns`) to this one, integrated from the gyro. When given, the reference
        frame is projected with R_body_to_ned · R_ref_to_curᵀ instead of its own FC attitude:
        both frames then share the FC's absolute attitude error, which cancels in the
        difference, and only the gyro's small error over the interval remains
        (`gyro_rel_sigma_rad`). Without it the FC's frame-to-frame attitude noise enters
        every delta (`attitude_rel_sigma_rad`). rel_sigma_rad: the 1-sigma error of a given
        R_ref_to_cur_body when it is not the gyro's (e.g. the FC's ATTITUDE re-interpolated
        at both capture times); None: `gyro_rel_sigma_rad`. tilt_axes_ned: (3, 2) how
        R_body_to_ned's error follows a one-radian FC roll (column 0) / pitch (column 1)
        error, as NED rotation axes (`OdometryAttitude.tilt_axes_at`: a filtered attitude
        lags the FC's error through a turn); None: R_body_to_ned is the FC's own (its Euler
        axes). The reference frame keeps the axes it came with: R_ref_to_cur_body is taken
        to be the same attitude source's rotation between the two capture times, so the
        reference is projected with that source's attitude (and error) at its own time.
        Returns None for a reference frame (first frame or after a reset).
        """
        if not (height_agl_m > 1.0) or not math.isfinite(height_agl_m):
            raise VisionError(f"height above ground must be a finite value > 1 m, got "
                              f"{height_agl_m}")
        img = self._prepare(frame.image)
        R_b = np.asarray(R_body_to_ned, dtype=np.float64)
        R_c = R_b @ self.extrinsics.R_cam_to_body
        track = self._clahe.apply(img) if self._clahe is not None else img
        corners, n_strong, sharp = self._detect(img, track)
        h_var = max(float(height_var_m2), self.config.height_sigma_floor_m ** 2)
        axes = euler_tilt_axes_ned(R_b) if tilt_axes_ned is None \
            else np.asarray(tilt_axes_ned, dtype=np.float64)
        cur = _Keyframe(frame.t_ns, track, corners, n_strong, R_c, R_b,
                        float(height_agl_m), h_var, sharp, axes)
        prev, self._prev = self._prev, cur
        if prev is None:
            self._remember_sharpness(sharp)
            return None
        if cur.t_ns <= prev.t_ns:
            raise VisionError(f"frames must come in capture order: t_ns {cur.t_ns} after "
                              f"{prev.t_ns}")
        pair_prev, rel_sigma = prev, self.config.attitude_rel_sigma_rad
        if R_ref_to_cur_body is not None:
            R_prev_b = R_b @ np.asarray(R_ref_to_cur_body, dtype=np.float64).T
            pair_prev = replace(prev, R_body_to_ned=R_prev_b,
                                R_cam_to_ned=R_prev_b @ self.extrinsics.R_cam_to_body)
            rel_sigma = self.config.gyro_rel_sigma_rad if rel_sigma_rad is None \
                else float(rel_sigma_rad)
        delta = self._delta(pair_prev, cur, v_ned_prior_mps, rel_sigma)
        if delta.tracking:
            self._remember_sharpness(sharp)
        elif (n_strong < self.config.min_features or self._unusable) and \
                prev.n_strong >= self.config.min_features and \
                (cur.t_ns - prev.t_ns) * 1e-9 <= self.config.max_reference_age_s:
            self._prev = prev  # keep the good reference across a bad frame
        self._last_delta = delta
        return delta

    def _remember_sharpness(self, s: float) -> None:
        self._sharpness_hist.append(s)

    def _lost(self, prev: _Keyframe, cur: _Keyframe, reason: str, n_tracks: int = 0
              ) -> OdometryDelta:
        return OdometryDelta(prev.t_ns, cur.t_ns, np.full(2, np.nan), np.full((2, 2), np.nan),
                             False, n_tracks, reason)

    def _blur_or(self, cur: _Keyframe, ref_sharp: float, reason: str) -> str:
        """Tracking failed: call it blur when the frame is much less sharp than the recent
        ones (sharpness alone varies too much with the scene to be a gate of its own)."""
        if cur.sharpness < self.config.blur_ratio * ref_sharp:
            return (f"blur: sharpness {cur.sharpness:.1f} < {self.config.blur_ratio:.2f} x "
                    f"recent {ref_sharp:.1f} ({reason})")
        return reason

    def _predicted_delta(self, prev: _Keyframe, cur: _Keyframe,
                         v_prior: np.ndarray | None) -> np.ndarray:
        dt = (cur.t_ns - prev.t_ns) * 1e-9
        if v_prior is not None and np.all(np.isfinite(v_prior)):
            return np.asarray(v_prior, dtype=np.float64)[:2] * dt
        last = self._last_delta
        if last is not None and last.tracking:
            dt_last = (last.t_ns - last.t_prev_ns) * 1e-9
            return last.delta_ne_m * (dt / dt_last)
        return np.zeros(2)

    def _delta(self, prev: _Keyframe, cur: _Keyframe, v_prior: np.ndarray | None,
               rel_sigma: float) -> OdometryDelta:
        c = self.config
        # 1. Texture and blur of the new frame, corners of the previous one.
        hist = sorted(self._sharpness_hist)
        ref_sharp = hist[len(hist) // 2] if hist else prev.sharpness
        overlap = math.nan
        self._unusable = True
        self.last_stats = OdometryStats(len(prev.corners), 0, 0, math.nan, math.nan, overlap,
                                        cur.sharpness)
        if cur.n_strong < c.min_features:
            return self._lost(prev, cur, f"no texture (blackout, cloud or heavy blur): "
                                         f"{cur.n_strong} corners < {c.min_features}, "
                                         f"sharpness {cur.sharpness:.1f} vs recent "
                                         f"{ref_sharp:.1f}")
        self._unusable = False
        if prev.n_strong < c.min_features:
            return self._lost(prev, cur, f"no texture in the previous frame: "
                                         f"{prev.n_strong} corners < {c.min_features}")
        # 2. Predicted overlap of the two footprints (both attitudes + expected motion).
        pred = self._predicted_delta(prev, cur, v_prior)
        fp1 = self._footprint(prev.R_cam_to_ned, prev.height_m)
        fp2 = self._footprint(cur.R_cam_to_ned, cur.height_m)
        if fp1 is None or fp2 is None:
            return self._lost(prev, cur, "camera sees the horizon (extreme attitude)")
        overlap = polygon_overlap(fp1 - pred, fp2)
        if overlap < c.min_overlap:
            return self._lost(prev, cur, f"overlap {100 * overlap:.0f}% < "
                                         f"{100 * c.min_overlap:.0f}%")
        # 3. Predicted KLT from the previous corners.
        g1, ok1 = self._ground(prev.corners.astype(np.float64), prev.R_cam_to_ned,
                               prev.height_m)
        guess = self._project(g1 - pred, cur.R_cam_to_ned, cur.height_m)
        ok1 &= np.all(np.isfinite(guess), axis=1)
        p0 = prev.corners[ok1].reshape(-1, 1, 2)
        p1 = guess[ok1].astype(np.float32).reshape(-1, 1, 2)
        if len(p0) < c.min_tracks:
            return self._lost(prev, cur, f"{len(p0)} corners project into the frame < "
                                         f"{c.min_tracks}")
        win = (c.lk_window_px, c.lk_window_px)
        p1, st, _ = cv2.calcOpticalFlowPyrLK(
            prev.image, cur.image, p0, p1.copy(), winSize=win, maxLevel=c.lk_levels,
            criteria=self._lk_criteria, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        pb, st_b, _ = cv2.calcOpticalFlowPyrLK(
            cur.image, prev.image, p1, p0.copy(), winSize=win, maxLevel=c.lk_levels,
            criteria=self._lk_criteria, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        fb = np.linalg.norm((pb - p0).reshape(-1, 2), axis=1)
        good = (st.ravel() == 1) & (st_b.ravel() == 1) & (fb < c.fb_max_px)
        u1 = p1.reshape(-1, 2)[good]
        inside = self._inner(u1)
        u0 = p0.reshape(-1, 2)[good][inside]
        u1 = u1[inside]
        n_tracks = len(u1)
        self.last_stats = OdometryStats(len(prev.corners), n_tracks, 0, math.nan, math.nan,
                                        overlap, cur.sharpness)
        if n_tracks < c.min_tracks:
            return self._lost(prev, cur, self._blur_or(
                cur, ref_sharp, f"{n_tracks} consistent tracks < {c.min_tracks}"), n_tracks)
        # 4. Ground points in both frames and the robust rigid fit g2 = Rot(θ) g1 + t.
        g1, okg1 = self._ground(u0.astype(np.float64), prev.R_cam_to_ned, prev.height_m)
        g2, okg2 = self._ground(u1.astype(np.float64), cur.R_cam_to_ned, cur.height_m)
        okg = okg1 & okg2
        g1, g2 = g1[okg], g2[okg]
        gsd = prev.height_m / self.intrinsics.fx
        inl = ransac_rigid_2d(g1, g2, c.ransac_threshold_gsd * gsd, c.ransac_iterations,
                              self._rng)
        n_in = int(inl.sum())
        ratio = n_in / max(len(g1), 1)
        if n_in < c.min_tracks or ratio < c.min_inlier_ratio:
            self.last_stats = OdometryStats(len(prev.corners), n_tracks, n_in, math.nan,
                                            math.nan, overlap, cur.sharpness)
            return self._lost(prev, cur, self._blur_or(
                cur, ref_sharp, f"inconsistent tracks: {n_in} inliers of {len(g1)} "
                                f"({100 * ratio:.0f}%)"), n_tracks)
        a, b = g1[inl], g2[inl]
        theta, t = fit_rigid_2d(a, b)
        res = b - (a @ _rot2(theta).T + t)
        dof = max(2 * n_in - 3, 1)
        sigma2 = float(np.sum(res * res)) / dof
        var_theta = sigma2 / max(float(np.sum((a - a.mean(axis=0)) ** 2)), 1e-9)
        self.last_stats = OdometryStats(len(prev.corners), n_tracks, n_in,
                                        math.sqrt(sigma2), theta, overlap, cur.sharpness)
        if abs(theta) > c.max_yaw_correction_rad:
            return self._lost(prev, cur, f"images disagree with the FC yaw by "
                                         f"{math.degrees(theta):.1f} deg", n_tracks)
        # Camera displacement: C2 - C1 = g1 - Rot(-θ) g2 (exactly, at every inlier).
        Rm = _rot2(-theta)
        delta_cam = -(Rm @ t)
        # Aircraft (body) displacement: remove the lever arm's rotation.
        lever = self.extrinsics.p_cam_in_body
        delta_body = delta_cam - ((cur.R_body_to_ned - prev.R_body_to_ned) @ lever)[:2]
        cov = self._covariance(b, var_theta, sigma2, delta_body, prev, cur, rel_sigma)
        tilt = self._tilt_error(u0[okg][inl], u1[okg][inl], prev, cur, delta_cam)
        cov = cov + tilt @ tilt.T
        self._measure_heading(u0[okg][inl], u1[okg][inl], prev, cur, delta_cam, rel_sigma)
        return OdometryDelta(prev.t_ns, cur.t_ns, delta_body, cov, True, n_tracks,
                             tilt_error_ne_m=tilt)

    def _tilt_error(self, u0: np.ndarray, u1: np.ndarray, prev: _Keyframe, cur: _Keyframe,
                    delta_cam_ne_m: np.ndarray) -> np.ndarray:
        """(2, 2) error of the camera displacement for a one-sigma absolute roll (column 0)
        and pitch (column 1) error of the FC shared by both frames (`attitude_abs_sigma_rad`).

        Each frame's attitude is perturbed about its own `tilt_axes_ned` (NED rotation axes
        per radian of the FC's error: the FC's Euler axes, roll about the body x axis and
        pitch about the horizontal axis across the heading, or what a filtered attitude makes
        of them); the inlier pixels u0 / u1 (N, 2) are re-projected and the rigid fit redone,
        by finite differences."""
        sigma = self.config.attitude_abs_sigma_rad
        if sigma <= 0.0:
            return np.zeros((2, 2))
        eps = 1e-4
        R_cb = self.extrinsics.R_cam_to_body

        def perturbed(kf: _Keyframe, axis: int) -> np.ndarray:
            return _exp(eps * kf.tilt_axes_ned[:, axis]) @ kf.R_body_to_ned

        out = np.zeros((2, 2))
        for k in range(2):
            g1, ok1 = self._ground(u0.astype(np.float64), perturbed(prev, k) @ R_cb,
                                   prev.height_m)
            g2, ok2 = self._ground(u1.astype(np.float64), perturbed(cur, k) @ R_cb,
                                   cur.height_m)
            ok = ok1 & ok2
            if ok.sum() < 3:
                return np.zeros((2, 2))
            theta, t = fit_rigid_2d(g1[ok], g2[ok])
            d = -(_rot2(-theta) @ t)
            out[:, k] = (d - delta_cam_ne_m) / eps * sigma
        return out

    def _measure_heading(self, u0: np.ndarray, u1: np.ndarray, prev: _Keyframe,
                         cur: _Keyframe, delta_cam_ne_m: np.ndarray, rel_sigma: float) -> None:
        """Heading error of the given attitudes from the inter-image homography, into
        `last_stats` (see `plane_heading_error`)."""
        r0 = self.intrinsics.pixel_to_ray(u0.astype(np.float64))
        r1 = self.intrinsics.pixel_to_ray(u1.astype(np.float64))
        d = np.array([delta_cam_ne_m[0], delta_cam_ne_m[1], prev.height_m - cur.height_m])
        out = plane_heading_error(r0[:, :2] / r0[:, 2:3], r1[:, :2] / r1[:, 2:3],
                                  prev.R_cam_to_ned, cur.R_cam_to_ned, d, prev.height_m,
                                  rel_sigma)
        if out is not None and self.last_stats is not None:
            self.last_stats = replace(self.last_stats, heading_error_rad=out[0],
                                      heading_error_var_rad2=out[1])

    def _covariance(self, b: np.ndarray, var_theta: float, sigma2: float,
                    delta: np.ndarray, prev: _Keyframe, cur: _Keyframe,
                    rel_sigma: float) -> np.ndarray:
        """(2, 2) covariance of the displacement: fit (residual variance over the inliers and
        the yaw lever of the point cloud), relative attitude noise x height, and the height
        (scale) uncertainty."""
        n = len(b)
        cb = b.mean(axis=0)
        # Δ = ca - Rot(-θ) cb: the yaw uncertainty moves it perpendicular to cb.
        perp = np.array([cb[1], -cb[0]])
        cov = np.eye(2) * (sigma2 / n) + var_theta * np.outer(perp, perp)
        h = 0.5 * (prev.height_m + cur.height_m)
        att = rel_sigma * h
        cov += np.eye(2) * att * att
        var_h = 0.5 * (prev.height_var_m2 + cur.height_var_m2)
        cov += np.outer(delta, delta) * (var_h / (h * h))
        return 0.5 * (cov + cov.T)
