"""A short history of navigation solutions and FC attitudes, so a request "at time t" uses the
pose at t, not the latest one.

Why a history: the AI camera's tracker reports a pixel some tens or hundreds of milliseconds
after the exposure, and at 20 m/s the aircraft has moved metres by then; the targeting software
knows the exposure time, so the pose must be looked up there. Both series are kept for
`keep_s` seconds (bounded deques, appended from the navigation and link threads, read from the
API threads; one lock).

Lookup rules:
- between two solutions: position interpolated linearly (in NED of the flight), covariance of
  the less certain neighbour (never the smaller one), failsafe if either neighbour is;
- after the latest solution by at most `max_extrapolation_s`: extrapolated with its velocity,
  the covariance grown as the GPS report grows it (sigma_v * age + a * age^2 / 2 per axis);
- otherwise (before the history, a gap, too far ahead): None, and the caller refuses.
Attitude (ZYX Euler from the FC's ATTITUDE) is interpolated on the shorter arc, nearest sample
within `max_attitude_gap_s`. The navigator's own heading and its variance
(NavSolution.heading_rad / heading_var_rad2) are interpolated like the position (shorter arc;
the larger variance of the two neighbours) and extrapolated by the FC yaw's change since the
solution, for the localiser's heading (locate.py).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from terrafix.autopilot import constants as C
from terrafix.geo import LocalFrame
from terrafix.measurements import AttitudeSample, NavSolution, SourceLabel


@dataclass(frozen=True, slots=True)
class PoseAt:
    """The navigation state at one instant: position (3,) NED m of the flight frame, its
    1-sigma covariance (3, 3) m², the label, whether it is the failsafe no-fix, the FC
    attitude (roll, pitch, yaw) rad (NaN when none is held), and the navigator's heading
    (rad) with its variance (rad²; NaN when the navigation gives none)."""

    t_ns: int
    p_ned_m: np.ndarray
    cov_p_ned_m2: np.ndarray
    label: str
    failsafe: bool
    euler_rad: np.ndarray
    nav_heading_rad: float = math.nan
    nav_heading_var_rad2: float = math.nan


def _usable(sol: NavSolution) -> bool:
    cov = np.asarray(sol.cov_p_ned_m2, dtype=np.float64)
    return (not sol.failsafe and sol.label != SourceLabel.NO_FIX
            and all(math.isfinite(v) for v in (sol.lat_deg, sol.lon_deg, sol.alt_m))
            and cov.shape == (3, 3) and bool(np.all(np.isfinite(cov))))


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def _larger(a: float, b: float) -> float:
    """The larger variance; NaN when either is unknown."""
    return a if a >= b else b if b >= a else math.nan


class PoseHistory:
    """Thread-safe history of NavSolutions and AttitudeSamples (see the module docstring)."""

    def __init__(self, frame: LocalFrame, *, keep_s: float = 30.0,
                 max_extrapolation_s: float = 0.5, max_gap_s: float = 1.0,
                 max_attitude_gap_s: float = 0.2, max_items: int = 20_000) -> None:
        self._frame = frame
        self._keep_ns = int(keep_s * 1e9)
        self._extra_ns = int(max_extrapolation_s * 1e9)
        self._gap_ns = int(max_gap_s * 1e9)
        self._att_gap_ns = int(max_attitude_gap_s * 1e9)
        self._lock = threading.Lock()
        self._sol_t: deque[int] = deque(maxlen=max_items)
        self._sol: deque[tuple[NavSolution, np.ndarray, bool]] = deque(maxlen=max_items)
        self._att_t: deque[int] = deque(maxlen=max_items)
        self._att: deque[np.ndarray] = deque(maxlen=max_items)

    @property
    def frame(self) -> LocalFrame:
        return self._frame

    def add_solution(self, sol: NavSolution) -> None:
        """Append a solution (out-of-order ones are dropped: the series must stay sorted)."""
        usable = _usable(sol)
        if usable:
            p = np.asarray(self._frame.lla_to_ned(sol.lat_deg, sol.lon_deg, sol.alt_m))
        else:
            p = np.full(3, np.nan)
        with self._lock:
            if self._sol_t and sol.t_ns <= self._sol_t[-1]:
                return
            self._sol_t.append(int(sol.t_ns))
            self._sol.append((sol, p, usable))
            while self._sol_t and self._sol_t[0] < sol.t_ns - self._keep_ns:
                self._sol_t.popleft()
                self._sol.popleft()

    def add_attitude(self, att: AttitudeSample) -> None:
        with self._lock:
            if self._att_t and att.t_ns <= self._att_t[-1]:
                return
            self._att_t.append(int(att.t_ns))
            self._att.append(np.array([att.roll_rad, att.pitch_rad, att.yaw_rad]))
            while self._att_t and self._att_t[0] < att.t_ns - self._keep_ns:
                self._att_t.popleft()
                self._att.popleft()

    def latest_t_ns(self) -> int | None:
        with self._lock:
            return self._sol_t[-1] if self._sol_t else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._sol_t)

    def _attitude_at(self, t_ns: int) -> np.ndarray:
        ts = self._att_t
        if not ts:
            return np.full(3, np.nan)
        i = bisect.bisect_right(ts, t_ns)
        if 0 < i < len(ts):
            t0, t1 = ts[i - 1], ts[i]
            if t1 - t0 <= 2 * self._att_gap_ns:
                a = (t_ns - t0) / (t1 - t0)
                e0, e1 = self._att[i - 1], self._att[i]
                d = np.array([_wrap(float(v)) for v in (e1 - e0)])
                e = e0 + a * d
                return np.array([e[0], e[1], _wrap(float(e[2]))])
        j = min(range(max(0, i - 1), min(len(ts), i + 1)), key=lambda k: abs(ts[k] - t_ns))
        if abs(ts[j] - t_ns) <= self._att_gap_ns:
            return self._att[j].copy()
        return np.full(3, np.nan)

    def at(self, t_ns: int) -> PoseAt | None:
        """The pose at t_ns, or None when the history cannot say (see the module docstring)."""
        with self._lock:
            ts = self._sol_t
            if not ts or t_ns < ts[0]:
                return None
            i = bisect.bisect_right(ts, t_ns)
            euler = self._attitude_at(t_ns)
            if i == len(ts):  # at or after the latest
                sol, p, ok = self._sol[-1]
                age_ns = t_ns - ts[-1]
                if age_ns > self._extra_ns:
                    return None
                # the navigator's yaw moved along by the FC's yaw change since the solution
                turned = _wrap(float(euler[2] - self._attitude_at(ts[-1])[2]))
                return self._extrapolated(sol, p, ok, age_ns / 1e9, t_ns, euler,
                                          turned if math.isfinite(turned) else math.nan)
            (s0, p0, ok0), (s1, p1, ok1) = self._sol[i - 1], self._sol[i]
            t0, t1 = ts[i - 1], ts[i]
        if t1 - t0 > self._gap_ns:
            return None
        a = (t_ns - t0) / (t1 - t0)
        if not (ok0 and ok1):
            return PoseAt(t_ns, np.full(3, np.nan), np.full((3, 3), np.nan),
                          s1.label if ok0 else s0.label, True, euler)
        c0 = np.asarray(s0.cov_p_ned_m2, dtype=np.float64)
        c1 = np.asarray(s1.cov_p_ned_m2, dtype=np.float64)
        cov = c0 if np.trace(c0) >= np.trace(c1) else c1
        label = s0.label if a < 0.5 else s1.label
        nav_yaw = _wrap(s0.heading_rad + a * _wrap(s1.heading_rad - s0.heading_rad))
        return PoseAt(t_ns, (1.0 - a) * p0 + a * p1, cov.copy(), label, False, euler,
                      nav_yaw, _larger(s0.heading_var_rad2, s1.heading_var_rad2))

    @staticmethod
    def _extrapolated(sol: NavSolution, p: np.ndarray, usable: bool, age_s: float, t_ns: int,
                      euler: np.ndarray, fc_turned_rad: float) -> PoseAt:
        if not usable:
            return PoseAt(t_ns, np.full(3, np.nan), np.full((3, 3), np.nan), sol.label, True,
                          euler)
        v = np.asarray(sol.v_ned_mps, dtype=np.float64).reshape(-1)
        cov = np.asarray(sol.cov_p_ned_m2, dtype=np.float64).copy()
        if age_s > 0.0:
            if v.shape != (3,) or not np.all(np.isfinite(v)):
                return PoseAt(t_ns, np.full(3, np.nan), np.full((3, 3), np.nan), sol.label,
                              True, euler)
            cov_v = np.asarray(sol.cov_v_ned_m2s2, dtype=np.float64)
            sv = np.sqrt(np.clip(np.diag(cov_v), 0.0, None)) if np.all(np.isfinite(cov_v)) \
                else np.zeros(3)
            grow = sv * age_s + 0.5 * C.UNKNOWN_ACCEL_BOUND_MPS2 * age_s**2
            sig = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            cov += np.diag((sig + grow) ** 2 - sig**2)
            p = p + v * age_s
        if age_s > 0.0 and not math.isfinite(fc_turned_rad):
            return PoseAt(t_ns, p, cov, sol.label, False, euler)  # no heading to move it by
        return PoseAt(t_ns, p, cov, sol.label, False, euler,
                      _wrap(sol.heading_rad + (fc_turned_rad if age_s > 0.0 else 0.0)),
                      sol.heading_var_rad2)
