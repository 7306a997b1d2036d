"""IMU propagation of the ESKF: nominal strapdown integration and error covariance.

Runs at IMU rate (200 Hz), so it is written for speed: scalars stay Python floats, the
transition matrix and noise are preallocated and only their non-constant blocks are
rewritten, and the covariance is propagated in place block-wise (F only touches the 16 core
rows/columns; clones are constant positions, so their own block is unchanged).

Continuous error dynamics (body-frame attitude error, Solà 2017 §5.3):
    δṗ = δv
    δv̇ = -R [a]× δθ - R δb_a - R n_a
    δθ̇ = -[ω]× δθ - δb_g - n_g
    δḃ_a = n_ba,  δḃ_g = n_bg,  δḃ_baro = n_bb
with a = accel - b_a, ω = gyro - b_g. Discretised to second order in the interval (δθ block
exactly as Exp(-ω dt), the ½Δt² couplings of δp to δθ and δb_a and of δv to δb_g and the
Δt³/6 coupling of δp to δb_g included),
noise integrated as Q = diag(σ² dt) per block plus the velocity noise carried into position
(the isotropic accelerometer noise is unchanged by R), plus the gyro scale-factor term of
`ImuNoise.gyro_scale_sigma`. The covariance part may be applied once per few IMU samples
(`PendingCovariance`, `EstimatorConfig.covariance_every_n_imu`).
"""

from __future__ import annotations

import math

import numpy as np

from terrafix.estimation.config import EstimatorConfig
from terrafix.estimation.state import BA, BB, BG, CORE_DIM, TH, EskfState, P, V


def _exp_so3(wx: float, wy: float, wz: float) -> np.ndarray:
    """Rodrigues: rotation matrix of the rotation vector (wx, wy, wz)."""
    th2 = wx * wx + wy * wy + wz * wz
    if th2 < 1e-16:
        a, b = 1.0 - th2 / 6.0, 0.5 - th2 / 24.0
    else:
        th = math.sqrt(th2)
        a, b = math.sin(th) / th, (1.0 - math.cos(th)) / th2
    return np.array(
        [
            [1.0 - b * (wy * wy + wz * wz), b * wx * wy - a * wz, b * wx * wz + a * wy],
            [b * wx * wy + a * wz, 1.0 - b * (wx * wx + wz * wz), b * wy * wz - a * wx],
            [b * wx * wz - a * wy, b * wy * wz + a * wx, 1.0 - b * (wx * wx + wy * wy)],
        ]
    )


def _quat_step(q: np.ndarray, wx: float, wy: float, wz: float) -> np.ndarray:
    """q ⊗ Exp(w) for a Hamilton quaternion and body-frame rotation vector w; normalised."""
    th = math.sqrt(wx * wx + wy * wy + wz * wz)
    if th < 1e-12:
        dw, s = 1.0, 0.5
    else:
        dw, s = math.cos(0.5 * th), math.sin(0.5 * th) / th
    dx, dy, dz = s * wx, s * wy, s * wz
    w1, x1, y1, z1 = float(q[0]), float(q[1]), float(q[2]), float(q[3])
    w = w1 * dw - x1 * dx - y1 * dy - z1 * dz
    x = w1 * dx + x1 * dw + y1 * dz - z1 * dy
    y = w1 * dy - x1 * dz + y1 * dw + z1 * dx
    z = w1 * dz + x1 * dy - y1 * dx + z1 * dw
    n = math.sqrt(w * w + x * x + y * y + z * z)
    return np.array([w / n, x / n, y / n, z / n])


def _quat_to_R(q: np.ndarray) -> np.ndarray:
    w, x, y, z = float(q[0]), float(q[1]), float(q[2]), float(q[3])
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


class PendingCovariance:
    """IMU intervals integrated into the nominal state but not yet into the covariance.

    The covariance is only read at updates, clones and outputs (tens of Hz), so the ESKF
    integrates the nominal state at IMU rate and applies the error transition once per few
    samples, over their total interval with the mean specific force and the summed rotation
    (second-order terms included, so K steps of 5 ms give the product of the K one-step
    transitions to O(Δt³)). Scalars stay Python floats: accumulating costs ~2 µs.
    """

    __slots__ = ("R0", "ax", "ay", "az", "dt", "n", "sx", "sy", "sz", "wx", "wy", "wz")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.dt = 0.0
        self.R0: np.ndarray | None = None
        self.ax = self.ay = self.az = 0.0
        self.wx = self.wy = self.wz = 0.0
        self.sx = self.sy = self.sz = 0.0


