"""Exception family of the ground service.

`RefusedError` is what a client is told: an HTTP status, a protocol `ErrorCode` and a reason that
names the offending value. Everything else is a server-side problem (configuration, storage).
"""

from __future__ import annotations

from terrafix.upload.protocol import ErrorCode


class GroundError(Exception):
    """Base of every error raised by `terrafix.ground`."""


class GroundConfigError(GroundError):
    """The service cannot start as configured (root, DSN, TLS files, credentials, schema)."""


class GroundStorageError(GroundError):
    """A blob or metadata write failed (the batch's tiles are answered `retry`)."""


class RefusedError(GroundError):
    """A request refused with a reason; answered as {"error": code, "detail": detail}."""

    def __init__(self, status: int, code: ErrorCode, detail: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
