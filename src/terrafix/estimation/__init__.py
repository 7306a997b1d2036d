"""State estimation and navigation integrity (REQUIREMENTS N5–N10).

Two backends behind one Protocol (`backend.NavigationBackend`), chosen by
`EstimatorConfig.backend`: the error-state Kalman filter (`eskf.Eskf`, the baseline) and the
iSAM2 fixed-lag smoother (`isam2.Isam2Smoother`). The integrity layer (`integrity.IntegrityMonitor`)
sits on either and produces the `NavSolution` with its source label, anchor age, GNSS trust and
failsafe, plus typed events (`events.py`) for the recorder and the ground station.

How a replay loop or the onboard program drives it, in time order:

    frame = LocalFrame(lat0, lon0, alt0)                       # take-off point
    init = from_takeoff_origin(t0, first_attitude)              # or from_fc_state(...)
    nav = IntegrityMonitor(make_backend(cfg.estimator, frame, init), cfg.integrity)
    for each sample:  nav.feed(sample)     # ImuSample, AttitudeSample, BaroSample, GnssSample,
                                           # AbsoluteFix, OdometryDelta (or nav.on_* directly)
    camera frame captured at t:            nav.on_frame_captured(t)
    frame processed (after its odometry/fix were fed): nav.on_frame(t, blackout=...)
    operator RELOC hint:                   nav.on_hint(t, lat, lon, radius_m)
    output tick (5–10 Hz):                 sol = nav.solution(t); nav.watchdog(t)
    after each step:                       forward nav.drain_events() to recorder + GCS;
                                           nav.backend.drain_smoothed() to the recorder only
    registration search area:              nav.search_prior()
    companion restart in flight:           nav.restart(from_fc_state(...), "companion restart")
"""

from terrafix.estimation.backend import NavigationBackend, make_backend
from terrafix.estimation.config import (
    EstimationConfig,
    EstimatorConfig,
    GateConfig,
    ImuNoise,
    IntegrityConfig,
)
from terrafix.estimation.errors import EstimationError
from terrafix.estimation.events import (
    VISUAL_BLACKOUT_FAILSAFE,
    EstimateResumed,
    FailsafeCleared,
    FilterLost,
    FilterReset,
    GnssTrustChanged,
    HintApplied,
    HintRequested,
    LabelChanged,
    NavEvent,
    NoEstimate,
    SpoofRejected,
    VisualBlackoutFailsafe,
)
from terrafix.estimation.integrity import IntegrityMonitor, SearchPrior, radius95_m
from terrafix.estimation.outputs import (
    MeasurementKind,
    NavEstimate,
    SmoothedState,
    UpdateReport,
)
from terrafix.estimation.warm_start import InitialState, from_fc_state, from_takeoff_origin

__all__ = [
    "VISUAL_BLACKOUT_FAILSAFE",
    "EstimateResumed",
    "EstimationConfig",
    "EstimationError",
    "EstimatorConfig",
    "FailsafeCleared",
    "FilterLost",
    "FilterReset",
    "GateConfig",
    "GnssTrustChanged",
    "HintApplied",
    "HintRequested",
    "ImuNoise",
    "InitialState",
    "IntegrityConfig",
    "IntegrityMonitor",
    "LabelChanged",
    "MeasurementKind",
    "NavEstimate",
    "NavEvent",
    "NavigationBackend",
    "NoEstimate",
    "SearchPrior",
    "SmoothedState",
    "SpoofRejected",
    "UpdateReport",
    "VisualBlackoutFailsafe",
    "from_fc_state",
    "from_takeoff_origin",
    "make_backend",
    "radius95_m",
]
