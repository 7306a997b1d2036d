"""Exception family of the sim package."""


class SimError(ValueError):
    """A simulation input or result outside what the simulator accepts."""


class ScenarioError(SimError):
    """A scenario file or value that fails validation (the message names the field)."""


class WorldError(SimError):
    """A world (raster or synthetic) that cannot render what was asked, e.g. a camera footprint
    that leaves the imagery."""


class DatasetError(SimError):
    """A flight dataset folder that is missing files or has malformed content."""
