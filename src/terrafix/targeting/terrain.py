"""Where the ground is under a ray: flat ground at the terrain altitude, or a DEM GeoTIFF.

Why an interface here: there are two real ground models. `FlatGround` is the operating
default (flat farmland/steppe: one terrain altitude with a sigma for the relief it ignores);
`GeoTiffDem` reads a provisioned elevation raster (any CRS rasterio/pyproj know, e.g. a
Copernicus GLO-30 tile or a survey DEM exported as GeoTIFF), bilinear, with the sigma of its
vertical accuracy.

With a DEM the ray is intersected by fixed-point iteration on horizontal planes: meet the plane
at the DEM height under the current point, look the height up there, repeat. It converges
while the terrain slope is below the ray's elevation angle (always at the tilts a camera looks
at ground from the air, except at grazing rays, which are refused anyway). The uncertainty is
then propagated on the plane through the hit with the DEM's local slope there (central
differences, locate.py), the DEM's vertical sigma being the height term.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np

from terrafix.targeting.errors import TargetingError


class GroundModel(Protocol):
    """Terrain altitude (m, the navigation's datum) under a WGS84 point, and its 1-sigma."""

    sigma_m: float

    def height_at(self, lat_deg: float, lon_deg: float) -> float:
        """NaN outside the model's coverage."""
        ...


class FlatGround:
    """One terrain altitude everywhere."""

    def __init__(self, alt_m: float, sigma_m: float) -> None:
        if not (math.isfinite(alt_m) and sigma_m > 0):
            raise TargetingError(f"flat ground needs a finite altitude and sigma > 0, got "
                                 f"{alt_m}, {sigma_m}")
        self.alt_m = float(alt_m)
        self.sigma_m = float(sigma_m)

    def height_at(self, lat_deg: float, lon_deg: float) -> float:
        return self.alt_m


class GeoTiffDem:
    """A single-band elevation GeoTIFF read whole into memory (a mission area is small)."""

    def __init__(self, path: str | Path, sigma_m: float) -> None:
        import pyproj
        import rasterio

        p = Path(path)
        if not p.is_file():
            raise TargetingError(f"DEM {p} does not exist")
        if not sigma_m > 0:
            raise TargetingError(f"DEM sigma must be > 0 m, got {sigma_m}")
        with rasterio.open(p) as ds:
            if ds.count < 1 or ds.crs is None:
                raise TargetingError(f"DEM {p} has no band or no CRS")
            band = ds.read(1, masked=True).astype(np.float64)
            self._z = np.where(np.ma.getmaskarray(band), np.nan, band.filled(np.nan))
            self._inv = ~ds.transform
            self._to_dem = pyproj.Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
        self.sigma_m = float(sigma_m)
        self.path = p

    def height_at(self, lat_deg: float, lon_deg: float) -> float:
        x, y = self._to_dem.transform(lon_deg, lat_deg)
        col, row = self._inv @ (x, y)
        c, r = col - 0.5, row - 0.5  # pixel centres at integer + 0.5 in rasterio's grid
        c0, r0 = math.floor(c), math.floor(r)
        h, w = self._z.shape
        if not (0 <= c0 < w - 1 and 0 <= r0 < h - 1):
            return math.nan
        a, b = c - c0, r - r0
        z = self._z[r0:r0 + 2, c0:c0 + 2]
        return float((1 - b) * ((1 - a) * z[0, 0] + a * z[0, 1])
                     + b * ((1 - a) * z[1, 0] + a * z[1, 1]))
