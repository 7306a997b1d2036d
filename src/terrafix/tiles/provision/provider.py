"""Provisioning from the satellite-provider HTTP API (inventory, then tile downloads).

The pre-flight network is slow and flaky, so the client retries what can succeed later
(connection errors, timeouts, 429 and 5xx) with exponential backoff and jitter, honouring
Retry-After, and fails at once on what cannot (TLS verification errors, 401/403, other 4xx).
Every download is checked against the SHA-256 the inventory announced before it is stored.
Provisioning is resumable: tiles already in the store are neither asked for nor fetched again,
and tiles are committed in small batches, so a rerun after an interruption continues where it
stopped.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from hashlib import sha256
from pathlib import Path

import httpx
from shapely.geometry.base import BaseGeometry

from terrafix.geo.tiles import TileId
from terrafix.tiles.errors import ProviderError
from terrafix.tiles.geometry import tiles_covering
from terrafix.tiles.records import NewTile, VotingStatus
from terrafix.tiles.store import TileStore

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
INVENTORY_LIMIT = 5000
_RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass(frozen=True, slots=True)
class AvailableTile:
    """One inventory entry: a tile the provider has, and what its bytes must hash to."""

    tile: TileId
    sha256: str
    capture_date: date
    source: str
    size_bytes: int


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ProviderClient:
    """HTTP client of the provider API with retries (see module docstring).

    ca_file: PEM bundle to verify the server against (default: the system store).
    """

    def __init__(self, base_url: str, *, api_key: str | None = None,
                 bearer_token: str | None = None, ca_file: str | Path | None = None,
                 timeout_s: float = 30.0, max_retries: int = 6, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, sleep: Callable[[float], None] = time.sleep
                 ) -> None:
        if not api_key and not bearer_token:
            raise ProviderError("the provider needs an API key or a bearer token")
        headers = {"User-Agent": "terrafix-provisioning/1"}
        if api_key:
            headers["X-API-Key"] = api_key
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, headers=headers, verify=verify,
                                    timeout=timeout_s)
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self.retries = 0  # how many requests were retried (for reports and tests)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = self._client.request(method, url, **kwargs)  # type: ignore[arg-type]
            except httpx.TransportError as exc:
                if _is_tls_error(exc):
                    raise ProviderError(f"TLS verification failed for {self.base_url}: {exc}") \
                        from exc
                if attempt >= self._max_retries:
                    raise ProviderError(f"{method} {url} failed after {attempt + 1} attempts: "
                                        f"{exc!r}") from exc
                wait = None
                reason = repr(exc)
            else:
                if resp.status_code < 400:
                    return resp
                if resp.status_code in (401, 403):
                    raise ProviderError(f"{method} {url}: the provider refused the credentials "
                                        f"(HTTP {resp.status_code})", resp.status_code)
                if resp.status_code not in _RETRY_STATUS:
                    raise ProviderError(f"{method} {url}: HTTP {resp.status_code}: "
                                        f"{resp.text[:200]}", resp.status_code)
                if attempt >= self._max_retries:
                    raise ProviderError(f"{method} {url}: HTTP {resp.status_code} after "
                                        f"{attempt + 1} attempts", resp.status_code)
                wait = _retry_after_s(resp.headers.get("Retry-After"))
                reason = f"HTTP {resp.status_code}"
            if wait is None:
                wait = min(self._max_backoff_s, self._backoff_s * 2**attempt)
                wait *= 0.5 + random.random() / 2  # jitter: spread clients apart
            wait = min(wait, self._max_backoff_s)
            log.warning("provider: %s %s: %s; retry %d/%d in %.2f s", method, url, reason,
                        attempt + 1, self._max_retries, wait)
            with self._lock:
                self.retries += 1
            self._sleep(wait)
            attempt += 1

    def inventory(self, tiles: Sequence[TileId]) -> tuple[list[AvailableTile], list[TileId]]:
        """Which of (at most 5000) tiles the provider has; returns (available, missing)."""
        if len(tiles) > INVENTORY_LIMIT:
            raise ProviderError(f"an inventory request takes at most {INVENTORY_LIMIT} tiles, "
                                f"got {len(tiles)}")
        resp = self._request("POST", "/v1/inventory",
                             json={"tiles": [[t.z, t.x, t.y] for t in tiles]})
        try:
            doc = resp.json()
            available = [AvailableTile(TileId(a["z"], a["x"], a["y"]), a["sha256"],
                                       date.fromisoformat(a["capture_date"]), a["source"],
                                       int(a["size_bytes"])) for a in doc["available"]]
            missing = [TileId(z, x, y) for z, x, y in doc["missing"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"malformed inventory response: {exc!r}") from exc
        return available, missing

    def fetch(self, item: AvailableTile) -> bytes:
        """Download a tile and check it against the announced hash."""
        t = item.tile
        resp = self._request("GET", f"/v1/tiles/{t.z}/{t.x}/{t.y}.jpg")
        data = resp.content
        found = sha256(data).hexdigest()
        if found != item.sha256:
            raise ProviderError(f"tile {t.z}/{t.x}/{t.y}: downloaded bytes hash to {found}, the "
                                f"inventory announced {item.sha256}")
        return data


@dataclass(frozen=True, slots=True)
class ProviderReport:
    """What a provisioning run did."""

    tiles_needed: int
    tiles_already_present: int
    tiles_unavailable: tuple[TileId, ...]
    tiles_written: int
    retries: int


def provision_from_provider(store: TileStore, client: ProviderClient, area: BaseGeometry,
                            zooms: Sequence[int], *, workers: int = 4, batch: int = 64,
                            on_progress: Progress | None = None) -> ProviderReport:
    """Fetch every tile of `area` (lon/lat polygon) at `zooms` that the store lacks."""
    needed: list[TileId] = []
    for z in zooms:
        needed.extend(tiles_covering(area, z))
    present: set[TileId] = set()
    for z in zooms:
        present.update(store.tile_hits(area, z).tile_ids())
    todo = [t for t in needed if t not in present]
    unavailable: list[TileId] = []
    written = 0
    done = len(needed) - len(todo)
    if on_progress:
        on_progress(done, len(needed))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i in range(0, len(todo), INVENTORY_LIMIT):
            available, missing = client.inventory(todo[i:i + INVENTORY_LIMIT])
            unavailable.extend(missing)
            done += len(missing)
            for j in range(0, len(available), batch):
                chunk = available[j:j + batch]
                datas = list(pool.map(client.fetch, chunk))
                rep = store.put_many([NewTile(a.tile, d, a.capture_date, a.source,
                                              VotingStatus.TRUSTED)
                                      for a, d in zip(chunk, datas, strict=True)],
                                     on_conflict="skip")
                written += len(rep.inserted) + len(rep.replaced)
                done += len(chunk)
                if on_progress:
                    on_progress(done, len(needed))
    if unavailable:
        log.warning("provider lacks %d of %d tiles needed", len(unavailable), len(needed))
    return ProviderReport(len(needed), len(present & set(needed)), tuple(unavailable), written,
                          client.retries)
