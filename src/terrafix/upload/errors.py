"""Exception family of the uploader: every refusal names the state or value and what was
expected, and says whether a later retry can help."""

from __future__ import annotations

from datetime import datetime


class UploadError(Exception):
    """Base of every error raised by `terrafix.upload`."""


class KeyFileError(UploadError):
    """The device key file is missing, unreadable, of the wrong kind or too open."""


class UploadConfigError(UploadError):
    """Bad uploader configuration (URL, CA file, budgets)."""


class GateRefusedError(UploadError):
    """The flight-state gate refused the upload (not on the ground, armed, no FC answer,
    no clean recorder footer). Fail closed: nothing was sent."""


class UploadRefusedError(UploadError):
    """Fail-fast refusal: TLS verification failed, or the ground answered 401/403. Retrying
    cannot help until the operator fixes the certificate or the device registration."""


class RetryBudgetSpentError(UploadError):
    """A batch failed transiently `max_in_call_retries` + 1 times; try again at
    `next_retry_at` (UTC). Tiles not acknowledged stay PENDING and are sent by the next run."""

    def __init__(self, message: str, next_retry_at: datetime) -> None:
        super().__init__(message)
        self.next_retry_at = next_retry_at
