"""Sequential test of GNSS motion against the odometry's: a slow pull-off accumulates evidence.

Why: a careful spoofer drags the reported position away at a fraction of a metre to two
metres per second, with a velocity that matches. Each sample is then only a few decimetres
further off than the last, well inside one sample's noise, and a filter that fuses the GNSS
follows it. What the spoofer cannot hide is that the GNSS *moves* differently from the
aircraft: over each second the GNSS displacement exceeds the displacement the visual
odometry measured (which no radio signal touches) by the pull-off rate. Summed, these
excesses grow linearly with time while noise grows with its square root.

The test is a two-dimensional CUSUM (Crosier's multivariate form, in metres rather than
sigmas): the excess displacement of each interval is added to a running vector S, and S is
then shrunk towards zero by an allowance a x dt, separately along and across the current
track. The allowance is what the odometry's correlated errors may legitimately produce: a
heading error of sigma_theta moves a ground velocity v by v sigma_theta across the track, a
scale error by v sigma_scale along it, the attitude's shared tilt error moves the interval's
odometry by what its ground shift turned through in that interval (in a steep turn flown
high, metres per second; nothing on a straight leg), and the receiver's own slow error
wanders by a few centimetres per second (`allowance_floor_mps`). A bias within the
allowance never accumulates; a pull-off of rate r > a reaches the threshold h after about
h / (r - a) seconds, at an offset of about r h / (r - a). White noise of sigma_w per interval
crosses h only once in about exp(2 a h / sigma_w²) intervals (Siegmund's approximation).

The tilt's share is also *fitted*: a roll / pitch error of the flight controller is one
value for minutes (Gauss-Markov, ~60 s), and in a turn flown high it moves each interval's
odometry by metres (`OdometryDelta.tilt_error_ne_m`, per sigma). An allowance alone lets
only so many sigmas through per interval: a tilt beyond them (a 3-sigma draw: 1 % of flights)
adds up through every turn, and the test closed the gate on genuine GNSS in the first
800 m turn of a flight (dead-reckoning-high seed 3: 1.2 deg roll, 0.9 deg pitch error,
alarm 8 s after take-off). So a small Kalman filter estimates the tilt (in sigmas, prior
N(0, I), decaying towards it with `tilt_tau_s`) from the excesses while the GNSS is trusted,
the CUSUM takes the excess the fitted tilt does not explain, and the allowance covers the
fit's remaining uncertainty. A pull-off cannot hide in it: a tilt's share turns with the
aircraft and vanishes on straight legs, a pull-off's stays fixed in NED; the fit sees the
heading and scale biases as noise inflated by `bias_correlation_s` / interval (they are
biases, and in a steady turn a heading bias looks like a pitch error).

`quiet_since_ns` is the last time S was small (below a quarter of h): a pull-off that the
test has seen began after it, so anchors older than that are untouched by it (the reference
falls back onto one of them, see gnss_reference.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class CusumStep:
    """The outcome of one interval: statistic |S| (m), allowance used (m/s), alarm."""

    t_ns: int
    statistic_m: float
    allowance_mps: float
    alarm: bool


class DisplacementCusum:
    """Vector CUSUM on (GNSS displacement - odometry displacement) per interval.

    threshold_m: h, the alarm level of |S|. allowance_sigmas: how many sigmas of the
    odometry's velocity bias the allowance covers. allowance_floor_mps: allowance for what
    the odometry's reported sigmas do not include (receiver wander, time alignment).
    tilt_allowance_sigmas: how many sigmas of the attitude's shared tilt error it covers
    (more than of the biases: the tilt's share sums to a bounded offset across a turn, so a
    wide allowance costs sensitivity only while turning, while one tilt error beyond it
    would add up over every turn of the flight). tilt_fit_noise_m: 1-sigma per-axis noise
    of one interval's excess (receiver and odometry) for the tilt fit; None: no fit (the
    allowance alone). tilt_tau_s: the tilt error's correlation time. bias_correlation_s:
    how long the heading / scale biases stay the same, for the fit's noise.
    """

    def __init__(self, threshold_m: float, allowance_sigmas: float,
                 allowance_floor_mps: float, tilt_allowance_sigmas: float = 2.0,
                 tilt_fit_noise_m: float | None = None, tilt_tau_s: float = 60.0,
                 bias_correlation_s: float = 10.0) -> None:
        if not (threshold_m > 0 and math.isfinite(threshold_m)):
            raise ValueError(f"CUSUM threshold must be a finite number of metres > 0, got "
                             f"{threshold_m}")
        if not (allowance_sigmas >= 0 and allowance_floor_mps >= 0):
            raise ValueError(f"CUSUM allowance must be >= 0, got {allowance_sigmas} sigmas, "
                             f"floor {allowance_floor_mps} m/s")
        self.threshold_m = threshold_m
        self.allowance_sigmas = allowance_sigmas
        self.allowance_floor_mps = allowance_floor_mps
        self.tilt_allowance_sigmas = tilt_allowance_sigmas
        if tilt_fit_noise_m is not None and not (tilt_fit_noise_m > 0
                                                 and math.isfinite(tilt_fit_noise_m)):
            raise ValueError(f"CUSUM tilt fit noise must be a finite number of metres > 0 or "
                             f"None, got {tilt_fit_noise_m}")
        if not (tilt_tau_s > 0 and bias_correlation_s > 0):
            raise ValueError(f"CUSUM tilt correlation times must be > 0 s, got {tilt_tau_s}, "
                             f"{bias_correlation_s}")
        self.tilt_fit_noise_m = tilt_fit_noise_m
        self.tilt_tau_s = tilt_tau_s
        self.bias_correlation_s = bias_correlation_s
        self.tilt_sigmas = np.zeros(2)
        """Fitted tilt error, in the sigmas of `tilt_error_ne_m`'s columns."""
        self.tilt_cov = np.eye(2)
        self.S_ne_m = np.zeros(2)
        self.quiet_since_ns: int | None = None
        self.n_steps = 0
        self.last_allowance_mps = allowance_floor_mps
        """The larger steady allowance (heading, scale, floor) of the last interval: a rate
        below it never accumulates. The tilt's share is left out: it follows the turns and
        sums to a bounded offset, not a rate."""

    @property
    def statistic_m(self) -> float:
        return float(np.hypot(*self.S_ne_m))

    def reset(self, t_ns: int) -> None:
        """Start again (after the gate closed, or a new reference segment). The fitted tilt
        goes back to its prior too: it was fitted to GNSS that may be the spoof just found."""
        self.S_ne_m = np.zeros(2)
        self.quiet_since_ns = t_ns
        self.tilt_sigmas = np.zeros(2)
        self.tilt_cov = np.eye(2)

    def clamp_below_threshold(self) -> None:
        """Hold |S| at 90 % of the threshold at most: used while the gate is already closed,
        where the question is whether the GNSS moves like the aircraft *now*. A spoof that
        goes on is back above h within an interval or two; one that stopped passes at once
        instead of waiting for a pull-off's worth of evidence to drain at the allowance rate
        (ArduPlane SITL: 100 s with a restored receiver and no reopening, S ~40 m draining at
        0.2 m/s)."""
        n, cap = self.statistic_m, 0.9 * self.threshold_m
        if n > cap:
            self.S_ne_m = self.S_ne_m * (cap / n)

    def step(self, t_ns: int, dt_s: float, excess_ne_m: np.ndarray,
             odometry_ne_m: np.ndarray, sigma_heading_rad: float,
             sigma_scale: float, tilt_error_ne_m: np.ndarray | None = None,
             learn: bool = True) -> CusumStep:
        """One interval of dt_s seconds.

        excess_ne_m: (2,) GNSS displacement minus odometry displacement over the interval;
        odometry_ne_m: (2,) the odometry displacement itself; sigma_heading_rad /
        sigma_scale: the odometry's heading and scale bias sigmas. A heading bias moves the
        odometry across its track, a scale bias along it, so the allowance is an ellipse
        in the track frame: a pull-off fixed in NED shows across the track on most legs
        even while the scale is still poorly known (then the along-track allowance is wide).
        tilt_error_ne_m: (2, 2) the interval's odometry error per one-sigma shared roll /
        pitch error (columns), see `OdometryDelta.tilt_error_ne_m`; None: none. learn:
        whether the interval's GNSS may teach the tilt fit (False while it is not trusted:
        the fit then only decays towards its prior).
        """
        if not (dt_s > 0 and math.isfinite(dt_s)):
            raise ValueError(f"CUSUM interval must be a finite number of seconds > 0, got {dt_s}")
        d = np.asarray(odometry_ne_m, dtype=np.float64)
        speed = float(np.hypot(*d)) / dt_s
        u = d / (speed * dt_s) if speed > 0.5 else np.array([1.0, 0.0])
        w = np.array([-u[1], u[0]])
        a_along = self.allowance_sigmas * speed * sigma_scale + self.allowance_floor_mps
        a_across = self.allowance_sigmas * speed * sigma_heading_rad + self.allowance_floor_mps
        steady_mps = max(a_along, a_across)
        excess = np.asarray(excess_ne_m, dtype=np.float64)
        if tilt_error_ne_m is not None:
            T = np.asarray(tilt_error_ne_m, dtype=np.float64)
            if self.tilt_fit_noise_m is not None:
                excess, T = self._fit_tilt(dt_s, excess, T, u, w, speed * sigma_heading_rad,
                                           speed * sigma_scale, learn)
            a_along += self.tilt_allowance_sigmas * float(np.hypot(*(u @ T))) / dt_s
            a_across += self.tilt_allowance_sigmas * float(np.hypot(*(w @ T))) / dt_s
        S = self.S_ne_m + excess
        along, across = float(S @ u), float(S @ w)
        along = math.copysign(max(0.0, abs(along) - a_along * dt_s), along)
        across = math.copysign(max(0.0, abs(across) - a_across * dt_s), across)
        S = along * u + across * w
        self.S_ne_m = S
        self.n_steps += 1
        self.last_allowance_mps = steady_mps
        stat = float(np.hypot(*S))
        if stat <= 0.25 * self.threshold_m or self.quiet_since_ns is None:
            self.quiet_since_ns = t_ns
        return CusumStep(t_ns, stat, max(a_along, a_across), stat > self.threshold_m)

    def _fit_tilt(self, dt_s: float, excess_ne_m: np.ndarray, T_ne_m: np.ndarray,
                  u: np.ndarray, w: np.ndarray, heading_mps: float, scale_mps: float,
                  learn: bool) -> tuple[np.ndarray, np.ndarray]:
        """One step of the tilt fit: returns the excess less the fitted tilt's share (2,)
        and the tilt matrix (2, 2) scaled to what is left uncertain of it. The odometry errs
        by T e, so the GNSS-minus-odometry excess carries -T e."""
        phi = math.exp(-dt_s / self.tilt_tau_s)
        e = self.tilt_sigmas * phi
        P = self.tilt_cov * (phi * phi) + np.eye(2) * (1.0 - phi * phi)
        H = -T_ne_m
        y = excess_ne_m - H @ e
        try:
            L = np.linalg.cholesky(0.5 * (P + P.T) + np.eye(2) * 1e-12)
        except np.linalg.LinAlgError:
            L = np.eye(2)
        if learn:
            k = max(1.0, self.bias_correlation_s / dt_s)
            R = np.eye(2) * (self.tilt_fit_noise_m ** 2
                             + (self.allowance_floor_mps * dt_s) ** 2) \
                + k * dt_s * dt_s * (heading_mps ** 2 * np.outer(w, w)
                                     + scale_mps ** 2 * np.outer(u, u))
            S = H @ P @ H.T + R
            K = np.linalg.solve(S, H @ P).T
            e = e + K @ y
            P = (np.eye(2) - K @ H) @ P
            P = 0.5 * (P + P.T)
        self.tilt_sigmas, self.tilt_cov = e, P
        return y, T_ne_m @ L
