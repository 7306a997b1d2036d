"""What the ground API's OpenAPI document declares: request bodies, answers and refusals.

The upload and operator routes read their bodies themselves (the bytes are signed, so they
are parsed once, by upload/protocol.py, not by a framework model); these declarations only
document them, so that a client generator or Schemathesis (tests/fuzz/test_ground_api.py)
sees the real contract: every status a route answers, with the body it carries. A refusal is
always `Refusal` ({"error": ErrorCode, "detail": reason}).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from terrafix.upload.protocol import ErrorCode, TileOutcomeStatus


class Refusal(BaseModel):
    error: ErrorCode
    detail: str


class SessionOpened(BaseModel):
    session_id: str
    expires_utc: str


class TileOutcomeModel(BaseModel):
    sha256: str
    status: TileOutcomeStatus
    reason: str | None


class BatchOutcomes(BaseModel):
    outcomes: list[TileOutcomeModel]


class SessionSummary(BaseModel):
    session_id: str
    accepted: int
    duplicate: int
    rejected: int
    closed: bool


class DeviceModel(BaseModel):
    fingerprint: str
    name: str
    public_key: str
    registered_utc: float
    revoked_utc: float | None
    revoked_reason: str | None


class DeviceList(BaseModel):
    devices: list[DeviceModel]


class VoteCounts(BaseModel):
    counts: dict[str, int]
    evaluations_pending: int


class ServedTile(BaseModel):
    source: str | None
    sha256: str | None
    capture_date: str | None


class TileVote(BaseModel):
    tile: str
    status: str
    flights: int
    devices: int
    reason: str | None
    trusted_sha256: str | None
    published_sha256: str | None
    withdrawn_sha256: str | None
    serving: ServedTile


_REASONS = {
    400: "malformed request (the detail names the field and the value)",
    401: "unknown device or session, bad signature, expired session, missing operator token",
    403: "revoked device",
    404: "no such device, tile or vote",
    409: "the session key was certified before with another certificate",
    413: "body or part over its limit",
    503: "busy: retry after Retry-After seconds",
}


def answers(ok: int, model: type[BaseModel], *refusals: int) -> dict[int | str, Any]:
    """The `responses=` of a route: `ok` with `model`, and each refusal status as Refusal
    (400 and 413 always: the body-size middleware may answer them on any route)."""
    out: dict[int | str, Any] = {ok: {"model": model}}
    for status in sorted({400, 413, *refusals}):
        out[status] = {"model": Refusal, "description": _REASONS[status]}
    return out


def json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra=` declaring a JSON request body the route parses itself."""
    return {"requestBody": {"required": required, "content": {
        "application/json": {"schema": schema}}}}


_B64 = {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$"}
_ISO = {"type": "string", "format": "date-time"}

SESSION_BODY = json_body({
    "type": "object", "additionalProperties": False,
    "required": ["certificate", "signature"],
    "properties": {
        "certificate": {
            "type": "object", "additionalProperties": False,
            "required": ["v", "device", "session_key", "flight_id", "not_before", "expires"],
            "properties": {"v": {"type": "integer", "enum": [1]},
                           "device": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                           "session_key": {"type": "string",  # 32 raw bytes in base64
                                           "pattern": "^[A-Za-z0-9+/]{43}=$"},
                           "flight_id": {"type": "string", "minLength": 1, "maxLength": 128},
                           "not_before": _ISO, "expires": _ISO}},
        "signature": _B64}})

CLOSE_BODY = json_body({"type": "object", "additionalProperties": False,
                        "properties": {"signature": _B64}}, required=False)

BATCH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["manifest", "signature"],
    "properties": {"manifest": {"type": "string", "format": "binary",
                                "description": "canonical JSON of the BatchManifest"},
                   "signature": {"type": "string", "description": "base64 Ed25519 signature "
                                 "of the manifest part's bytes"},
                   "tile": {"type": "array", "items": {"type": "string", "format": "binary"},
                            "description": "one part per tile, file name <sha256>.jpg"}}}}}}}

DEVICE_BODY = json_body({"type": "object", "required": ["name", "public_key"],
                         "properties": {"name": {"type": "string", "minLength": 1,
                                                 "maxLength": 200},
                                        "public_key": {"type": "string", "description":
                                                       "base64 raw or PEM Ed25519 public key"}}})

REVOKE_BODY = json_body({"type": "object", "properties": {"reason": {"type": "string"}}},
                        required=False)
