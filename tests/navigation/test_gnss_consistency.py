"""The covariance tells the truth while the GNSS is trusted and fused.

The simulated receiver's error wanders (Gauss-Markov, metres, correlated over minutes) like a
real one's; fused as white noise at 5 Hz it made the filter claim decimetres after a few
seconds (under 10% of errors inside the 95% ellipse on a dev flight). The white-noise
equivalent of a correlated error (estimation/correlated_errors.py) keeps it honest.
"""

from __future__ import annotations

import numpy as np
import pytest

from terrafix.app.replay import flight_context
from terrafix.estimation.correlated_errors import CorrelatedErrorScale
from terrafix.eval.metrics import CHI2_95_2DOF, mahalanobis_sq
from terrafix.navigation.navigator import Navigator, NavigatorConfig
from terrafix.sim.dataset import load_dataset
from terrafix.sim.flight import simulate_flight
from terrafix.sim.scenario import parse_scenario
from tests.navigation.navdata import synthetic_scenario

S = 1_000_000_000


def test_scale_is_the_white_noise_equivalent_of_the_correlation():
    sc = CorrelatedErrorScale(60.0, nominal_interval_s=0.2)
    assert sc.factor(0) == pytest.approx(600.0)  # 2 * 60 s / 0.2 s
    for k in range(1, 200):
        f = sc.factor(k * 100_000_000)  # the receiver runs at 10 Hz
    assert f == pytest.approx(1200.0, rel=1e-3)
    after_gap = CorrelatedErrorScale(60.0)
    after_gap.factor(0)
    assert after_gap.factor(3600 * S) >= 1.0
    assert CorrelatedErrorScale(0.0).factor(5) == 1.0
    with pytest.raises(ValueError, match="correlation_s"):
        CorrelatedErrorScale(-1.0)


def _inside95(ds, correlation_s: float) -> float:
    cfg = NavigatorConfig()
    cfg = cfg.model_copy(update={
        "registration": cfg.registration.model_copy(update={"enabled": False}),
        "odometry_enabled": False,
        "estimation": cfg.estimation.model_copy(update={
            "estimator": cfg.estimation.estimator.model_copy(
                update={"gnss_error_correlation_s": correlation_s})})})
    nav = Navigator(cfg, flight_context(ds), None)
    for s in ds.iter_all():
        nav.feed(s)
    nav.flush()
    sols = nav.drain_solutions()
    t = np.array([s.t_ns for s in sols])
    est = ds.local_frame.lla_to_ned(np.array([s.lat_deg for s in sols]),
                                    np.array([s.lon_deg for s in sols]),
                                    np.array([s.alt_m for s in sols]))
    err = est[:, :2] - ds.truth_p_ned_at(t)[:, :2]
    cov = np.array([s.cov_p_ned_m2[:2, :2] for s in sols])
    d2 = mahalanobis_sq(err, cov)
    return float(np.mean(d2[np.isfinite(d2)] <= CHI2_95_2DOF))


@pytest.fixture(scope="module", params=[3, 8])
def gnss_flight(request, tmp_path_factory):
    """60 s with trusted GNSS throughout, no frames."""
    root = tmp_path_factory.mktemp(f"gnss-{request.param}")
    sc = synthetic_scenario(duration_s=60.0, blackout=None, render_frames=False)
    sc["gnss"]["attacks"] = []
    return load_dataset(simulate_flight(parse_scenario(sc, "gnss-only"), request.param, root))


def test_covariance_is_honest_while_gnss_is_fused(gnss_flight):
    inside = _inside95(gnss_flight, 60.0)
    assert inside >= 0.9, f"only {inside:.0%} of errors inside the 95% ellipse"


def test_white_noise_gnss_model_would_be_over_confident(gnss_flight):
    # the failure the correlated model fixes must be visible on this flight
    assert _inside95(gnss_flight, 0.0) < 0.9
