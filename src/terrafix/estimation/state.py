"""Filter state as plain data, its error-state layout, and the error injection.

Nominal state (what the aircraft is doing): position p_ned (m), velocity v_ned (m/s),
attitude q_body_to_ned (Hamilton [w, x, y, z]), accelerometer bias (m/s², body), gyro bias
(rad/s, body), barometer offset (m), plus positions cloned at frame capture times.

Error state (what the covariance describes), in this order:

    index  0:3   δp     position error, NED, m
           3:6   δv     velocity error, NED, m/s
           6:9   δθ     attitude error, body frame (R_true = R_est · Exp(δθ)), rad
           9:12  δb_a   accelerometer bias error, m/s²
          12:15  δb_g   gyro bias error, rad/s
          15     δb_b   barometer offset error, m
          16+3k  δc_k   error of clone k (a past position, NED, m), k = 0 oldest

The 15 inertial states are the classic ESKF; the barometer offset is the 16th, because the
barometer's offset to the take-off altitude drifts with weather and would otherwise be
misread as height. Clones (stochastic cloning, as in MSCKF/open_vins) hold the position at
past frame capture times, so that (a) a visual-odometry delta between two frames is a
function of two states in the vector and (b) a fix that arrives after the registration's
latency is applied at the time the frame was taken, exactly, without re-running the IMU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from terrafix.geo.rotation import quat_multiply, quat_to_R, rotvec_to_quat

P = slice(0, 3)
V = slice(3, 6)
TH = slice(6, 9)
BA = slice(9, 12)
BG = slice(12, 15)
BB = 15
CORE_DIM = 16


def clone_slice(k: int) -> slice:
    """Error-state slice of clone k (0 = oldest)."""
    return slice(CORE_DIM + 3 * k, CORE_DIM + 3 * k + 3)


@dataclass(slots=True)
class EskfState:
    """Mutable filter state (plain data; propagation and updates are separate functions).

    p_ned: (3,) m; v_ned: (3,) m/s; q_body_to_ned: (4,) unit quaternion; R_body_to_ned:
    (3, 3), kept equal to quat_to_R(q_body_to_ned) by every function that changes q;
    accel_bias_mps2: (3,); gyro_bias_radps: (3,); baro_bias_m: float;
    clone_t_ns: capture times of the clones, oldest first; clone_p_ned: (K, 3) their positions;
    cov: (16 + 3K, 16 + 3K) error-state covariance (1-sigma², SI units).
    """

    t_ns: int
    p_ned: np.ndarray
    v_ned: np.ndarray
    q_body_to_ned: np.ndarray
    R_body_to_ned: np.ndarray
    accel_bias_mps2: np.ndarray
    gyro_bias_radps: np.ndarray
    baro_bias_m: float
    cov: np.ndarray
    clone_t_ns: list[int] = field(default_factory=list)
    clone_p_ned: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    @property
    def dim(self) -> int:
        return CORE_DIM + 3 * len(self.clone_t_ns)

    def copy(self) -> EskfState:
        return EskfState(
            t_ns=self.t_ns,
            p_ned=self.p_ned.copy(),
            v_ned=self.v_ned.copy(),
            q_body_to_ned=self.q_body_to_ned.copy(),
            R_body_to_ned=self.R_body_to_ned.copy(),
            accel_bias_mps2=self.accel_bias_mps2.copy(),
            gyro_bias_radps=self.gyro_bias_radps.copy(),
            baro_bias_m=self.baro_bias_m,
            cov=self.cov.copy(),
            clone_t_ns=list(self.clone_t_ns),
            clone_p_ned=self.clone_p_ned.copy(),
        )


def inject_error(state: EskfState, dx: np.ndarray) -> None:
    """Add an error-state correction dx (dim,) to the nominal state, in place.

    Attitude is corrected on the right (body-frame error), matching the layout above.
    """
    state.p_ned += dx[P]
    state.v_ned += dx[V]
    q = quat_multiply(state.q_body_to_ned, rotvec_to_quat(dx[TH]))
    q /= np.linalg.norm(q)
    state.q_body_to_ned = q
    state.R_body_to_ned = quat_to_R(q)
    state.accel_bias_mps2 += dx[BA]
    state.gyro_bias_radps += dx[BG]
    state.baro_bias_m += float(dx[BB])
    if state.clone_t_ns:
        state.clone_p_ned += dx[CORE_DIM:].reshape(-1, 3)


def reset_covariance_after_injection(cov: np.ndarray, dtheta: np.ndarray) -> np.ndarray:
    """ESKF reset: move the covariance to the corrected attitude's tangent space.

    G = I except the attitude block I - [δθ/2]× (Solà, "Quaternion kinematics for the
    error-state Kalman filter", §7.2). Returns G cov Gᵀ; shape as cov.
    """
    if not np.any(dtheta):
        return cov
    h = 0.5 * dtheta
    G = np.array([[1.0, h[2], -h[1]], [-h[2], 1.0, h[0]], [h[1], -h[0], 1.0]])
    out = cov.copy()
    out[TH, :] = G @ out[TH, :]
    out[:, TH] = out[:, TH] @ G.T
    return out


def add_clone(state: EskfState, t_ns: int) -> None:
    """Augment the state with the position at time t_ns (near the state time), in place.

    The clone is p + v·(t - t_state): a frame captured between two IMU samples is cloned at
    its own capture time, to first order. Jacobian J = [I, Δt·I] on (δp, δv).
    """
    dt = (t_ns - state.t_ns) * 1e-9
    p_clone = state.p_ned + state.v_ned * dt
    n = state.dim
    J = np.zeros((3, n))
    J[:, P] = np.eye(3)
    J[:, V] = dt * np.eye(3)
    JP = J @ state.cov
    cov = np.empty((n + 3, n + 3))
    cov[:n, :n] = state.cov
    cov[n:, :n] = JP
    cov[:n, n:] = JP.T
    cov[n:, n:] = JP @ J.T
    state.cov = cov
    state.clone_t_ns.append(int(t_ns))
    state.clone_p_ned = np.vstack([state.clone_p_ned, p_clone[None, :]])


def drop_oldest_clone(state: EskfState) -> None:
    """Marginalise the oldest clone (delete its rows and columns), in place."""
    if not state.clone_t_ns:
        return
    keep = np.r_[0:CORE_DIM, CORE_DIM + 3 : state.dim]
    state.cov = state.cov[np.ix_(keep, keep)]
    state.clone_t_ns.pop(0)
    state.clone_p_ned = state.clone_p_ned[1:].copy()


def find_clone(state: EskfState, t_ns: int, tolerance_ns: int) -> int | None:
    """Index of the clone taken at t_ns (within tolerance), or None."""
    for k in range(len(state.clone_t_ns) - 1, -1, -1):
        if abs(state.clone_t_ns[k] - t_ns) <= tolerance_ns:
            return k
    return None


def is_positive_definite(cov: np.ndarray) -> bool:
    """True when the filter covariance is usable: finite, the 16 core states Cholesky-
    factorisable, and every clone variance positive.

    The full matrix is only positive *semi*-definite by construction: a clone taken at the
    state time is an exact copy of the position until process noise separates them, so a
    Cholesky of the whole matrix would report a healthy filter as LOST.
    """
    if not np.all(np.isfinite(cov)):
        return False
    try:
        np.linalg.cholesky(cov[:CORE_DIM, :CORE_DIM])
    except np.linalg.LinAlgError:
        return False
    return bool(np.all(np.diag(cov)[CORE_DIM:] > 0.0))


def reset_horizontal_velocity(v_ned: np.ndarray, cov: np.ndarray, v_ne_mps: np.ndarray,
                              cov_v_ne_m2s2: np.ndarray) -> None:
    """In place: replace the horizontal velocity (v_ned (3,)) and its covariance block in the
    state covariance (N, N), decorrelated from the rest (after a fall-back onto the GNSS-free
    reference: the velocity a spoof dragged goes with the position)."""
    v_ned[:2] = np.asarray(v_ne_mps, dtype=np.float64)[:2]
    cov[3:5, :] = 0.0
    cov[:, 3:5] = 0.0
    cov[3:5, 3:5] = np.asarray(cov_v_ne_m2s2, dtype=np.float64)
