"""GNSS receiver model with jamming and spoofing attacks.

Nominal receiver: a u-blox NEO-M8N class module (the usual ArduPilot GPS), datasheet
UBX-15031086: horizontal accuracy 2.5 m CEP, velocity 0.05 m/s, navigation rate up to 10 Hz.
Its position error is mostly slowly varying (atmosphere, multipath, satellite geometry), so it is
a Gauss-Markov process (1.8 m per horizontal axis, 3.5 m vertical, 100 s) plus 0.3 m white noise;
velocity has 0.05 m/s white noise. The receiver reports h_acc/v_acc and a satellite count.

Attacks (ground truth label in `GnssStream.attack`):
- jamming: the receiver first degrades (fewer satellites, 2D/3D fix with inflated errors and
  accuracies) for `ramp_s`, then loses the fix (mode "denied"), or stays degraded throughout
  (mode "degraded"). No fix is written as NaN position/velocity/accuracy with fix_type 1.
- jump: the reported position is offset by a constant vector; the spoofer reports a healthy
  fix (nominal accuracies, many satellites).
- pulloff: the offset grows at `rate_mps` along `bearing_deg` from the attack start, and the
  reported velocity includes that drift so position and velocity stay self-consistent (a careful
  spoofer).
- meaconing: the receiver reports the true state of `delay_s` ago (a delayed replay). With
  `delay_ramp_s` > 0 the replay delay grows from 0 to `delay_s` over that time (a meaconer
  that first captures the receiver on the live signal, then lags it); the reported velocity
  is the replayed one, v(t - delay) (a delay common to all satellites goes into the receiver's
  clock, not its position or velocity).
Whether the receiver notices is a setting per attack: `flag` raises the receiver's jamming flag
(jamming) or spoofing flag (the others) `flag_delay_s` after the attack starts. When an attack
ends the genuine signal is tracked again immediately.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from terrafix.geo.frames import LocalFrame
from terrafix.sim.errors import SimError
from terrafix.sim.noise import gauss_markov
from terrafix.sim.streams import GnssStream, TruthStream

FIX_NONE = 1
FIX_2D = 2
FIX_3D = 3


@dataclass(frozen=True, slots=True)
class GnssParams:
    """Nominal receiver errors (metres, m/s, seconds)."""

    reference_part: str = "u-blox NEO-M8N (UBX-15031086)"
    rate_hz: float = 5.0
    horiz_sigma_m: float = 1.8
    vert_sigma_m: float = 3.5
    error_tau_s: float = 100.0
    white_sigma_m: float = 0.3
    vel_sigma_mps: float = 0.05
    nominal_h_acc_m: float = 2.2
    nominal_v_acc_m: float = 3.8
    nominal_sats: int = 15

    def __post_init__(self) -> None:
        if not (1.0 <= self.rate_hz <= 20.0):
            raise SimError(f"GNSS rate must be 1..20 Hz, got {self.rate_hz}")

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GnssAttack:
    """One attack interval [start_s, end_s) and its parameters.

    kind: "jamming" | "jump" | "pulloff" | "meaconing".
    jamming: mode "denied" | "degraded", ramp_s degraded time before denial, degraded_sigma_m.
    jump: offset_ned_m (3,). pulloff: rate_mps, bearing_deg (direction the fake position moves).
    meaconing: delay_s, delay_ramp_s (0: the full delay at once).
    flag / flag_delay_s: whether and when the receiver raises its flag.
    """

    kind: Literal["jamming", "jump", "pulloff", "meaconing"]
    start_s: float
    end_s: float
    flag: bool = True
    flag_delay_s: float = 0.0
    mode: Literal["denied", "degraded"] = "denied"
    ramp_s: float = 5.0
    degraded_sigma_m: float = 12.0
    offset_ned_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rate_mps: float = 1.0
    bearing_deg: float = 90.0
    delay_s: float = 5.0
    delay_ramp_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("jamming", "jump", "pulloff", "meaconing"):
            raise SimError(f"attack kind must be jamming/jump/pulloff/meaconing, "
                           f"got {self.kind!r}")
        if not (0.0 <= self.start_s < self.end_s):
            raise SimError(f"attack needs 0 <= start_s < end_s, got {self.start_s}, "
                           f"{self.end_s}")
        if self.kind == "pulloff" and not (0.5 <= self.rate_mps <= 2.0):
            raise SimError(f"pull-off rate must be 0.5..2 m/s, got {self.rate_mps}")
        if self.kind == "meaconing" and self.delay_s <= 0:
            raise SimError(f"meaconing delay must be > 0 s, got {self.delay_s}")
        if not (self.delay_ramp_s >= 0 and math.isfinite(self.delay_ramp_s)):
            raise SimError(f"meaconing delay ramp must be a finite number of seconds >= 0, "
                           f"got {self.delay_ramp_s}")

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["offset_ned_m"] = list(self.offset_ned_m)
        return d


def _interp_rows(t_query: np.ndarray, t: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Linear interpolation of (N, k) rows at t_query (clamped at the ends)."""
    tq = t_query.astype(np.float64)
    tt = t.astype(np.float64)
    return np.column_stack([np.interp(tq, tt, values[:, j]) for j in range(values.shape[1])])


