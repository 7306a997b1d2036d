"""Geodesy: WGS84/ECEF/local NED-ENU frames, geodesics, slippy-map tiles and UTM.

Everything inside terrafix works in SI units in a local NED frame whose origin is the take-off
point; degrees and WGS84 appear only at the edges (config, MAVLink, tiles). This package is the
one place where those conversions happen, so that no other module re-derives them.
"""

from terrafix.geo.errors import GeoError
from terrafix.geo.frames import LocalFrame, ecef_to_lla, lla_to_ecef
from terrafix.geo.geodesic import destination, distance_azimuth, distance_m

__all__ = [
    "GeoError",
    "LocalFrame",
    "destination",
    "distance_azimuth",
    "distance_m",
    "ecef_to_lla",
    "lla_to_ecef",
]
