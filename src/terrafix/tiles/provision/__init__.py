"""Filling a tile cache before flight: GeoTIFF/COG rasters, MBTiles files, the provider API."""
