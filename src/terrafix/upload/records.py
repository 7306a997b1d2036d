"""What the uploader records (`Uploader(on_record=...)`), one frozen class per topic.

`upload_flight` builds each record through its class (`record_from`) and declares the
channel's schema from the same class (`dataclass_schema`), so a key the uploader adds or drops
without its class fails at once instead of writing a record its schema does not describe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from terrafix.recorder.schemas import doc


@dataclass(frozen=True, slots=True)
class UploadSessionRecord:
    """The session key an upload signs with (`upload/session`), once per run."""

    flight_id: str = field(metadata=doc("flight whose tiles are uploaded"))
    device: str = field(metadata=doc("fingerprint of the device key that certified the session"))
    session_key: str = field(metadata=doc("fingerprint of the session key"))
    expires: str = field(metadata=doc("expiry of the session certificate (UTC ISO)"))


@dataclass(frozen=True, slots=True)
class UploadSummaryRecord:
    """What one upload run did (`upload/summary`, `UploadSummary.as_dict`, field for field)."""

    flight_id: str = field(metadata=doc("flight whose tiles were uploaded"))
    session_fingerprint: str = field(metadata=doc("session key's fingerprint"))
    session_id: str = field(metadata=doc("ground service's session id (empty: not started)"))
    offered: int = field(metadata=doc("tiles offered to the ground service"))
    accepted: int = field(metadata=doc("tiles accepted"))
    duplicate: int = field(metadata=doc("tiles the ground service already had"))
    rejected: int = field(metadata=doc("tiles rejected"))
    given_up: int = field(metadata=doc("tiles given up after too many rejections"))
    skipped_corrupt: int = field(metadata=doc("tiles skipped: corrupt in the flight store"))
    batches: int = field(metadata=doc("batches sent"))
    requests: int = field(metadata=doc("HTTP requests made"))
    retries: int = field(metadata=doc("requests retried"))
    waited_s: float = field(metadata=doc("time spent waiting between retries"))
    next_retry_at: str | None = field(metadata=doc(
        "when to try again (UTC ISO) after the retry budget was spent; null otherwise"))
    error: str | None = field(metadata=doc("why the run stopped; null: it completed"))
    close_response: dict[str, Any] = field(metadata=doc(
        "the ground service's answer to closing the session (empty: not closed)"))


@dataclass(frozen=True, slots=True)
class UploadGiveupRecord:
    """A tile given up after its rejected attempts (`upload/giveup`): excluded from later runs."""

    tile: str = field(metadata=doc("z/x/y (XYZ scheme)"))
    sha256: str = field(metadata=doc("hex SHA-256 of the tile's JPEG"))
    attempts: int = field(metadata=doc("rejected attempts"))
    reason: str = field(metadata=doc("the last rejection's reason"))
    flight_id: str = field(metadata=doc("flight that captured the tile"))


UPLOAD_RECORD_TYPES: dict[str, type] = {"upload/session": UploadSessionRecord,
                                        "upload/summary": UploadSummaryRecord,
                                        "upload/giveup": UploadGiveupRecord}
"""Topic -> record class of what the uploader hands `on_record`."""
