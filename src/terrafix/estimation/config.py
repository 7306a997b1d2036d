"""Estimator configuration: sensor noise, gates and the backend choice (REQUIREMENTS N5).

These are pydantic models so that the application's TOML config can embed them unchanged
(`[estimation]` table -> `EstimationConfig`) and every value in force can be logged at
start-up. Defaults describe an ICM-42688-P class IMU on a small fixed-wing airframe; the
datasheet densities are raised by a vibration margin because a filter tuned to the bare
datasheet figure is over-confident in flight.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from terrafix.estimation.gnss_reference import GnssReferenceConfig

GRAVITY_MPS2 = 9.80665
"""Standard gravity, m/s². The navigation frame is a local tangent plane over a few tens of
kilometres, so a constant gravity vector [0, 0, g] in NED is used (no Earth rate, no
Coriolis: both are below the gyro noise of a MEMS IMU over the time between anchors)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImuNoise(_Frozen):
    """Continuous-time IMU noise model (white noise densities and bias random walks).

    Units: gyro noise rad/s/√Hz, accel noise m/s²/√Hz, bias random walks per √s.
    ICM-42688-P datasheet: gyro 2.8 mdps/√Hz (4.9e-5 rad/s/√Hz), accel 70 µg/√Hz
    (6.9e-4 m/s²/√Hz). Defaults are ~2x those for vibration and temperature.
    """

    gyro_noise_radps_rthz: float = Field(1.0e-4, gt=0)
    accel_noise_mps2_rthz: float = Field(1.5e-3, gt=0)
    gyro_bias_rw_radps_rts: float = Field(2.0e-5, gt=0)
    accel_bias_rw_mps2_rts: float = Field(3.0e-4, gt=0)
    gyro_bias_sigma0_radps: float = Field(math.radians(0.5), gt=0)
    accel_bias_sigma0_mps2: float = Field(0.1, gt=0)
    gyro_scale_sigma: float = Field(0.005, ge=0)
    """Gyro scale-factor uncertainty (datasheet tolerance ±0.5%). Not a state: it enters the
    attitude process noise as rate-proportional white noise, (σ_s·ω)²·τ per axis, so that a
    roll-in at 30°/s is not trusted to the gyro's noise floor (without it the horizontal NEES
    on simulated flights was 2.25 instead of 2)."""
    gyro_scale_correlation_s: float = Field(2.0, gt=0)
    """τ above: the length of a manoeuvre over which the scale error acts coherently."""


class GateConfig(_Frozen):
    """Mahalanobis gate probabilities (chi-square quantile of the innovation NIS)."""

    fix: float = Field(0.9995, gt=0.5, lt=1.0)
    odometry: float = Field(0.9995, gt=0.5, lt=1.0)
    baro: float = Field(0.9995, gt=0.5, lt=1.0)
    gnss: float = Field(0.9995, gt=0.5, lt=1.0)
    heading: float = Field(0.9995, gt=0.5, lt=1.0)
    hint: float = Field(0.9999, gt=0.5, lt=1.0)


class EstimatorConfig(_Frozen):
    """What both backends share: noise models, gates and time-alignment limits."""

    backend: Literal["eskf", "isam2"] = "eskf"
    imu: ImuNoise = ImuNoise()
    gates: GateConfig = GateConfig()
    gravity_mps2: float = Field(GRAVITY_MPS2, gt=9.7, lt=9.9)
    baro_sigma_m: float = Field(1.0, gt=0)
    """White noise of one barometer sample."""
    baro_bias_rw_m_rts: float = Field(0.05, ge=0)
    """Random walk of the barometer offset (weather, temperature): 0.05 m/√s ≈ 3 m per hour."""
    baro_bias_sigma0_m: float = Field(5.0, gt=0)
    gnss_velocity_sigma_mps: float = Field(0.3, gt=0)
    gnss_min_sigma_m: float = Field(1.5, gt=0)
    """Lower bound on the GNSS position sigma taken from h_acc/v_acc: receivers under-report
    their accuracy, and this is a measurement-noise model, not the estimate's covariance."""
    gnss_error_correlation_s: float = Field(60.0, ge=0)
    """Correlation time of the receiver's position error (single-frequency receivers wander
    over a minute or more): GNSS positions are fused with the white-noise equivalent of such
    an error (see correlated_errors.py); trust tests keep the nominal sigma. 0: white."""
    heading_sigma_deg: float | None = Field(None, gt=0)
    """Sigma of the FC's yaw when used as aiding; None (default): never fuse it. The FC's
    yaw error is slow (compass/course dependent, minutes of correlation): fused as white
    noise it made the filter over-confident (horizontal NEES 2.5 instead of 2 on simulated
    flights), while the fixes make yaw observable in every turn anyway. Set it for a yaw
    source with white errors (e.g. a dual-antenna GNSS heading)."""
    heading_min_interval_s: float = Field(1.0, ge=0)
    """Yaw aiding at most this often: the FC's yaw errors are slow, fusing them at 50 Hz
    would count one error many times."""
    covariance_every_n_imu: int = Field(4, ge=1, le=20)
    """The ESKF integrates the nominal state at IMU rate and the covariance over this many
    IMU samples at a time (it is only read at updates and outputs; see propagation.py):
    4 at 200 Hz is a 50 Hz covariance, within 0.1% of per-sample propagation, ~40% cheaper."""
    max_clones: int = Field(5, ge=2, le=20)
    """Positions cloned at frame capture times kept in the state (3 fps -> ~1.7 s), which
    bounds how late a fix or odometry delta may arrive and still be fused exactly."""
    max_extrapolation_s: float = Field(0.5, ge=0)
    """A measurement whose time matches no clone is moved to the state time with the
    velocity if it is at most this old; older ones are rejected as stale."""
    extrapolation_accel_sigma_mps2: float = Field(2.0, ge=0)
    """Unmodelled acceleration assumed when moving a measurement along the velocity."""
    gnss_velocity_shift_accel_sigma_mps2: float = Field(1.0, ge=0)
    """What the IMU's last acceleration misses when a late GNSS velocity is moved to the
    state time (the change of the acceleration over the 0.1-0.5 s shift: a bank rolled in at
    ~20 deg/s changes the turn's acceleration by ~3 m/s² per second)."""
    time_match_ns: int = Field(2_000_000, ge=0)
    """Two times closer than this are the same instant (a clone matches a frame time)."""
    isam2_window_keyframes: int = Field(15, ge=10, le=20)
    isam2_max_keyframe_interval_s: float = Field(0.5, gt=0)
    isam2_relinearize_threshold: float = Field(0.01, gt=0)


