"""The attitude the odometry projects its frames with: roll and pitch from the flight
controller, heading from the gyro and the images.

Roll and pitch: a complementary filter of the raw gyro and the FC's ATTITUDE. The FC alone
is noisy from message to message (~0.05° per axis, i.e. ~0.2 m per frame at 200 m, in every
delta); the gyro alone tilts steadily with its residual bias (~0.05°/s, a velocity error of
height × rate). Blending with a time constant of a few seconds keeps the gyro's smooth
frame-to-frame rotation and the FC's long-term level (gravity makes it observable).

Heading: *not* the FC's. A magnetometer heading is off by a few degrees and the error
wanders over minutes (hard/soft iron, motor currents, course-dependent fusion); after the
GNSS is lost nothing on board corrects it, and every odometry delta turns with it: a 2°
change is 3.5 % of the distance flown, sideways. The images measure the heading *change*
between two frames far better: the odometry's rigid fit returns the rotation about the
vertical between the two ground point sets that the given attitudes left unexplained
(`OdometryStats.yaw_correction_rad`), a few thousandths of a degree per frame pair over a
wide footprint. So the heading here is integrated from the gyro, each frame pair's
unexplained rotation is taken back (weighted against the gyro's own uncertainty over the
interval), and the same residuals estimate the gyro's vertical-rate bias so that gaps in the
tracking (sharp turns, blackouts) cost only the bias uncertainty × gap. The FC's yaw only
initialises the heading (and re-initialises it when the caller decides the integrated
heading has become worse than the FC's, `reset_yaw_to_fc`).

What this heading does *not* know is its absolute offset from true north: that stays the
FC's yaw error at initialisation, which `heading_calibration` measures against absolute
positions. What it does know is how much uncertainty it has added since: `heading_var_rad2`
(monotonic, rad²), which the calibration adds to its own variance.

This filter never reads the navigation estimator's state: the odometry must stay an
independent measurement of what the estimator tracks.

Frames: R_body_to_ned (3, 3); the heading corrections are rotations about the NED down axis
applied on the left (R ← Rz(δ) · R), i.e. they turn the whole attitude about the vertical.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from terrafix.geo.rotation import (
    R_to_quat,
    euler_tilt_axes_ned,
    quat_multiply,
    quat_slerp,
    quat_to_R,
    rotvec_to_quat,
)


class OdometryAttitudeConfig(BaseModel):
    """Settings of the odometry's attitude (`[odometry_attitude]` of the navigation config).

    Gyro numbers default to the estimator's IMU model (ICM-42688-P class MEMS, see
    `estimation.config.ImuNoise`); they size the heading uncertainty across gaps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tilt_tau_s: float = Field(3.0, gt=0)
    """Time constant of the pull of roll/pitch towards the FC's."""
    history_s: float = Field(3.0, gt=0)
    """Attitude history kept for frames processed after their capture time."""
    visual_heading: bool = True
    """Take the images' measured heading change back into the heading (False: the heading
    follows the FC's yaw with `tilt_tau_s`, as roll and pitch do)."""
    gyro_noise_radps_rthz: float = Field(1.0e-4, gt=0)
    gyro_bias_sigma0_radps: float = Field(math.radians(0.1), gt=0)
    """Vertical-rate bias before any image has measured it (FC gyro calibration at boot
    leaves ~0.05°/s; twice that as margin)."""
    gyro_bias_rw_radps_rts: float = Field(2.0e-5, ge=0)
    gyro_scale_sigma: float = Field(0.005, ge=0)
    """Gyro scale-factor error (datasheet ±0.5 %): turns through a gap cost this fraction
    of the angle turned."""
    fc_yaw_wander_deg_per_rts: float = Field(0.25, ge=0)
    """Without the visual heading: how fast the FC yaw's error (which the heading then
    follows) may wander; a Gauss-Markov error of 2.5° with a 300 s correlation time moves by
    2.5° x sqrt(2/300) ≈ 0.2°/√s, plus a margin."""
    relative_rotation: Literal["gyro", "fc"] = "gyro"
    """Where the odometry's frame-to-frame rotation comes from: "gyro" (this filter:
    integrated IMU rates, which cancel the FC's attitude noise), or "fc" (the FC's own
    ATTITUDE at both capture times, slerped; heading then the FC's too). "fc" is for FCs whose
    IMU stream is too sparse or too filtered to integrate: ArduPlane SITL's RAW_IMU at 40 Hz
    is an instantaneous, low-pass-filtered sample, and in its turns (>10 deg/s) 20 ms of
    timing error are 1.5 deg of relative rotation (p90), its ATTITUDE at 0 ms 0.34 deg."""
    max_visual_correction_rad: float = Field(math.radians(1.0), gt=0)
    """A frame pair whose unexplained rotation exceeds this (after the gyro) is not used
    for the heading (a bad fit, not a gyro error: the gyro's error over 1/3 s is tiny)."""


