"""Configuration of the ground service (TOML, validated by pydantic).

Example `ground.toml`:

    root = "/srv/terrafix-ground"          # blobs/, serving/ and (SQLite) ground.sqlite
    dsn = "host=db user=terrafix dbname=ground"   # omit for the embedded SQLite default
    schema = "terrafix_ground"
    operator_tokens = ["..."]              # the operator API (devices add/list/revoke)
    provider_api_keys = ["..."]            # the satellite-provider API (provisioning)
    [voting]
    min_flights = 2
    min_devices = 2
    [area]                                 # where tiles are plausible (W, S, E, N degrees)
    bbox = [-105.2, 40.1, -105.1, 40.2]
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from terrafix.config_files import load_toml_config
from terrafix.ground.errors import GroundConfigError
from terrafix.upload.protocol import MAX_MANIFEST_BYTES, MAX_TILE_BYTES, MAX_TILES_PER_BATCH


class VotingConfig(BaseModel):
    """When candidates agree (see voting/compare.py for how the thresholds were chosen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_flights: int = Field(2, ge=2, description="different flights that must agree")
    min_devices: int = Field(2, ge=1, description="different aircraft among them")
    max_offset_m: float = Field(2.0, gt=0, le=5.0, description="registration offset allowed")
    min_ssim: float = Field(0.8, gt=0, lt=1, description="structural similarity after "
                                                            "alignment (voting/compare.py)")
    max_candidates: int = Field(16, ge=2, description="newest candidates compared per tile")

    @model_validator(mode="after")
    def _devices_within_flights(self) -> VotingConfig:
        if self.min_devices > self.min_flights:
            raise ValueError(f"min_devices ({self.min_devices}) cannot exceed min_flights "
                             f"({self.min_flights})")
        return self


class AreaConfig(BaseModel):
    """Plausibility of a tile's georeferencing: zoom range and the service area."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_zoom: int = Field(16, ge=0, le=24)
    max_zoom: int = Field(21, ge=0, le=24)
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="(west, south, east, north) degrees; None: anywhere")


class LimitsConfig(BaseModel):
    """Request limits (the multipart parser enforces them while reading, never after)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tiles_per_batch: int = Field(MAX_TILES_PER_BATCH, ge=1, le=MAX_TILES_PER_BATCH)
    max_tile_bytes: int = Field(MAX_TILE_BYTES, ge=1024, le=MAX_TILE_BYTES)
    max_manifest_bytes: int = Field(MAX_MANIFEST_BYTES, ge=1024, le=MAX_MANIFEST_BYTES)
    max_json_bytes: int = Field(64 * 1024, ge=1024)
    max_session_validity_s: float = Field(7 * 24 * 3600.0, gt=0)
    clock_skew_s: float = Field(300.0, ge=0)
    busy_retry_after_s: int = Field(2, ge=1)

    @property
    def max_batch_body_bytes(self) -> int:
        """Upper bound of a valid batch body: every part at its limit plus 4 KiB of
        multipart framing per part."""
        parts = self.max_tiles_per_batch + 2
        return (self.max_tiles_per_batch * self.max_tile_bytes + self.max_manifest_bytes
                + 1024 + parts * 4096)


class GroundConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path
    dsn: str | None = None
    schema_name: str = Field("terrafix_ground", alias="schema")
    operator_tokens: tuple[str, ...] = ()
    provider_api_keys: tuple[str, ...] = ()
    provider_tokens: tuple[str, ...] = ()
    voting: VotingConfig = VotingConfig()
    area: AreaConfig = AreaConfig()
    limits: LimitsConfig = LimitsConfig()
    fsync: bool = True
    # Start-up reconcile deletes blobs no row names only when older than this. None: 0 s for
    # SQLite (one server process), 600 s for PostgreSQL, where another server process
    # sharing the database may have a batch in flight.
    orphan_grace_s: float | None = Field(None, ge=0)
    # Fault injection for the crash tests only: sleep this long after a batch's blobs are
    # written and before its rows are committed (the window a kill -9 must hit).
    fault_pause_before_commit_s: float = Field(0.0, ge=0, le=60)

    @model_validator(mode="after")
    def _tokens(self) -> GroundConfig:
        for name in ("operator_tokens", "provider_api_keys", "provider_tokens"):
            for tok in getattr(self, name):
                if len(tok) < 16:
                    raise ValueError(f"{name}: credentials must be at least 16 characters, "
                                     f"got one of {len(tok)}")
        return self


def load_ground_config(path: str | Path) -> GroundConfig:
    return load_toml_config(GroundConfig, path, "ground config", GroundConfigError)
