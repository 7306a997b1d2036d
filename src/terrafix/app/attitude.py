"""The attitude the odometry projects its frames with: a complementary filter of the raw gyro
and the flight controller's ATTITUDE.

Why not the FC attitude alone: its message-to-message noise (~0.05° per axis) shifts every
ground point by height × angle, ~0.2 m per frame at 200 m, and that noise enters every
odometry delta. Why not the gyro alone: its residual bias (~0.05°/s) tilts the integrated
attitude steadily, and a tilt *rate* is a velocity error of height × rate (~0.2 m/s at
200 m) that never averages out. Blending the two with a time constant of a few seconds keeps
the gyro's smooth frame-to-frame rotation and the FC's long-term level, so neither error
accumulates. This filter never reads the navigation estimator's state (its biases or
attitude): the odometry must stay an independent measurement of what the estimator tracks.

R_cf is propagated at IMU rate, R ← R · Exp(ω dt), and pulled towards each FC sample by the
fraction dt_fc / tau_s of the body-frame rotation between them.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from terrafix.geo.rotation import (
    R_to_quat,
    quat_multiply,
    quat_slerp,
    quat_to_R,
    rotvec_to_quat,
)


def _rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) of a rotation matrix (small and large angles)."""
    c = max(-1.0, min(1.0, (float(np.trace(R)) - 1.0) / 2.0))
    angle = math.acos(c)
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if angle < 1e-9:
        return 0.5 * v
    return v * (angle / (2.0 * math.sin(angle)))




class ComplementaryAttitude:
    """Gyro-propagated attitude pulled towards the FC attitude (see the module docstring).

    `on_gyro(t, ω)` per IMU sample, `on_fc(t, R_body_to_ned)` per FC attitude sample;
    `at(t)` returns R_body_to_ned (3, 3) at any time within the last `history_s`.
    """

    def __init__(self, tau_s: float = 3.0, history_s: float = 3.0) -> None:
        if not tau_s > 0:
            raise ValueError(f"complementary filter time constant must be > 0 s, got {tau_s}")
        self.tau_s = float(tau_s)
        self._history_ns = round(history_s * 1e9)
        self._q: np.ndarray | None = None
        self._t_ns: int | None = None
        self._t_fc_ns: int | None = None
        self._hist: deque[tuple[int, np.ndarray]] = deque()

    @property
    def ready(self) -> bool:
        return self._q is not None

    def _push(self, t_ns: int) -> None:
        assert self._q is not None
        self._hist.append((t_ns, self._q.copy()))
        while len(self._hist) > 2 and self._hist[0][0] < t_ns - self._history_ns:
            self._hist.popleft()

    def on_gyro(self, t_ns: int, gyro_body_radps: np.ndarray) -> None:
        """One IMU sample: the rate held over the interval that ends at t_ns."""
        if self._q is None or self._t_ns is None:
            return
        dt = (t_ns - self._t_ns) * 1e-9
        if dt <= 0:
            return
        self._q = quat_multiply(self._q, rotvec_to_quat(np.asarray(gyro_body_radps) * dt))
        self._q /= np.linalg.norm(self._q)
        self._t_ns = t_ns
        self._push(t_ns)

    def on_fc(self, t_ns: int, R_body_to_ned: np.ndarray) -> None:
        """One FC attitude sample (at, or just after, the filter's time)."""
        if self._q is None or self._t_fc_ns is None:
            self._q = R_to_quat(R_body_to_ned)
            self._t_ns = self._t_fc_ns = t_ns
            self._push(t_ns)
            return
        dt = max(0.0, (t_ns - self._t_fc_ns) * 1e-9)
        self._t_fc_ns = t_ns
        k = min(1.0, dt / self.tau_s)
        err = _rotvec(quat_to_R(self._q).T @ np.asarray(R_body_to_ned))  # body frame
        self._q = quat_multiply(self._q, rotvec_to_quat(k * err))
        self._q /= np.linalg.norm(self._q)
        if self._t_ns is None or t_ns > self._t_ns:
            self._t_ns = t_ns
        self._push(self._t_ns)

    def at(self, t_ns: int) -> np.ndarray | None:
        """R_body_to_ned (3, 3) at t_ns, interpolated in the history (held at the ends);
        None before the first FC sample or when t_ns is older than the history."""
        h = self._hist
        if not h or t_ns < h[0][0]:
            return None
        if t_ns >= h[-1][0]:
            return quat_to_R(h[-1][1])
        lo, hi = 0, len(h) - 1
        while hi - lo > 1:  # binary search in the deque (indexable)
            mid = (lo + hi) // 2
            if h[mid][0] <= t_ns:
                lo = mid
            else:
                hi = mid
        (t0, q0), (t1, q1) = h[lo], h[hi]
        a = 0.0 if t1 == t0 else (t_ns - t0) / (t1 - t0)
        return quat_to_R(quat_slerp(q0, q1, a))
