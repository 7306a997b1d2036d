"""The anti-poisoning gate of in-flight tiles (REQUIREMENTS U1).

A tile written from a wrong pose would poison the map of every later flight, so only poses
that are known good may write: horizontal 1-sigma <= 3 m writes a PENDING tile, 3-5 m a
LOW_TRUST one, above 5 m nothing. Nothing at all from a `dead_reckoned` (or no-fix/failsafe)
estimate, whose sigma is a model's guess rather than a measured bound, and nothing while the
GNSS gate is rejecting a spoof (`spoof_hold_s` after each rejection): a spoofer that had
dragged the estimate must not also write the map.

The sigma judged is the pose's on the ground, not only the position's: a heading error turns
the whole footprint about the camera, by (distance from the nadir) x (heading error), so the
caller adds the heading's 1-sigma at the footprint's far corner (`heading_sigma_m`) in
quadrature. Before the navigator's heading is calibrated (a few degrees: metres at the edge of
a frame from 200 m) that is what keeps the early frames out. Roll and pitch are not added: a
satellite fix places the camera where the image, projected through the same FC attitude, lies
on the map, so a tilt error is already inside the position (and its sigma); a rotation about
the vertical is not (the fix is a position).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from terrafix.measurements import NavSolution, SourceLabel


class EligibilityConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    normal_sigma_m: float = Field(3.0, gt=0)
    """At or below: PENDING (normal trust)."""
    max_sigma_m: float = Field(5.0, gt=0)
    """At or below (and above normal_sigma_m): LOW_TRUST; above: not eligible."""
    spoof_hold_s: float = Field(5.0, ge=0)
    """No tiles from frames captured within this long after a spoof rejection."""
    unknown_heading_sigma_deg: float = Field(2.5, gt=0)
    """Heading 1-sigma taken when a solution carries no navigator heading variance (the
    estimator's yaw alone: an FC-class compass heading)."""


def horizontal_sigma_m(solution: NavSolution) -> float:
    """The largest horizontal 1-sigma (m): sqrt of the top eigenvalue of the N/E covariance."""
    cov = np.asarray(solution.cov_p_ned_m2, np.float64)[:2, :2]
    return float(math.sqrt(max(float(np.linalg.eigvalsh(cov)[-1]), 0.0)))


def judge(solution: NavSolution, t_last_spoof_ns: int | None,
          cfg: EligibilityConfig, heading_sigma_m: float = 0.0) -> tuple[str | None, str]:
    """(trust "normal" / "low", "") for an eligible pose, else (None, the reason).
    heading_sigma_m: the heading's horizontal 1-sigma at the footprint's far corner (m), added
    in quadrature to the position's (module docstring)."""
    if solution.failsafe or solution.label in (SourceLabel.DEAD_RECKONED, SourceLabel.NO_FIX):
        return None, "dead_reckoned" if solution.label == SourceLabel.DEAD_RECKONED \
            else "no_fix"
    if t_last_spoof_ns is not None and \
            0 <= solution.t_ns - t_last_spoof_ns <= cfg.spoof_hold_s * 1e9:
        return None, "spoof_rejected"
    sigma = math.hypot(horizontal_sigma_m(solution), heading_sigma_m)
    if not math.isfinite(sigma) or sigma > cfg.max_sigma_m:
        return None, "sigma_above_max"
    return ("normal" if sigma <= cfg.normal_sigma_m else "low"), ""