@dataclass(slots=True)
class _Sample:
    t_ns: int
    q: np.ndarray  # (4,) body-to-NED quaternion (w, x, y, z)
    turned_rad: float  # cumulative |vertical rotation| integrated from the gyro
    tilt_axes_ned: np.ndarray  # (3, 2) see OdometryAttitude.tilt_axes_at


def _rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) of a rotation matrix (small and large angles)."""
    c = max(-1.0, min(1.0, (float(np.trace(R)) - 1.0) / 2.0))
    angle = math.acos(c)
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if angle < 1e-9:
        return 0.5 * v
    return v * (angle / (2.0 * math.sin(angle)))


def _qz(angle_rad: float) -> np.ndarray:
    """Quaternion of a rotation by angle_rad about the NED down axis."""
    h = 0.5 * angle_rad
    return np.array([math.cos(h), 0.0, 0.0, math.sin(h)])


def _down_row(q: np.ndarray) -> np.ndarray:
    """Third row of R_body_to_ned for quaternion q (w, x, y, z): the NED down axis in body
    coordinates (the IMU hot path needs only this, not the whole matrix)."""
    w, x, y, z = q
    return np.array([2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)])


def _yaw(q: np.ndarray) -> float:
    R = quat_to_R(q)
    return math.atan2(R[1, 0], R[0, 0])


class OdometryAttitude:
    """Gyro-propagated attitude, tilt pulled towards the FC, heading corrected by the images
    (see the module docstring).

    `on_gyro(t, ω)` per IMU sample, `on_fc(t, R_body_to_ned)` per FC attitude sample,
    `on_visual_yaw(t_ref, t_cur, θ, var)` per odometry fit; `at(t)` returns R_body_to_ned
    (3, 3) at any time within the last `history_s`.
    """

    def __init__(self, config: OdometryAttitudeConfig | None = None) -> None:
        self.config = config or OdometryAttitudeConfig()
        self._history_ns = round(self.config.history_s * 1e9)
        self._q: np.ndarray | None = None
        self._t_ns: int | None = None
        self._t_fc_ns: int | None = None
        self._turned_rad = 0.0
        self._hist: deque[_Sample] = deque()
        self._last_fc_R: np.ndarray | None = None
        self._J = np.zeros((3, 2))
        """World-frame rotation vector of this filter's attitude error per radian of the FC's
        roll / pitch error (columns), see `tilt_axes_at`. Replaced, never modified in place
        (history samples share it)."""
        self.bias_radps = 0.0
        """Estimated bias of the rate about the vertical (rad/s, NED down axis)."""
        self.bias_var = self.config.gyro_bias_sigma0_radps ** 2
        self._committed_var = 0.0
        self._t_committed_ns: int | None = None
        self._turned_committed = 0.0
        self.n_visual = 0
        """Frame pairs whose heading change was taken back into the heading."""
        self.n_yaw_resets = 0

    @property
    def ready(self) -> bool:
        return self._q is not None

    # ---- propagation -------------------------------------------------------------------
    def _push(self, t_ns: int) -> None:
        assert self._q is not None
        self._hist.append(_Sample(t_ns, self._q.copy(), self._turned_rad, self._J))
        while len(self._hist) > 2 and self._hist[0].t_ns < t_ns - self._history_ns:
            self._hist.popleft()

    def on_gyro(self, t_ns: int, gyro_body_radps: np.ndarray) -> None:
        """One IMU sample: the rate held over the interval that ends at t_ns."""
        if self._q is None or self._t_ns is None:
            return
        dt = (t_ns - self._t_ns) * 1e-9
        if dt <= 0:
            return
        w = np.asarray(gyro_body_radps, dtype=np.float64)
        q = quat_multiply(self._q, rotvec_to_quat(w * dt))
        if self.config.visual_heading:
            q = quat_multiply(_qz(-self.bias_radps * dt), q)
            self.bias_var += self.config.gyro_bias_rw_radps_rts ** 2 * dt
        self._q = q / np.linalg.norm(q)
        self._turned_rad += abs(float(_down_row(self._q) @ w)) * dt
        self._t_ns = t_ns
        self._push(t_ns)

    def on_fc(self, t_ns: int, R_body_to_ned: np.ndarray) -> None:
        """One FC attitude sample (at, or just after, the filter's time)."""
        R_fc = np.asarray(R_body_to_ned, dtype=np.float64)
        self._last_fc_R = R_fc
        J_fc = euler_tilt_axes_ned(R_fc)
        if self._q is None or self._t_fc_ns is None:
            self._q = R_to_quat(R_fc)
            self._J = J_fc
            self._t_ns = self._t_fc_ns = t_ns
            self._t_committed_ns = t_ns
            self._push(t_ns)
            return
        dt = max(0.0, (t_ns - self._t_fc_ns) * 1e-9)
        self._t_fc_ns = t_ns
        k = min(1.0, dt / self.config.tilt_tau_s)
        R = quat_to_R(self._q)
        err_ned = R @ _rotvec(R.T @ R_fc)
        pull = k * (J_fc - self._J)
        if self.config.visual_heading:
            err_ned[2] = 0.0  # tilt only: the heading is the images' and the gyro's
            pull[2] = 0.0
        self._J = self._J + pull
        self._q = quat_multiply(rotvec_to_quat(k * err_ned), self._q)
        self._q /= np.linalg.norm(self._q)
        if self._t_ns is None or t_ns > self._t_ns:
            self._t_ns = t_ns
        self._push(self._t_ns)

    # ---- heading from the images --------------------------------------------------------
    def _sample_at(self, t_ns: int) -> _Sample | None:
        h = self._hist
        if not h or t_ns < h[0].t_ns:
            return None
        return h[self._index_before(t_ns)]

    def _index_before(self, t_ns: int) -> int:
        """Index of the last history sample at or before t_ns (history not empty)."""
        h = self._hist
        lo, hi = 0, len(h) - 1
        if h[hi].t_ns <= t_ns:
            return hi
        while hi - lo > 1:  # binary search in the deque (indexable)
            mid = (lo + hi) // 2
            if h[mid].t_ns <= t_ns:
                lo = mid
            else:
                hi = mid
        return lo

    def _gyro_var(self, dt_s: float, turned_rad: float) -> float:
        """Heading variance the gyro adds over dt_s while turning turned_rad (rad²)."""
        c = self.config
        return (c.gyro_noise_radps_rthz ** 2 * dt_s + self.bias_var * dt_s * dt_s
                + (c.gyro_scale_sigma * turned_rad) ** 2)

    def heading_var_rad2(self, t_ns: int) -> float:
        """Variance (rad²) the heading has gained since initialisation, up to t_ns: the images'
        residual noise on every corrected frame pair plus the gyro's over every stretch they
        did not cover. Monotonic in t_ns."""
        if self._t_committed_ns is None:
            return 0.0
        if not self.config.visual_heading:
            dt = max(0.0, (t_ns - self._t_committed_ns) * 1e-9)
            return math.radians(self.config.fc_yaw_wander_deg_per_rts) ** 2 * dt
        s = self._sample_at(t_ns)
        turned = (s.turned_rad if s is not None else self._turned_rad) - self._turned_committed
        dt = max(0.0, (t_ns - self._t_committed_ns) * 1e-9)
        return self._committed_var + self._gyro_var(dt, max(turned, 0.0))

    def on_visual_yaw(self, t_ref_ns: int, t_cur_ns: int, yaw_error_rad: float,
                      var_rad2: float) -> bool:
        """The odometry found the heading change from t_ref to t_cur too large by
        yaw_error_rad (± sqrt(var_rad2)), with this filter's attitudes at both times.

        The gyro's share of the blame is weighed (K = gyro var / (gyro var + image var)), the
        heading from t_cur on is turned back by K·error (linearly between the two times),
        and error / interval is a measurement of the vertical-rate bias. Returns False when
        the measurement is not used (disabled, implausible, times not in the history)."""
        c = self.config
        if (not c.visual_heading or self._q is None or not math.isfinite(yaw_error_rad)
                or not math.isfinite(var_rad2) or var_rad2 < 0
                or abs(yaw_error_rad) > c.max_visual_correction_rad or t_cur_ns <= t_ref_ns):
            return False
        s_ref, s_cur = self._sample_at(t_ref_ns), self._sample_at(t_cur_ns)
        if s_ref is None or s_cur is None or self._t_committed_ns is None:
            return False
        dt = (t_cur_ns - t_ref_ns) * 1e-9
        var_gyro = self._gyro_var(dt, max(s_cur.turned_rad - s_ref.turned_rad, 0.0))
        k = var_gyro / (var_gyro + var_rad2)
        corr = -k * yaw_error_rad
        # commit: the gyro's variance up to t_ref (no image covered that stretch), then the
        # fused variance over the pair
        gap_s = max(0.0, (t_ref_ns - self._t_committed_ns) * 1e-9)
        gap_turn = max(s_ref.turned_rad - self._turned_committed, 0.0)
        if t_ref_ns >= self._t_committed_ns:
            self._committed_var += self._gyro_var(gap_s, gap_turn)
        self._committed_var += var_gyro * var_rad2 / (var_gyro + var_rad2)
        self._t_committed_ns = max(t_cur_ns, self._t_committed_ns)
        self._turned_committed = s_cur.turned_rad
        # bias: the error accrued over dt at the current bias estimate's residual
        r_b = (var_rad2 + var_gyro - self.bias_var * dt * dt) / (dt * dt)
        kb = self.bias_var / (self.bias_var + max(r_b, 1e-30))
        self.bias_radps += kb * yaw_error_rad / dt
        self.bias_var *= 1.0 - kb
        # turn the heading back from t_ref (0) to t_cur (full) and after
        for s in self._hist:
            if s.t_ns <= t_ref_ns:
                continue
            a = 1.0 if s.t_ns >= t_cur_ns else (s.t_ns - t_ref_ns) / (t_cur_ns - t_ref_ns)
            s.q = quat_multiply(_qz(a * corr), s.q)
        self._q = quat_multiply(_qz(corr), self._q)
        self._q /= np.linalg.norm(self._q)
        self.n_visual += 1
        return True

    def reset_yaw_to_fc(self) -> float:
        """Turn the whole heading (history included, so relative rotations are kept) onto the
        FC's latest yaw; the accumulated heading variance starts again from zero. Returns the
        angle turned (rad). For when the integrated heading has become worse than the FC's."""
        if self._q is None or self._last_fc_R is None:
            return 0.0
        R_fc = self._last_fc_R
        R_own = self.at(self._t_fc_ns) if self._t_fc_ns is not None else None
        own = _yaw(self._q) if R_own is None else math.atan2(R_own[1, 0], R_own[0, 0])
        d = math.atan2(R_fc[1, 0], R_fc[0, 0]) - own  # both at the FC sample's time
        d = math.atan2(math.sin(d), math.cos(d))
        qd = _qz(d)
        Rd = quat_to_R(qd)
        self._J = Rd @ self._J
        for s in self._hist:
            s.q = quat_multiply(qd, s.q)
            s.tilt_axes_ned = Rd @ s.tilt_axes_ned
        self._q = quat_multiply(qd, self._q)
        self._q /= np.linalg.norm(self._q)
        self._committed_var = 0.0
        self._t_committed_ns = self._t_ns
        self._turned_committed = self._turned_rad
        self.n_yaw_resets += 1
        return d

    def tilt_axes_at(self, t_ns: int) -> np.ndarray | None:
        """(3, 2) the attitude error at t_ns per radian of the FC's roll error (column 0) and
        pitch error (column 1), as a rotation vector in NED (R_out = exp(J e) R_true); None
        where `at` has no attitude.

        Why: the FC's error is an error of its Euler roll and pitch, so it turns with the
        aircraft; the gyro carries this filter's error fixed in NED, and the pull towards the
        FC follows the FC's turning error with a lag of about the turn rate x `tilt_tau_s`
        (in a 40° bank at 22 m/s, 0.36 rad/s x 3 s: 0.7 of the FC's error, 47° behind). The
        odometry's tilt model (`OdometryDelta.tilt_error_ne_m`) must perturb the attitude it
        was given, not the FC's: with the FC's axes, a 0.9° roll / 1° pitch error predicted
        a 15 m cross-track error per second that the 800 m turn's odometry did not have
        (dead-reckoning-high seed 3), and the heading calibration fitted the wrong tilt."""
        s = self._sample_at(t_ns)
        if s is None:
            return None
        return s.tilt_axes_ned.copy()

    def at(self, t_ns: int) -> np.ndarray | None:
        """R_body_to_ned (3, 3) at t_ns, interpolated in the history (held at the ends);
        None before the first FC sample or when t_ns is older than the history."""
        h = self._hist
        if not h or t_ns < h[0].t_ns:
            return None
        if t_ns >= h[-1].t_ns:
            return quat_to_R(h[-1].q)
        lo = self._index_before(t_ns)
        s0, s1 = h[lo], h[lo + 1]
        a = 0.0 if s1.t_ns == s0.t_ns else (t_ns - s0.t_ns) / (s1.t_ns - s0.t_ns)
        return quat_to_R(quat_slerp(s0.q, s1.q, a))
