"""Satellite tile cache: the map every visual fix is matched against (REQUIREMENTS §4).

Tiles are 256x256 grayscale JPEG files at `<root>/tiles/{z}/{x}/{y}.jpg`; their metadata lives
in SQLite (default, embedded) or PostgreSQL + PostGIS. Navigation reads the map through
`open_store(root, read_only=True)` and `TileStore.mosaic / tile_hits / tiles_intersecting /
tiles_within` (`tile_hits`: the per-frame footprint query, numpy columns, no per-tile records);
provisioning (`terrafix tiles provision ...`) fills the cache before flight, and a signed
manifest (`terrafix tiles verify`) proves the planned corridor is covered.
"""

from terrafix.tiles.config import open_store
from terrafix.tiles.errors import (
    BudgetExceededError,
    CacheMissError,
    CorruptTileError,
    DuplicateTileError,
    InvalidTileError,
    ManifestError,
    ProviderError,
    ProvisioningError,
    ReadOnlyStoreError,
    SchemaVersionError,
    SectorError,
    StoreConfigError,
    TileCacheError,
    TileNotFoundError,
)
from terrafix.tiles.freshness import FreshnessPolicy, SectorClass
from terrafix.tiles.records import (
    FreshnessLabel,
    Mosaic,
    MosaicTile,
    NewTile,
    PutReport,
    TileHits,
    TileRecord,
    VotingStatus,
)
from terrafix.tiles.store import TileStore

__all__ = [
    "BudgetExceededError",
    "CacheMissError",
    "CorruptTileError",
    "DuplicateTileError",
    "FreshnessLabel",
    "FreshnessPolicy",
    "InvalidTileError",
    "ManifestError",
    "Mosaic",
    "MosaicTile",
    "NewTile",
    "ProviderError",
    "ProvisioningError",
    "PutReport",
    "ReadOnlyStoreError",
    "SchemaVersionError",
    "SectorClass",
    "SectorError",
    "StoreConfigError",
    "TileCacheError",
    "TileHits",
    "TileNotFoundError",
    "TileRecord",
    "TileStore",
    "VotingStatus",
    "open_store",
]
