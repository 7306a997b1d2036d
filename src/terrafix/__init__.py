"""terrafix: onboard GNSS-denied navigation for fixed-wing UAVs."""

__version__ = "0.1.0"
