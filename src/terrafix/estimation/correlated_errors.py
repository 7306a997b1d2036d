"""Honest white-noise models for measurement errors that are correlated in time.

Why: a GNSS receiver's position error is not white. Satellite geometry, ionosphere and
multipath give it a slowly wandering part of about its reported accuracy, correlated over a
minute or more, with only a few decimetres of sample-to-sample noise on top. Fused at 5-10 Hz
as if every sample's error were independent, a few seconds of GNSS convince a filter that it
knows its position to a few decimetres while the true error is still metres: the covariance
then lies exactly where the operator relies on it (spoof tests, the hand-over to vision).

The white-noise equivalent of a first-order Gauss-Markov error (variance sigma^2,
correlation time tau) sampled every dt has the same low-frequency power: R = sigma^2 * 2 tau /
dt (power spectral density 2 sigma^2 tau at frequencies below 1/tau). With it, the information
a filter collects from one correlation time of samples is about one sample's worth, so its
covariance cannot fall below the wandering error it cannot observe. The innovation tests of
the trust gate keep the nominal sigma: they ask whether a sample is plausible, not how much it
is worth.
"""

from __future__ import annotations

import math


class CorrelatedErrorScale:
    """Variance multiplier for one stream of measurements with a correlated error.

    correlation_s: the error's correlation time (0 disables the scaling: factor 1).
    nominal_interval_s: the sample interval assumed until two samples have been seen.
    Call `factor(t_ns)` once per sample that is fused, in time order.
    """

    def __init__(self, correlation_s: float, nominal_interval_s: float = 0.2,
                 smoothing: float = 0.2) -> None:
        if correlation_s < 0 or not math.isfinite(correlation_s):
            raise ValueError(f"correlation_s must be a finite number >= 0, got {correlation_s}")
        if nominal_interval_s <= 0:
            raise ValueError(f"nominal_interval_s must be > 0, got {nominal_interval_s}")
        self.correlation_s = correlation_s
        self._interval_s = nominal_interval_s
        self._smoothing = smoothing
        self._t_last_ns: int | None = None

    def factor(self, t_ns: int) -> float:
        """The variance multiplier for a sample at t_ns: max(1, 2 tau / interval), with the
        interval between fused samples smoothed (a gap longer than tau counts as tau, so the
        first sample after an outage is not trusted as if the error had decorrelated more)."""
        tau = self.correlation_s
        if tau == 0.0:
            return 1.0
        if self._t_last_ns is not None and t_ns > self._t_last_ns:
            dt = min((t_ns - self._t_last_ns) * 1e-9, tau)
            self._interval_s += self._smoothing * (dt - self._interval_s)
        self._t_last_ns = t_ns
        return max(1.0, 2.0 * tau / self._interval_s)
