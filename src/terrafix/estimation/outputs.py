"""What a backend hands back: one report per update, and its current estimate.

Both backends (ESKF, iSAM2) return these, so the integrity layer and the recorder never see
which one is running. Every update produces an `UpdateReport`, accepted or not: the NIS is
recorded for consistency analysis (a consistent filter's NIS follows chi-square(dof)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class MeasurementKind:
    """Names of the measurement types (the `kind` of an UpdateReport)."""

    FIX = "fix"
    ODOMETRY = "odometry"
    BARO = "baro"
    GNSS = "gnss"
    HEADING = "heading"
    POSITION_PRIOR = "position_prior"


@dataclass(frozen=True, slots=True)
class UpdateReport:
    """Outcome of one measurement update.

    innovation: (m,) measurement minus prediction, SI units of the measurement;
    innovation_cov: (m, m) its covariance S (NaN when never computed).
    nis: yᵀ S⁻¹ y (NaN when the measurement never reached the gate, e.g. stale).
    gate: the chi-square threshold nis was compared with (dof = len(innovation)).
    accepted: True when the measurement was fused (or, for a test-only call, would have
    passed the gate). reason: empty when accepted; otherwise why not ("gated: NIS 412.0 >
    13.8", "stale: 0.9 s old", "lost", "tracking lost: blur").
    """

    t_ns: int
    kind: str
    accepted: bool
    nis: float
    gate: float
    innovation: np.ndarray
    innovation_cov: np.ndarray
    reason: str = ""

    @property
    def dof(self) -> int:
        return int(self.innovation.shape[0])


@dataclass(frozen=True, slots=True)
class NavEstimate:
    """A backend's real-time estimate at its current time (filtered, never smoothed).

    p_ned_m: (3,); v_ned_mps: (3,); q_body_to_ned: (4,) Hamilton [w, x, y, z];
    cov_p_ned_m2 / cov_v_ned_m2s2: (3, 3) 1-sigma² covariances; cov_pv_ned: (3, 3)
    position-velocity cross-covariance (m²/s), to move the estimate along in time honestly;
    lost: the covariance stopped
    being positive definite (or the smoother failed) and the numbers must not be used.
    """

    t_ns: int
    p_ned_m: np.ndarray
    v_ned_mps: np.ndarray
    q_body_to_ned: np.ndarray
    cov_p_ned_m2: np.ndarray
    cov_v_ned_m2s2: np.ndarray
    cov_pv_ned: np.ndarray
    lost: bool
    lost_reason: str = ""


@dataclass(frozen=True, slots=True)
class SmoothedState:
    """A retroactively corrected keyframe (iSAM2 backend): for the recorder only, never sent
    to the autopilot (REQUIREMENTS N6).

    p_ned_m: (3,); v_ned_mps: (3,); q_body_to_ned: (4,); cov_p_ned_m2: (3, 3).
    final: True when the keyframe left the smoothing window (its last correction).
    """

    t_ns: int
    p_ned_m: np.ndarray
    v_ned_mps: np.ndarray
    q_body_to_ned: np.ndarray
    cov_p_ned_m2: np.ndarray
    final: bool
