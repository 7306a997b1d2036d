"""The in-call retry budget's arithmetic: capped exponential backoff and `Retry-After`.

backoff_s(attempt) = min(base ** attempt, cap) for attempt 1, 2, ... (the first retry waits
`base` seconds). A server's `Retry-After` replaces the backoff for that retry, in either form
RFC 9110 allows: delta-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT"). A
date in the past means "now" (0 s); a value beyond the cap is capped, so a hostile or broken
server cannot park the uploader for days inside one call (the budget then ends and the command
reports `next_retry_at` instead).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pydantic import BaseModel, ConfigDict, Field


class RetryPolicy(BaseModel):
    """Both retry budgets (REQUIREMENTS U2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_in_call_retries: int = Field(4, ge=0, le=100)
    """Per batch: retries after a 5xx, a connection error or a partial outcome."""
    backoff_base_s: float = Field(2.0, ge=1.0, le=60.0)
    backoff_cap_s: float = Field(30.0, gt=0.0, le=3600.0)
    """Upper bound of any single wait, Retry-After included."""
    max_per_tile_attempts: int = Field(3, ge=1, le=1000)
    """Per tile, across runs: rejections before the tile is given up (UPLOAD_GIVEUP)."""

    def backoff_s(self, attempt: int) -> float:
        """Wait before retry number `attempt` (1-based) without a Retry-After."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        try:
            raw = self.backoff_base_s ** attempt
        except OverflowError:
            raw = math.inf
        return min(raw, self.backoff_cap_s)

    def wait_s(self, attempt: int, retry_after: str | None, now: datetime | None = None) -> float:
        """The wait before retry `attempt`: the server's Retry-After when it gave a valid one
        (capped), else the backoff."""
        parsed = parse_retry_after(retry_after, now) if retry_after else None
        if parsed is None:
            return self.backoff_s(attempt)
        return min(parsed, self.backoff_cap_s)


def parse_retry_after(value: str, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value, or None when it is neither form.

    delta-seconds: a non-negative integer. HTTP-date: seconds until that instant from `now`
    (UTC), 0 when it has passed."""
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())