class IntegrityConfig(_Frozen):
    """Labels, failsafes, hint requests and the GNSS trust gate (REQUIREMENTS N6, N8–N10)."""

    anchored_max_age_s: float = Field(1.5, gt=0)
    """A fix at most this old is fresh (about four frames at 3 fps); odometry at most this
    old keeps a solution `visual_propagated`."""
    anchored_hold_s: float = Field(5.0, gt=0)
    """Once `satellite_anchored`, the label stays while the last accepted fix is at most this
    old. The registration policy asks for a fix every 1.5 s while the estimate is confident
    (retrying 0.6 s after a failure), so anchors come 1.5-2 s apart: holding the label only
    for `anchored_max_age_s` turned it to `visual_propagated` and back at every anchor (~180
    changes on the 150 s demo flight). 5 s covers a missed anchor and two retries; beyond it
    the anchors have stopped, which is a change the operator must see. The solution's
    anchor age always says how old the last fix is."""
    anchored_enter_fixes: int = Field(2, ge=1)
    """`satellite_anchored` is (re-)entered only on this many accepted fixes, each within
    `anchored_hold_s` of the previous and all after the label was last made worse: an anchor
    stream, not a lone fix between long gaps (which would turn the label back after
    `anchored_hold_s`)."""
    label_upgrade_after_s: float = Field(2.0, ge=0)
    """A better label is shown only once the reason for it has held this long; worse labels
    are shown at once (a blackout turns the label `dead_reckoned` with its first frame, N8).
    A single tracked frame between lost ones is not a recovery."""
    blackout_label_after_s: float = Field(0.4, gt=0)
    """No frame at all for this long counts as a visual blackout (N8: 400 ms)."""
    blackout_failsafe_s: float = Field(30.0, gt=0)
    failsafe_radius95_m: float = Field(500.0, gt=0)
    hint_after_frames: int = Field(3, ge=1)
    """A re-localisation hint is requested after this many frames whose registration was
    attempted and gave no accepted fix (or that showed no texture at all) since the last
    accepted fix, the first and the last of them at least `hint_after_s` apart (N8). Frames
    not registered because the estimate is confident do not count: they are no failure."""
    hint_after_s: float = Field(2.0, ge=0)
    hint_run_gap_s: float = Field(2.0, gt=0)
    """Failed frames further apart than this are not one run of failures: an isolated lost
    frame followed seconds later by the first frames of a cloud does not make the cloud a
    2 s old failure (registration retries come every 0.6 s while confident, every frame
    otherwise)."""
    hint_radius95_m: float = Field(100.0, gt=0)
    """... or when the 95% horizontal radius grows beyond this, whatever the registration
    does (e.g. flying on odometry alone where the map has no fix to give)."""
    hint_repeat_s: float = Field(30.0, gt=0)
    """While still without a fix, the hint request is repeated this often."""
    no_estimate_after_s: float = Field(3.0, gt=0)
    reacquire_after_rejected_fixes: int = Field(3, ge=2)
    """After this many consecutive gated fixes that agree with each other the filter, not the
    fixes, is wrong: the horizontal position is re-initialised on the fixes."""
    reacquire_agreement_m: float = Field(30.0, gt=0)
    gnss_close_gate_prob: float = Field(1.0 - 1e-6, gt=0.5, lt=1.0)
    """Single-sample innovation test: catches jumps within one GNSS sample."""
    gnss_window_samples: int = Field(10, ge=2)
    gnss_window_gate_prob: float = Field(1.0 - 1e-5, gt=0.5, lt=1.0)
    """Windowed test: the mean innovation of the last samples against chi²(2) (see
    gnss_gate.py for why not the sum of NIS): catches slow pull-offs."""
    gnss_reopen_stable_s: float = Field(10.0, ge=0)
    gnss_reopen_max_jump_m: float = Field(200.0, gt=0)
    gnss_anchor_agreement_prob: float = Field(0.999, gt=0.5, lt=1.0)
    gnss_stable_step_m: float = Field(30.0, gt=0)
    """Between two consecutive GNSS samples the GNSS displacement may differ from the
    estimate's displacement by at most this much for the signal to count as stable."""
    gnss_fuse_after_anchor_age_s: float = Field(2.0, ge=0)
    """Trusted GNSS is fused only when no satellite anchor is this recent: while anchors flow
    GNSS is only tested, so the trust test compares it with an estimate it did not shape."""
    gnss_trusted_at_start: bool = True


class EstimationConfig(_Frozen):
    """The `[estimation]` table: estimator backend + integrity layer."""

    estimator: EstimatorConfig = EstimatorConfig()
    integrity: IntegrityConfig = IntegrityConfig()
    gnss_reference: GnssReferenceConfig = GnssReferenceConfig()
    """The GNSS-free reference the trust gate also tests against (gnss_reference.py)."""
