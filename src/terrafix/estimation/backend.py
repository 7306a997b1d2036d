"""The one interface both estimator backends (ESKF, iSAM2 fixed-lag smoother) implement,
and the factory that picks one from the config (REQUIREMENTS N5).

Call order a backend expects (time order, as the replay loop and the onboard program feed it):
`propagate` every IMU sample; `mark_frame(t)` when a camera frame is captured; `update_*` as
measurements arrive (fixes and odometry may come up to a few frames late and are applied at
their frame's time); `estimate()` whenever an output is due. Every update returns an
`UpdateReport` (accepted or gated, NIS, reason).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from terrafix.estimation.config import EstimatorConfig
from terrafix.estimation.errors import EstimationError
from terrafix.estimation.outputs import NavEstimate, SmoothedState, UpdateReport
from terrafix.estimation.warm_start import InitialState
from terrafix.geo.frames import LocalFrame
from terrafix.measurements import (
    AbsoluteFix,
    AttitudeSample,
    BaroSample,
    GnssSample,
    ImuSample,
    OdometryDelta,
)


class NavigationBackend(Protocol):
    """What the integrity layer needs from an estimator."""

    config: EstimatorConfig
    frame: LocalFrame

    @property
    def t_ns(self) -> int:
        """Time of the current (IMU-propagated) state."""
        ...

    def propagate(self, imu: ImuSample) -> None: ...

    def mark_frame(self, t_ns: int) -> None:
        """A frame was captured at t_ns: keep the state at that time for its measurements."""
        ...

    def update_fix(self, fix: AbsoluteFix) -> UpdateReport: ...

    def update_odometry(self, delta: OdometryDelta) -> UpdateReport: ...

    def update_baro(self, baro: BaroSample) -> UpdateReport: ...

    def update_gnss(self, gnss: GnssSample, fuse: bool) -> UpdateReport:
        """fuse=False: only test (the report's NIS is the horizontal-position NIS)."""
        ...

    def update_heading(self, attitude: AttitudeSample) -> UpdateReport: ...

    def apply_position_prior(self, t_ns: int, p_ne_m: np.ndarray,
                             cov_ne_m2: np.ndarray) -> UpdateReport: ...

    def reset_horizontal_position(self, p_ne_m: np.ndarray, cov_ne_m2: np.ndarray,
                                  v_ne_mps: np.ndarray | None = None,
                                  cov_v_ne_m2s2: np.ndarray | None = None) -> None:
        """Replace the horizontal position (and, if given, velocity) with its covariance,
        decorrelated from the rest."""

    def reinitialise(self, init: InitialState) -> None: ...

    def estimate(self) -> NavEstimate: ...

    def drain_smoothed(self) -> list[SmoothedState]:
        """Retroactively corrected states for the recorder (empty for a filter)."""
        ...


HEADING_MAX_PITCH_RAD = math.radians(70.0)
"""Beyond this pitch the yaw of a Euler triple is ill-defined (gimbal lock): not used."""


def heading_aiding(config: EstimatorConfig, attitude: AttitudeSample,
                   last_heading_t_ns: int | None, lost: bool) -> tuple[float, str]:
    """(variance rad², refusal) of the FC's yaw in `attitude` as aiding: refusal says why it
    must not be fused now ("" when it may be). The checks both backends make before their
    own time lookup (see EstimatorConfig.heading_sigma_deg and heading_min_interval_s)."""
    if config.heading_sigma_deg is None:
        return math.nan, "heading aiding disabled"
    if last_heading_t_ns is not None and \
            (attitude.t_ns - last_heading_t_ns) * 1e-9 < config.heading_min_interval_s:
        return math.nan, "rate limited"
    if lost:
        return math.nan, "lost"
    if abs(attitude.pitch_rad) > HEADING_MAX_PITCH_RAD:
        return math.nan, "pitch beyond 70°: yaw ill-defined"
    return math.radians(config.heading_sigma_deg) ** 2, ""


def make_backend(config: EstimatorConfig, frame: LocalFrame,
                 init: InitialState) -> NavigationBackend:
    """The backend named by `config.backend` ("eskf" or "isam2")."""
    if config.backend == "eskf":
        from terrafix.estimation.eskf import Eskf

        return Eskf(config, frame, init)
    if config.backend == "isam2":
        from terrafix.estimation.isam2 import Isam2Smoother

        return Isam2Smoother(config, frame, init)
    raise EstimationError(f"unknown estimator backend {config.backend!r}; "
                          f"expected 'eskf' or 'isam2'")
