"""gtsam factors for the iSAM2 backend that gtsam does not ship.

Each is a `gtsam.CustomFactor` whose error is the negative innovation of the matching pure
model in `models.py` (h(x) - z), with Jacobians with respect to gtsam's own tangent spaces:
Pose3 perturbs on the right, [δθ, δt] with t' = t + R δt, so ∂t/∂δt = R; Vector3 and
ConstantBias are additive; the barometer offset is a double. The tests check each Jacobian
numerically through gtsam's own retract.
"""

from __future__ import annotations

import gtsam
import numpy as np

from terrafix.estimation.models import wrap_angle


def _pose(values: gtsam.Values, key: int) -> tuple[np.ndarray, np.ndarray]:
    pose = values.atPose3(key)
    return pose.rotation().matrix(), np.asarray(pose.translation(), dtype=np.float64)


def position_factor(key_x: int, z_ned_m: np.ndarray, cov: np.ndarray,
                    axes: tuple[int, ...]) -> gtsam.CustomFactor:
    """Selected NED axes of the pose translation = z (absolute fix, operator hint)."""
    ax = list(axes)
    z = np.asarray(z_ned_m, dtype=np.float64)

    def error(this: gtsam.CustomFactor, values: gtsam.Values, H: list | None) -> np.ndarray:
        R, t = _pose(values, this.keys()[0])
        if H is not None:
            J = np.zeros((len(ax), 6))
            J[:, 3:] = R[ax, :]
            H[0] = J
        return t[ax] - z

    return gtsam.CustomFactor(gtsam.noiseModel.Gaussian.Covariance(np.asarray(cov, float)),
                              [key_x], error)


def odometry_factor(key_a: int, key_b: int, z_delta_ne_m: np.ndarray,
                    cov: np.ndarray) -> gtsam.CustomFactor:
    """NE displacement between two keyframe poses: t_b[:2] - t_a[:2] = z."""
    z = np.asarray(z_delta_ne_m, dtype=np.float64)

    def error(this: gtsam.CustomFactor, values: gtsam.Values, H: list | None) -> np.ndarray:
        ka, kb = this.keys()
        Ra, ta = _pose(values, ka)
        Rb, tb = _pose(values, kb)
        if H is not None:
            Ja = np.zeros((2, 6))
            Ja[:, 3:] = -Ra[:2, :]
            Jb = np.zeros((2, 6))
            Jb[:, 3:] = Rb[:2, :]
            H[0] = Ja
            H[1] = Jb
        return (tb[:2] - ta[:2]) - z

    return gtsam.CustomFactor(gtsam.noiseModel.Gaussian.Covariance(np.asarray(cov, float)),
                              [key_a, key_b], error)


def baro_factor(key_x: int, key_b: int, alt0_m: float, z_alt_m: float,
                sigma_m: float) -> gtsam.CustomFactor:
    """Barometer: alt0 - t_d + b = z, with b the barometer offset (a double)."""

    def error(this: gtsam.CustomFactor, values: gtsam.Values, H: list | None) -> np.ndarray:
        kx, kb = this.keys()
        R, t = _pose(values, kx)
        b = values.atDouble(kb)
        if H is not None:
            Jx = np.zeros((1, 6))
            Jx[0, 3:] = -R[2, :]
            H[0] = Jx
            H[1] = np.ones((1, 1))
        return np.array([alt0_m - t[2] + b - z_alt_m])

    return gtsam.CustomFactor(gtsam.noiseModel.Isotropic.Sigma(1, sigma_m), [key_x, key_b],
                              error)


def heading_factor(key_x: int, z_yaw_rad: float, sigma_rad: float) -> gtsam.CustomFactor:
    """Yaw of the pose rotation = z (wrapped), same Jacobian as models.heading_model."""

    def error(this: gtsam.CustomFactor, values: gtsam.Values, H: list | None) -> np.ndarray:
        R, _ = _pose(values, this.keys()[0])
        r00, r10 = R[0, 0], R[1, 0]
        if H is not None:
            den = r00 * r00 + r10 * r10
            J = np.zeros((1, 6))
            J[0, 1] = (-r00 * R[1, 2] + r10 * R[0, 2]) / den
            J[0, 2] = (r00 * R[1, 1] - r10 * R[0, 1]) / den
            H[0] = J
        return np.array([wrap_angle(float(np.arctan2(r10, r00)) - z_yaw_rad)])

    return gtsam.CustomFactor(gtsam.noiseModel.Isotropic.Sigma(1, sigma_rad), [key_x], error)


def joint_prior_factor(key_x: int, key_v: int, key_b: int, key_z: int | None,
                       R0: np.ndarray, p0: np.ndarray, v0: np.ndarray, ba0: np.ndarray,
                       bg0: np.ndarray, z0: float, cov: np.ndarray) -> gtsam.CustomFactor:
    """A full Gaussian prior on (pose, velocity, IMU bias[, barometer offset]) in the ESKF's
    error-state order [δp, δv, δθ, δb_a, δb_g(, δb_baro)] with covariance cov (15 or 16
    square): keeps the cross-correlations a set of separate priors would drop when the
    smoother is (re)started from a filter state."""
    n = 16 if key_z is not None else 15
    cov = np.asarray(cov, dtype=np.float64)[:n, :n]
    R0 = np.asarray(R0, dtype=np.float64)
    rot0 = gtsam.Rot3(R0)
    keys = [key_x, key_v, key_b] + ([key_z] if key_z is not None else [])

    def error(this: gtsam.CustomFactor, values: gtsam.Values, H: list | None) -> np.ndarray:
        ks = this.keys()
        pose = values.atPose3(ks[0])
        R = pose.rotation().matrix()
        t = np.asarray(pose.translation(), dtype=np.float64)
        v = np.asarray(values.atVector(ks[1]), dtype=np.float64)
        bias = values.atConstantBias(ks[2])
        e = np.zeros(n)
        e[0:3] = t - p0
        e[3:6] = v - v0
        e[6:9] = gtsam.Rot3.Logmap(rot0.between(pose.rotation()))
        e[9:12] = np.asarray(bias.accelerometer()) - ba0
        e[12:15] = np.asarray(bias.gyroscope()) - bg0
        if n == 16:
            e[15] = values.atDouble(ks[3]) - z0
        if H is not None:
            Jx = np.zeros((n, 6))
            Jx[0:3, 3:6] = R
            Jx[6:9, 0:3] = np.eye(3)  # right Jacobian of Log ≈ I near the prior mean
            Jv = np.zeros((n, 3))
            Jv[3:6, :] = np.eye(3)
            Jb = np.zeros((n, 6))
            Jb[9:15, :] = np.eye(6)
            H[0], H[1], H[2] = Jx, Jv, Jb
            if n == 16:
                Jz = np.zeros((n, 1))
                Jz[15, 0] = 1.0
                H[3] = Jz
        return e

    return gtsam.CustomFactor(gtsam.noiseModel.Gaussian.Covariance(cov), keys, error)
