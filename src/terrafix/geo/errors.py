"""Exception family of the geo package."""


class GeoError(ValueError):
    """A coordinate, zoom or frame argument outside what the conversion accepts."""
