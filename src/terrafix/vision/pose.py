"""Camera pose from frame↔ground correspondences with the autopilot's attitude as a prior.

Why not the homography's nadir point: over flat ground a small roll/pitch and a horizontal
shift look alike; taking the nadir from a 1°-noisy attitude costs ~h·tan(1°) (7 m at 400 m).
The frame's perspective (a ~54° field of view) does observe the tilt, so the pose is solved
from the matches — six unknowns (camera position in NED, a small rotation correction) by
Gauss–Newton/Levenberg–Marquardt on the reprojection error in frame pixels, with the
autopilot's attitude (σ roll/pitch, σ yaw) and the barometric height (σ) as priors so that a
weak geometry degrades towards the prior instead of diverging.

Holding the tilt: on the real cross-date pair the matches pull roll/pitch 2–3° away from the
truth (the two satellite images differ by small non-rigid distortions — relief displacement of
roofs, different view angles — that the weak perspective signal cannot tell from a tilt), which
costs h·tan(2.5°) ≈ 11 m at 250 m. With `hold_tilt` (default) roll/pitch are held at the
autopilot's and only position, yaw and height are fitted; the autopilot's tilt uncertainty is
then propagated into the position covariance through the sensitivity of the fitted position to
the held tilt (implicit-function theorem on the normal equations), instead of being ignored.

Covariance: (JᵀJ)⁻¹ of the whitened problem at the solution, inflated by the reduced χ² of the
point residuals when it exceeds 1 (never deflated), plus the held-tilt term; the caller adds
the map's own georeferencing uncertainty (a property of the map source no fit can observe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from terrafix.camera import Intrinsics
from terrafix.geo.rotation import skew


def _exp_so3(phi: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(phi))
    K = skew(phi)
    if angle < 1e-9:
        return np.eye(3) + K
    return np.eye(3) + np.sin(angle) / angle * K + (1 - np.cos(angle)) / angle ** 2 * K @ K


def _skew_rows(v: np.ndarray) -> np.ndarray:
    """(N, 3, 3) cross-product matrices of the rows of v (N, 3)."""
    out = np.zeros((len(v), 3, 3))
    out[:, 0, 1], out[:, 0, 2] = -v[:, 2], v[:, 1]
    out[:, 1, 0], out[:, 1, 2] = v[:, 2], -v[:, 0]
    out[:, 2, 0], out[:, 2, 1] = -v[:, 1], v[:, 0]
    return out


def _right_jacobian(phi: np.ndarray) -> np.ndarray:
    """Right Jacobian of SO(3): exp(φ + δ) ≈ exp(φ) exp(J_r(φ) δ)."""
    angle = float(np.linalg.norm(phi))
    K = skew(phi)
    if angle < 1e-6:
        return np.eye(3) - 0.5 * K
    return (np.eye(3) - (1 - np.cos(angle)) / angle ** 2 * K
            + (angle - np.sin(angle)) / angle ** 3 * K @ K)


@dataclass(frozen=True, slots=True)
class PosePriors:
    """1-sigma priors: roll/pitch and yaw of the autopilot attitude (rad), height (m), and the
    keypoint noise on the canvas (px of the map level, converted per point to frame px)."""

    sigma_tilt_rad: float = np.radians(1.0)
    sigma_yaw_rad: float = np.radians(5.0)
    sigma_height_m: float = 5.0
    sigma_keypoint_px: float = 1.0
    hold_tilt: bool = True
    sigma_hold_rad: float = 1e-5


@dataclass(frozen=True, slots=True)
class PoseSolution:
    """p_cam_ned: (3,) camera centre, R_cam_to_ned: (3, 3); cov_p_ned: (3, 3) 1-sigma position
    covariance from the fit (before the map term); residuals_px: (N,) per-point reprojection
    error norms in frame px; chi2_reduced: point χ² / dof; inflation: factor applied (≥ 1)."""

    p_cam_ned: np.ndarray
    R_cam_to_ned: np.ndarray
    cov_p_ned: np.ndarray
    residuals_px: np.ndarray
    chi2_reduced: float
    inflation: float
    success: bool


def solve_pose(points_ned: np.ndarray, pixels: np.ndarray, sigma_px: np.ndarray,
               intrinsics: Intrinsics, R_cam_to_ned_prior: np.ndarray,
               p_cam_ned_guess: np.ndarray, down_prior_m: float,
               priors: PosePriors) -> PoseSolution:
    """Solve the camera pose.

    points_ned: (N, 3) ground points; pixels: (N, 2) undistorted frame pixels; sigma_px: (N,)
    pixel noise per point; down_prior_m: barometric camera down coordinate (m, NED).
    """
    K = intrinsics.K
    R0 = np.asarray(R_cam_to_ned_prior, np.float64)
    X = np.asarray(points_ned, np.float64)
    uv = np.asarray(pixels, np.float64)
    w = 1.0 / np.asarray(sigma_px, np.float64)
    n = len(X)
    sigma_tilt_fit = priors.sigma_hold_rad if priors.hold_tilt else priors.sigma_tilt_rad

    def model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        R = _exp_so3(x[3:]) @ R0
        pc = (X - x[:3]) @ R
        z = np.maximum(pc[:, 2], 1e-6)
        proj = np.column_stack((K[0, 0] * pc[:, 0] / z + K[0, 2], K[1, 1] * pc[:, 1] / z
                                + K[1, 2]))
        return proj, R

    def residuals(x: np.ndarray) -> np.ndarray:
        proj, _ = model(x)
        r_pts = ((proj - uv) * w[:, None]).ravel()
        r_prior = np.array([x[3] / sigma_tilt_fit, x[4] / sigma_tilt_fit,
                            x[5] / priors.sigma_yaw_rad,
                            (x[2] - down_prior_m) / priors.sigma_height_m])
        return np.concatenate((r_pts, r_prior))

    prior_rows = np.zeros((4, 6))
    prior_rows[0, 3] = prior_rows[1, 4] = 1.0 / sigma_tilt_fit
    prior_rows[2, 5] = 1.0 / priors.sigma_yaw_rad
    prior_rows[3, 2] = 1.0 / priors.sigma_height_m

    def jacobian(x: np.ndarray) -> np.ndarray:
        """Analytic (2N + 4, 6) Jacobian: finite differences cost 7 model evaluations per
        iteration, which made the solve a tenth of the whole fix."""
        R = _exp_so3(x[3:]) @ R0
        d = X - x[:3]
        pc = d @ R  # (N, 3) = Rᵀ(X − p) per row
        u = d @ _exp_so3(x[3:])  # exp(φ)ᵀ(X − p) per row
        z = np.maximum(pc[:, 2], 1e-6)
        fx, fy = K[0, 0], K[1, 1]
        # d proj / d pc: (N, 2, 3)
        dproj = np.zeros((n, 2, 3))
        dproj[:, 0, 0] = fx / z
        dproj[:, 0, 2] = -fx * pc[:, 0] / z ** 2
        dproj[:, 1, 1] = fy / z
        dproj[:, 1, 2] = -fy * pc[:, 1] / z ** 2
        # d pc / d p = −Rᵀ; d pc / d φ = R0ᵀ [u]× J_r(φ) (right Jacobian of SO(3)).
        dpc_dphi = np.einsum("ji,njk->nik", R0, _skew_rows(u)) @ _right_jacobian(x[3:])
        J_pts = np.concatenate((dproj @ -R.T, dproj @ dpc_dphi), axis=2)  # (N, 2, 6)
        J_pts *= w[:, None, None]
        return np.vstack((J_pts.reshape(2 * n, 6), prior_rows))

    x0 = np.concatenate((np.asarray(p_cam_ned_guess, np.float64), np.zeros(3)))
    sol = least_squares(residuals, x0, jac=jacobian, method="lm", x_scale="jac", max_nfev=200)
    J = sol.jac
    proj, R = model(sol.x)
    err = np.linalg.norm(proj - uv, axis=1)
    chi2 = float(np.sum(((proj - uv) * w[:, None]) ** 2))
    dof = max(2 * n - (4 if priors.hold_tilt else 6), 1)
    chi2_red = chi2 / dof
    inflation = max(1.0, chi2_red)
    try:
        if priors.hold_tilt:
            # Information of the points plus the yaw/height priors, without the tilt hold.
            A = J[: 2 * n].T @ J[: 2 * n]
            A[5, 5] += 1.0 / priors.sigma_yaw_rad ** 2
            A[2, 2] += 1.0 / priors.sigma_height_m ** 2
            free, tilt = [0, 1, 2, 5], [3, 4]
            A_ff_inv = np.linalg.inv(A[np.ix_(free, free)])
            D = -(A_ff_inv @ A[np.ix_(free, tilt)])[:3]  # d position / d held tilt
            cov_p = A_ff_inv[:3, :3] * inflation + D @ D.T * priors.sigma_tilt_rad ** 2
        else:
            cov_p = np.linalg.inv(J.T @ J)[:3, :3] * inflation
    except np.linalg.LinAlgError:
        cov_p = np.full((3, 3), np.inf)
    return PoseSolution(sol.x[:3].copy(), R, cov_p, err, chi2_red, inflation,
                        bool(sol.success))
