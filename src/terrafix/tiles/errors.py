"""Exception family of the tile cache.

Every error names the value that was wrong (tile, path, version, hash) and what was expected,
so that an operator reading a refusal before take-off knows what to fix.
"""

from __future__ import annotations


class TileCacheError(Exception):
    """Base of every error raised by `terrafix.tiles`."""


class StoreConfigError(TileCacheError):
    """The store cannot be opened as configured (bad root, DSN, config file, backend)."""


class SchemaVersionError(TileCacheError):
    """The metadata database has an older or newer schema than this terrafix expects."""


class ReadOnlyStoreError(TileCacheError):
    """A write was attempted on a store opened read-only (the in-flight mode)."""


class TileNotFoundError(TileCacheError, KeyError):
    """No tile with that z/x/y in the store."""


class DuplicateTileError(TileCacheError):
    """A different tile already exists at that z/x/y and the write did not ask to replace it."""


class InvalidTileError(TileCacheError):
    """Bytes offered for storage are not a decodable 256x256 JPEG."""


class CorruptTileError(TileCacheError):
    """A stored tile failed its content-hash or decode check; it has been quarantined."""


class BudgetExceededError(TileCacheError):
    """The disk budget cannot hold the new tiles even after evicting every evictable tile."""


class SectorError(TileCacheError):
    """A freshness sector file is malformed or uses an unknown classification."""


class ManifestError(TileCacheError):
    """A flight manifest is malformed, badly signed, or does not match the cache."""


class CacheMissError(TileCacheError):
    """Tiles needed for the planned route are absent, corrupt or rejected as too old."""


class ProvisioningError(TileCacheError):
    """A provisioning source (GeoTIFF, MBTiles, provider) could not be imported."""


class ProviderError(ProvisioningError):
    """The satellite-provider service refused or kept failing a request."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