def simulate_gnss(truth: TruthStream, frame: LocalFrame, params: GnssParams,
                  attacks: list[GnssAttack], rng: np.random.Generator) -> GnssStream:
    """Receiver solutions at params.rate_hz over the truth's time span, attacks applied."""
    period_ns = round(1e9 / params.rate_hz)
    t = np.arange(int(truth.t_ns[0]), int(truth.t_ns[-1]) + 1, period_ns, dtype=np.int64)
    n = len(t)
    dt = period_ns * 1e-9
    t_s = t * 1e-9
    p_true = _interp_rows(t, truth.t_ns, truth.p_ned_m)
    v_true = _interp_rows(t, truth.t_ns, truth.v_ned_mps)

    err = np.empty((n, 3))
    err[:, :2] = gauss_markov(rng, n, dt, params.horiz_sigma_m, params.error_tau_s, 2)
    err[:, 2] = gauss_markov(rng, n, dt, params.vert_sigma_m, params.error_tau_s, 1)[:, 0]
    err += rng.standard_normal((n, 3)) * params.white_sigma_m
    v_err = rng.standard_normal((n, 3)) * params.vel_sigma_mps
    # Accuracy reports wander a little around the nominal values, satellites come and go.
    acc_jitter = 1.0 + 0.1 * gauss_markov(rng, n, dt, 1.0, 30.0, 1)[:, 0]
    sats = np.clip(np.round(params.nominal_sats
                            + 2.0 * gauss_markov(rng, n, dt, 1.0, 120.0, 1)[:, 0]), 6, 24)
    degraded_err = gauss_markov(rng, n, dt, 1.0, 20.0, 3)

    p = p_true + err
    v = v_true + v_err
    h_acc = params.nominal_h_acc_m * acc_jitter
    v_acc = params.nominal_v_acc_m * acc_jitter
    fix = np.full(n, FIX_3D, dtype=np.int64)
    num_sats = sats.astype(np.int64)
    jamming = np.zeros(n, dtype=bool)
    spoofing = np.zeros(n, dtype=bool)
    attack = np.full(n, "none", dtype=object)

    for atk in sorted(attacks, key=lambda a: a.start_s):
        on = (t_s >= atk.start_s) & (t_s < atk.end_s)
        if not np.any(on):
            continue
        since = t_s - atk.start_s
        attack[on] = atk.kind
        flagged = on & (since >= atk.flag_delay_s) & atk.flag
        if atk.kind == "jamming":
            jamming |= flagged
            degr = on if atk.mode == "degraded" else on & (since < atk.ramp_s)
            denied = on & ~degr
            p[degr] = p_true[degr] + degraded_err[degr] * atk.degraded_sigma_m
            v[degr] = v_true[degr] + rng.standard_normal((int(degr.sum()), 3)) * 0.5
            h_acc[degr] = atk.degraded_sigma_m * 1.5 * acc_jitter[degr]
            v_acc[degr] = atk.degraded_sigma_m * 2.5 * acc_jitter[degr]
            num_sats[degr] = np.minimum(num_sats[degr], 5)
            fix[degr] = np.where(rng.random(int(degr.sum())) < 0.3, FIX_2D, FIX_3D)
            p[denied] = np.nan
            v[denied] = np.nan
            h_acc[denied] = np.nan
            v_acc[denied] = np.nan
            fix[denied] = FIX_NONE
            num_sats[denied] = rng.integers(0, 4, int(denied.sum()))
            continue
        spoofing |= flagged
        if atk.kind == "jump":
            p[on] += np.asarray(atk.offset_ned_m, dtype=np.float64)
        elif atk.kind == "pulloff":
            b = math.radians(atk.bearing_deg)
            drift_v = atk.rate_mps * np.array([math.cos(b), math.sin(b), 0.0])
            p[on] += since[on, None] * drift_v
            v[on] += drift_v
        else:  # meaconing: replay of the genuine signal delay_s ago
            ramp = (np.clip(since[on] / atk.delay_ramp_s, 0.0, 1.0) if atk.delay_ramp_s > 0
                    else 1.0)
            t_delayed = t[on] - np.round(atk.delay_s * ramp * 1e9).astype(np.int64)
            p[on] = _interp_rows(t_delayed, truth.t_ns, truth.p_ned_m) + err[on]
            v[on] = _interp_rows(t_delayed, truth.t_ns, truth.v_ned_mps) + v_err[on]
        # A spoofer presents a strong, clean signal: many satellites, nominal accuracy.
        num_sats[on] = np.maximum(num_sats[on], params.nominal_sats)
        fix[on] = FIX_3D

    lat, lon, alt = frame.ned_to_lla(np.nan_to_num(p))
    nofix = ~np.isfinite(p[:, 0])
    lat, lon, alt = (np.where(nofix, np.nan, np.asarray(x)) for x in (lat, lon, alt))
    return GnssStream(t_ns=t, lat_deg=lat, lon_deg=lon, alt_m=alt, v_ned_mps=v,
                      h_acc_m=h_acc, v_acc_m=v_acc, fix_type=fix, num_sats=num_sats,
                      jamming=jamming, spoofing=spoofing, attack=attack.astype(str))
