"""Uploader configuration (TOML section `[upload]` of the onboard config, or CLI options)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from terrafix.upload.protocol import MAX_TILES_PER_BATCH
from terrafix.upload.retry import RetryPolicy


class UploadConfig(BaseModel):
    """Where and how tiles go to the ground service after landing."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str = ""
    """Base URL of the ground service, https only (e.g. https://ground.example:8443)."""
    ca_cert: Path | None = None
    """PEM of the CA the ground service's certificate must chain to (None: system CAs)."""
    device_key: Path | None = None
    """The device key (None: $XDG_CONFIG_HOME/terrafix/device_ed25519.pem)."""
    batch_tiles: int = Field(32, ge=1, le=MAX_TILES_PER_BATCH)
    concurrent_batches: int = Field(2, ge=1, le=8)
    """Batches in flight at once (the link's latency and the ground's work overlap)."""
    request_timeout_s: float = Field(30.0, gt=0.0, le=600.0)
    session_lifetime_s: float = Field(3600.0, ge=60.0, le=86400.0)
    retry: RetryPolicy = RetryPolicy()

    @field_validator("url")
    @classmethod
    def _https_only(cls, v: str) -> str:
        if v and not v.startswith("https://"):
            raise ValueError(f"upload url must start with https:// (TLS only), got {v!r}")
        return v.rstrip("/")
