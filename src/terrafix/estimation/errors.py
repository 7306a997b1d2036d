"""Exception family of the estimation package."""


class EstimationError(ValueError):
    """A measurement, configuration or call order the estimator cannot accept.

    Raised with the offending value and what was expected (e.g. an IMU sample older than the
    state, a covariance that is not symmetric positive definite, an unknown backend name).
    A filter that *becomes* inconsistent does not raise: it declares itself LOST (see
    `NavEstimate.lost`) so that the integrity layer can turn that into an explicit no-fix.
    """
