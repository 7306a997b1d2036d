"""Geodesic distance, azimuth and destination on the WGS84 ellipsoid (pyproj.Geod)."""

from __future__ import annotations

import numpy as np
import pyproj

_GEOD = pyproj.Geod(ellps="WGS84")


def distance_azimuth(lat1_deg, lon1_deg, lat2_deg, lon2_deg):
    """Geodesic distance (m) and forward azimuth (deg, clockwise from north) from 1 to 2.

    Accepts scalars or arrays; returns numpy arrays (or floats for scalar input).
    """
    az12, _az21, dist = _GEOD.inv(lon1_deg, lat1_deg, lon2_deg, lat2_deg)
    return dist, az12


def distance_m(lat1_deg, lon1_deg, lat2_deg, lon2_deg):
    """Geodesic distance in metres between two WGS84 points (scalars or arrays)."""
    return distance_azimuth(lat1_deg, lon1_deg, lat2_deg, lon2_deg)[0]


def destination(lat_deg, lon_deg, azimuth_deg, distance_m_):
    """Point reached from (lat, lon) along a geodesic: returns (lat_deg, lon_deg)."""
    lon2, lat2, _ = _GEOD.fwd(lon_deg, lat_deg, azimuth_deg, distance_m_)
    return np.asarray(lat2) if np.ndim(lat2) else float(lat2), (
        np.asarray(lon2) if np.ndim(lon2) else float(lon2)
    )