class ImuPropagator:
    """Propagates an `EskfState` through IMU intervals, in place.

    Holds only preallocated scratch arrays and the noise constants; the state lives in the
    `EskfState` passed in, so one propagator can serve any number of states (the iSAM2
    backend uses one for its real-time output between keyframes).
    """

    __slots__ = ("_F", "_diag", "_g", "_q_var", "_sa2", "_scale_q")

    def __init__(self, config: EstimatorConfig) -> None:
        imu = config.imu
        self._g = np.array([0.0, 0.0, config.gravity_mps2])
        self._F = np.eye(CORE_DIM)
        # continuous noise variances per unit time, per error-state index
        q = np.zeros(CORE_DIM)
        q[V] = imu.accel_noise_mps2_rthz**2
        q[TH] = imu.gyro_noise_radps_rthz**2
        q[BA] = imu.accel_bias_rw_mps2_rts**2
        q[BG] = imu.gyro_bias_rw_radps_rts**2
        q[BB] = config.baro_bias_rw_m_rts**2
        self._q_var = q
        self._sa2 = imu.accel_noise_mps2_rthz**2
        self._diag = np.arange(CORE_DIM)
        self._scale_q = imu.gyro_scale_sigma**2 * imu.gyro_scale_correlation_s

    def propagate(self, state: EskfState, accel_body_mps2: np.ndarray,
                  gyro_body_radps: np.ndarray, t_ns: int,
                  pending: PendingCovariance | None = None) -> None:
        """Integrate from state.t_ns to t_ns with the given (interval-mean) IMU reading.

        accel_body_mps2: (3,) specific force, body FRD; gyro_body_radps: (3,) body rate.
        pending: if given, the covariance part is accumulated there (apply it with
        `flush`); otherwise it is applied now.
        """
        dt = (t_ns - state.t_ns) * 1e-9
        if dt <= 0.0:
            return
        ba, bg = state.accel_bias_mps2, state.gyro_bias_radps
        ax = float(accel_body_mps2[0]) - float(ba[0])
        ay = float(accel_body_mps2[1]) - float(ba[1])
        az = float(accel_body_mps2[2]) - float(ba[2])
        wx = (float(gyro_body_radps[0]) - float(bg[0])) * dt
        wy = (float(gyro_body_radps[1]) - float(bg[1])) * dt
        wz = (float(gyro_body_radps[2]) - float(bg[2])) * dt

        R0 = state.R_body_to_ned
        q1 = _quat_step(state.q_body_to_ned, wx, wy, wz)
        R1 = _quat_to_R(q1)
        # specific force rotated with the mid-interval attitude (second order in dt)
        a_ned = 0.5 * (R0 + R1) @ np.array([ax, ay, az]) + self._g
        state.p_ned += state.v_ned * dt + (0.5 * dt * dt) * a_ned
        state.v_ned += a_ned * dt
        state.q_body_to_ned = q1
        state.R_body_to_ned = R1
        state.t_ns = t_ns

        acc = pending if pending is not None else PendingCovariance()
        if acc.n == 0:
            acc.R0 = R0
        acc.n += 1
        acc.dt += dt
        acc.ax += ax * dt
        acc.ay += ay * dt
        acc.az += az * dt
        acc.wx += wx
        acc.wy += wy
        acc.wz += wz
        if self._scale_q > 0.0:
            k = self._scale_q / dt  # (σ_s ω)² τ dt with ω = w / dt
            acc.sx += k * wx * wx
            acc.sy += k * wy * wy
            acc.sz += k * wz * wz
        if pending is None:
            self.flush(state, acc)

    def flush(self, state: EskfState, acc: PendingCovariance) -> None:
        """Apply the accumulated error transition and process noise to state.cov."""
        if acc.n == 0 or acc.R0 is None:
            return
        T = acc.dt
        ax, ay, az = acc.ax / T, acc.ay / T, acc.az / T
        # attitude at mid-block: the body rotates ω·T over the block (0.7° at 35°/s, 20 ms)
        R0 = acc.R0 @ _exp_so3(0.5 * acc.wx, 0.5 * acc.wy, 0.5 * acc.wz)
        F = self._F
        h = 0.5 * T * T
        F[0, 3] = F[1, 4] = F[2, 5] = T
        RA = R0 @ np.array([[0.0, -az, ay], [az, 0.0, -ax], [-ay, ax, 0.0]])
        F[V, TH] = RA * (-T)
        F[P, TH] = RA * (-h)
        F[V, BA] = R0 * (-T)
        F[P, BA] = R0 * (-h)
        F[V, BG] = RA * h
        F[P, BG] = RA * (h * T / 3.0)  # δp ← δv ← δθ ← δb_g: T³/6
        F[TH, TH] = _exp_so3(acc.wx, acc.wy, acc.wz).T
        # δθ ← δb_g over a rotation W: -T·J_r(W) ≈ -T (I - ½[W]×)
        wx, wy, wz = 0.5 * acc.wx, 0.5 * acc.wy, 0.5 * acc.wz
        F[TH, BG] = np.array([[-1.0, -wz, wy], [wz, -1.0, -wx], [-wy, wx, -1.0]]) * T

        cov = state.cov
        n = CORE_DIM
        cov[:n, :] = F @ cov[:n, :]
        cov[:, :n] = cov[:, :n] @ F.T
        cov[self._diag, self._diag] += self._q_var * T
        # velocity white noise integrated into position: σ²T³/3 on p, σ²T²/2 on p-v
        qa = self._sa2
        for i in range(3):
            cov[i, i] += qa * T * T * T / 3.0
            cov[i, 3 + i] += qa * h
            cov[3 + i, i] += qa * h
        cov[6, 6] += acc.sx
        cov[7, 7] += acc.sy
        cov[8, 8] += acc.sz
        acc.reset()
