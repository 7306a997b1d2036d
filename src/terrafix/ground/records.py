"""Plain data of the ground service: devices, sessions, candidates, votes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from terrafix.geo.tiles import TileId


class VoteStatus(StrEnum):
    """The vote on one z/x/y. Only TRUSTED imagery is ever served."""

    PENDING = "PENDING"  # not enough independent agreeing candidates yet
    TRUSTED = "TRUSTED"  # >= min_flights flights of >= min_devices aircraft agree
    CONFLICT = "CONFLICT"  # candidates of different flights disagree (evidence kept)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    fingerprint: str
    public_key_b64: str
    name: str
    registered_utc_s: float
    revoked_utc_s: float | None
    revoked_reason: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_utc_s is not None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str
    device_fp: str
    flight_id: str
    session_key_b64: str
    certificate_json: str
    not_before_utc_s: float
    expires_utc_s: float
    created_utc_s: float
    closed_utc_s: float | None
    accepted: int
    duplicate: int
    rejected: int


@dataclass(frozen=True, slots=True)
class CandidateRecord:
    """One uploaded tile (a candidate for its z/x/y, never served as it is)."""

    sha256: str
    tile: TileId
    session_id: str
    device_fp: str
    flight_id: str
    captured_utc_s: float
    sigma_m: float
    trust: str
    size_bytes: int
    change_score: float | None
    batch_seq: int
    received_utc_s: float

    @property
    def flight_key(self) -> str:
        """Flights are told apart per aircraft: another device's flight id is another flight."""
        return f"{self.device_fp}/{self.flight_id}"


@dataclass(frozen=True, slots=True)
class VoteRecord:
    tile: TileId
    status: VoteStatus
    trusted_sha256: str | None
    trusted_capture_utc_s: float | None
    flights: int
    devices: int
    evidence_json: str
    evaluated_utc_s: float | None
    dirty_seq: int
    evaluated_seq: int
    served_sha256: str | None
