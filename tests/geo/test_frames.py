"""Round trips and cross-checks of the geodesy helpers (issue: foundation, geo)."""

import mercantile
import morecantile
import numpy as np
import pytest

from terrafix.geo import (
    GeoError,
    LocalFrame,
    destination,
    distance_azimuth,
    ecef_to_lla,
    lla_to_ecef,
)
from terrafix.geo import tiles as T
from terrafix.geo.rotation import (
    R_to_euler,
    R_to_quat,
    euler_to_R_body_to_ned,
    quat_multiply,
    quat_to_R,
    rotvec_to_quat,
)
from terrafix.geo.utm import from_wgs84, to_wgs84, utm_epsg_for

rng = np.random.default_rng(7)


def test_lla_ecef_round_trip_below_a_millimetre():
    lat = rng.uniform(-85, 85, 500)
    lon = rng.uniform(-180, 180, 500)
    alt = rng.uniform(-100, 5000, 500)
    p = lla_to_ecef(lat, lon, alt)
    lat2, lon2, alt2 = ecef_to_lla(p)
    back = lla_to_ecef(lat2, lon2, alt2)
    assert np.max(np.linalg.norm(back - p, axis=1)) < 1e-3
    assert np.max(np.abs(alt2 - alt)) < 1e-3


def test_ecef_of_equator_prime_meridian_is_semi_major_axis():
    p = lla_to_ecef(0.0, 0.0, 0.0)
    assert p == pytest.approx([6378137.0, 0.0, 0.0], abs=1e-6)


def test_local_ned_round_trip_and_axes():
    frame = LocalFrame(40.16, -105.10, 1520.0)
    p_ned = rng.uniform(-20000, 20000, (200, 3))
    p_ned[:, 2] = rng.uniform(-1000, 50, 200)
    lat, lon, alt = frame.ned_to_lla(p_ned)
    assert np.max(np.linalg.norm(frame.lla_to_ned(lat, lon, alt) - p_ned, axis=1)) < 1e-3
    # 1 km north increases latitude, 1 km east increases longitude, down lowers altitude
    lat_n, lon_n, _ = frame.ned_to_lla(np.array([1000.0, 0, 0]))
    _lat_e, lon_e, _ = frame.ned_to_lla(np.array([0, 1000.0, 0]))
    _, _, alt_d = frame.ned_to_lla(np.array([0, 0, 100.0]))
    assert lat_n > 40.16 and abs(lon_n + 105.10) < 1e-9
    assert lon_e > -105.10
    assert alt_d == pytest.approx(1420.0, abs=0.01)
    enu = frame.lla_to_enu(lat_n, lon_n, 1520.0)
    assert enu == pytest.approx([0.0, 1000.0, 0.0], abs=0.1)  # curvature drop ~0.08 m


def test_ned_distance_matches_geodesic():
    frame = LocalFrame(40.16, -105.10, 0.0)
    lat, lon, _ = frame.ned_to_lla(np.array([3000.0, 4000.0, 0.0]))
    dist, az = distance_azimuth(40.16, -105.10, float(lat), float(lon))
    assert dist == pytest.approx(5000.0, rel=1e-5)
    assert az == pytest.approx(np.degrees(np.arctan2(4000, 3000)), abs=0.01)
    lat2, lon2 = destination(40.16, -105.10, az, dist)
    assert distance_azimuth(lat2, lon2, float(lat), float(lon))[0] < 1e-3


def test_bad_latitude_is_a_clear_error():
    with pytest.raises(GeoError, match="latitude"):
        lla_to_ecef(95.0, 0.0, 0.0)
    with pytest.raises(GeoError, match="origin"):
        LocalFrame(100.0, 0.0)


@pytest.mark.parametrize("z", [0, 5, 12, 17, 19, 20, 22])
def test_tiles_agree_with_mercantile_and_morecantile(z):
    tms = morecantile.tms.get("WebMercatorQuad")
    for lon, lat in zip(rng.uniform(-179.9, 179.9, 60), rng.uniform(-85, 85, 60), strict=True):
        t = T.lonlat_to_tile(float(lon), float(lat), z)
        ref = mercantile.tile(lon, lat, z)
        assert (t.x, t.y, t.z) == (ref.x, ref.y, ref.z)
        ref2 = tms.tile(lon, lat, z)
        assert (t.x, t.y) == (ref2.x, ref2.y)
        w, s, e, n = T.tile_bounds(t)
        rb = mercantile.bounds(ref)
        assert (w, s, e, n) == pytest.approx((rb.west, rb.south, rb.east, rb.north), abs=1e-9)
        xb = mercantile.xy_bounds(ref)
        assert T.tile_mercator_bounds(t) == pytest.approx(
            (xb.left, xb.bottom, xb.right, xb.top), abs=1e-6)


def test_global_pixel_round_trip_and_resolution():
    lon, lat = -105.1, 40.16
    px, py = T.lonlat_to_global_px(lon, lat, 19)
    lon2, lat2 = T.global_px_to_lonlat(px, py, 19)
    assert distance_azimuth(lat, lon, lat2, lon2)[0] < 1e-3
    res = T.ground_resolution_m_per_px(19, lat)
    assert res == pytest.approx(0.2986 * np.cos(np.radians(lat)), rel=2e-3)
    # one pixel east at zoom 19 is `res` metres on the ground
    lon3, lat3 = T.global_px_to_lonlat(px + 1000, py, 19)
    assert distance_azimuth(lat, lon, lat3, lon3)[0] == pytest.approx(1000 * res, rel=1e-3)
    assert T.zoom_for_resolution(0.3, 40.16) == 19
    assert T.zoom_for_resolution(0.5, 40.16) == 18


def test_tiles_in_bounds_cover_the_box():
    tiles = T.tiles_in_bounds(-105.11, 40.15, -105.09, 40.17, 17)
    ref = list(mercantile.tiles(-105.11, 40.15, -105.09, 40.17, [17]))
    assert {(t.x, t.y) for t in tiles} == {(r.x, r.y) for r in ref}
    with pytest.raises(GeoError):
        T.tiles_in_bounds(1, 1, 0, 2, 10)
    with pytest.raises(GeoError, match="x and y"):
        T.TileId(3, 8, 0)


def test_utm_round_trip():
    assert utm_epsg_for(40.16, -105.1) == 32613
    x, y = from_wgs84(40.16, -105.1, 32613)
    lat, lon = to_wgs84(x, y, 32613)
    assert distance_azimuth(40.16, -105.1, lat, lon)[0] < 1e-3


def test_rotations_are_consistent():
    for _ in range(50):
        r, p, y = rng.uniform(-1.5, 1.5), rng.uniform(-1.4, 1.4), rng.uniform(-3.1, 3.1)
        R = euler_to_R_body_to_ned(r, p, y)
        assert np.allclose(R @ R.T, np.eye(3))
        assert R_to_euler(R) == pytest.approx((r, p, y), abs=1e-9)
        q = R_to_quat(R)
        assert np.allclose(quat_to_R(q), R)
    q1, q2 = rotvec_to_quat(np.array([0.1, 0.2, -0.3])), rotvec_to_quat(np.array([-0.5, 0, 0.2]))
    assert np.allclose(quat_to_R(quat_multiply(q1, q2)), quat_to_R(q1) @ quat_to_R(q2))
