"""The post-flight uploader (REQUIREMENTS U2): flight-store tiles to the ground service.

One run is one session: start (the session certificate, signed by the device key) → batches
(multipart: the signed manifest + the tiles) → per-tile outcomes → close, the close in a
`finally`. Per tile, in the flight store (the only state, so a kill -9 at any point loses
nothing):
- accepted / duplicate: UPLOADED (a duplicate is safely on the ground already);
- rejected: `upload_attempts` + 1 atomically; at `max_per_tile_attempts` UPLOAD_GIVEUP (final,
  excluded from every later run), recorded (`on_record("upload/giveup", ...)`) and logged as
  an ERROR;
- retry, or no outcome: still PENDING, resent within the call's budget.
Tile identity is the content hash, so a tile the ground stored just before the uploader was
killed comes back as a duplicate on the rerun and is never stored twice.

In a call, a batch that fails transiently (5xx, 429, a connection error, a partial outcome)
is retried up to `max_in_call_retries` times after `RetryPolicy.wait_s` (Retry-After honoured);
then `RetryBudgetSpentError` says when to try again. A TLS verification failure, 401 or 403 raise
`UploadRefusedError` at once (no retry can help). Other 4xx are protocol errors (`UploadError`).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpcore  # noqa: F401  (httpx imports it on the first client: ~0.5 s inside the upload)
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terrafix.geo.tiles import TileId
from terrafix.mapping.provenance import ProvenanceError, extract
from terrafix.tiles.errors import CorruptTileError, TileNotFoundError
from terrafix.tiles.records import TileRecord, VotingStatus
from terrafix.tiles.store import TileStore
from terrafix.upload.config import UploadConfig
from terrafix.upload.errors import (
    RetryBudgetSpentError,
    UploadConfigError,
    UploadError,
    UploadRefusedError,
)
from terrafix.upload.keys import SessionKey
from terrafix.upload.protocol import (
    API_PREFIX,
    BatchManifest,
    TileEntry,
    TileOutcomeStatus,
)

log = logging.getLogger(__name__)

Recorder = Callable[[str, dict[str, Any]], None]
Progress = Callable[[int, int], None]
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(slots=True)
class UploadSummary:
    """What one run did (printed by `terrafix upload`, recorded)."""

    flight_id: str
    session_fingerprint: str = ""
    session_id: str = ""
    offered: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    given_up: int = 0
    skipped_corrupt: int = 0
    batches: int = 0
    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0
    next_retry_at: str | None = None
    error: str | None = None
    close_response: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in type(exc).__name__


def tls_context(config: UploadConfig) -> ssl.SSLContext:
    """Verification always on: against `ca_cert` when given, else the system CAs."""
    if config.ca_cert is not None and not config.ca_cert.is_file():
        raise UploadConfigError(f"upload ca_cert {config.ca_cert} does not exist")
    return ssl.create_default_context(
        cafile=str(config.ca_cert) if config.ca_cert is not None else None)


@dataclass(frozen=True, slots=True)
class _Pending:
    record: TileRecord
    entry: TileEntry
    jpeg: bytes


def multipart_body(manifest: bytes, signature: str,
                   tiles: Sequence[tuple[str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) of a batch: parts "manifest" (application/json), "signature"
    (text/plain), then one "tile" part per (sha256, JPEG) named <sha256>.jpg. Built in one
    join so the request goes out in a few large writes (httpx's encoder writes ~100 small
    chunks per batch, a third of the uploader's time on loopback)."""
    boundary = uuid.uuid4().hex
    b = boundary.encode("ascii")
    parts = [b"--" + b + b'\r\nContent-Disposition: form-data; name="manifest"; '
             b'filename="manifest.json"\r\nContent-Type: application/json\r\n\r\n',
             manifest,
             b"\r\n--" + b + b'\r\nContent-Disposition: form-data; name="signature"\r\n'
             b"Content-Type: text/plain\r\n\r\n", signature.encode("ascii")]
    for sha, jpeg in tiles:
        parts += [b"\r\n--" + b + b'\r\nContent-Disposition: form-data; name="tile"; '
                  b'filename="' + sha.encode("ascii") + b'.jpg"\r\nContent-Type: image/jpeg'
                  b"\r\n\r\n", jpeg]
    parts.append(b"\r\n--" + b + b"--\r\n")
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class _TransientError(Exception):
    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Uploader:
    """Uploads the PENDING/LOW_TRUST tiles of one flight store (see module docstring).

    sleep: how waits happen (tests pass a recorder instead of sleeping; the server is real).
    now: UTC clock for Retry-After dates and next_retry_at. on_record: (topic, dict) sink for
    the flight data recorder of the upload. on_progress: (tiles done, tiles offered).
    """

    def __init__(self, store: TileStore, config: UploadConfig, device_key: Ed25519PrivateKey,
                 flight_id: str, *, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_record: Recorder | None = None, on_progress: Progress | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not config.url:
            raise UploadConfigError("upload url is not set (https://host:port of the ground "
                                    "service)")
        self.store = store
        self.config = config
        self.device_key = device_key
        self.flight_id = flight_id
        self._sleep = sleep
        self._now = now
        self._record = on_record or (lambda _topic, _d: None)
        self._progress = on_progress or (lambda _done, _total: None)
        self._transport = transport
        self._seq = 0
        self._done = 0
        self._lock = threading.Lock()
        self.summary = UploadSummary(flight_id)

    # --- the session ---------------------------------------------------------------------
    def run(self) -> UploadSummary:
        """Upload everything uploadable; returns the summary, raises on a refusal or a spent
        budget (the summary so far is `self.summary`, with `next_retry_at` set)."""
        records = self.store.uploadable_records()
        s = self.summary
        s.offered = len(records)
        self._progress(0, len(records))
        if not records:
            log.info("upload: nothing to send for flight %s", self.flight_id)
            return s
        cfg = self.config
        # the certificate reaches back to the start of the earliest capture day (a record
        # keeps its capture date only): an 8-hour flight's first tiles stay inside it
        first_day = min(r.capture_date for r in records)
        covers_from = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
        with SessionKey(self.device_key, self.flight_id, lifetime_s=cfg.session_lifetime_s,
                        now=self._now(), covers_from=covers_from) as session, \
                httpx.Client(base_url=cfg.url + API_PREFIX, verify=tls_context(cfg),
                             timeout=cfg.request_timeout_s, transport=self._transport) as client:
            s.session_fingerprint = session.fingerprint
            self._record("upload/session", {
                "flight_id": self.flight_id, "device": session.certificate.device_fingerprint,
                "session_key": session.fingerprint,
                "expires": session.certificate.expires_utc.isoformat()})
            log.info("upload session key %s (device %s) for flight %s", session.fingerprint,
                     session.certificate.device_fingerprint, self.flight_id)
            started = False
            try:
                body = self._call(client, "start session", lambda: client.post(
                    "/sessions", json=session.session_body))
                s.session_id = str(body["session_id"])
                started = True
                self._send_all(client, session, records)
            except RetryBudgetSpentError as exc:
                s.next_retry_at = exc.next_retry_at.isoformat()
                s.error = str(exc)
                raise
            except UploadError as exc:
                s.error = str(exc)
                raise
            finally:
                if started:
                    self._close_session(client)
                self._record("upload/summary", s.as_dict())
        return s

    def _send_all(self, client: httpx.Client, session: SessionKey,
                  records: Sequence[TileRecord]) -> None:
        """Batches, up to `concurrent_batches` in flight (each with its own in-call budget);
        the first refusal or spent budget stops the batches not yet started and is raised."""
        n = self.config.batch_tiles
        chunks = [records[i:i + n] for i in range(0, len(records), n)]
        if self.config.concurrent_batches == 1:
            for chunk in chunks:
                self._send_batch(client, session, chunk)
            return
        with ThreadPoolExecutor(self.config.concurrent_batches,
                                thread_name_prefix="upload") as pool:
            futures = [pool.submit(self._send_batch, client, session, c) for c in chunks]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                for f in futures:
                    f.cancel()
                wait(futures)
                raise failed.exception()  # type: ignore[misc]

    def _close_session(self, client: httpx.Client) -> None:
        """Best effort, once: a failing close loses nothing (the ground expires sessions)."""
        try:
            resp = client.post(f"/sessions/{self.summary.session_id}/close", json={})
            if resp.status_code == 200:
                self.summary.close_response = resp.json()
            else:
                log.warning("upload: closing session %s answered %d %s",
                            self.summary.session_id, resp.status_code, resp.text[:200])
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("upload: closing session %s failed: %s", self.summary.session_id, exc)

    # --- one batch with its in-call budget --------------------------------------------------
    def _prepare(self, records: Sequence[TileRecord]) -> list[_Pending]:
        out = []
        for rec in records:
            t = rec.tile
            try:
                jpeg = self.store.read_tile(t, allow_rejected=True)
                prov = extract(jpeg)
            except (CorruptTileError, TileNotFoundError, ProvenanceError) as exc:
                with self._lock:
                    self.summary.skipped_corrupt += 1
                log.error("upload: tile %d/%d/%d not sent: %s", t.z, t.x, t.y, exc)
                continue
            out.append(_Pending(rec, TileEntry(
                sha256=rec.sha256, z=t.z, x=t.x, y=t.y, captured_utc=prov.captured_utc,
                sigma_m=prov.sigma_m, trust=prov.trust, size_bytes=len(jpeg),
                change_score=prov.change_score, frames=prov.frames), jpeg))
        return out

    def _send_batch(self, client: httpx.Client, session: SessionKey,
                    records: Sequence[TileRecord]) -> None:
        todo = self._prepare(records)
        with self._lock:
            self.summary.batches += 1
        attempt = 0
        url = f"/sessions/{self.summary.session_id}/batches"
        while todo:
            with self._lock:
                seq, self._seq = self._seq, self._seq + 1
            manifest = BatchManifest(self.summary.session_id, self.flight_id, seq,
                                     tuple(p.entry for p in todo))
            body, sig = manifest.signed_parts(session.key)
            content, ctype = multipart_body(body, sig, [(p.entry.sha256, p.jpeg) for p in todo])
            retry_after: str | None = None
            try:
                answer = self._call(client, f"batch {manifest.batch_seq}",
                                    lambda c=content, t=ctype: client.post(
                                        url, content=c, headers={"Content-Type": t}),
                                    transient_raises=True)
                todo = self._apply_outcomes(todo, answer)
                reason = f"partial outcome ({len(todo)} tiles not stored)"
            except _TransientError as exc:
                reason, retry_after = str(exc), exc.retry_after
            if not todo:
                return
            attempt += 1
            wait = self.config.retry.wait_s(attempt, retry_after, self._now())
            if attempt > self.config.retry.max_in_call_retries:
                when = self._now() + timedelta(seconds=wait)
                raise RetryBudgetSpentError(
                    f"batch of {len(todo)} tiles still not stored after "
                    f"{self.config.retry.max_in_call_retries} retries (last: {reason}); "
                    f"try again at {when.isoformat()}", when)
            with self._lock:
                self.summary.retries += 1
                self.summary.waited_s += wait
            log.warning("upload: %s; retry %d/%d in %.1f s", reason, attempt,
                        self.config.retry.max_in_call_retries, wait)
            self._sleep(wait)

    def _call(self, client: httpx.Client, what: str, send: Callable[[], httpx.Response],
              transient_raises: bool = False) -> dict[str, Any]:
        """One request: the JSON answer, `UploadRefusedError` (TLS, 401, 403), `UploadError`
        (other 4xx, bad JSON) or `_TransientError` (5xx, 429, transport) — the session start
        retries transients here with the same budget; batches retry them in `_send_batch`."""
        attempt = 0
        while True:
            with self._lock:
                self.summary.requests += 1
            try:
                resp = send()
                if resp.status_code in (401, 403):
                    raise UploadRefusedError(f"{what}: the ground service answered "
                                        f"{resp.status_code} {resp.text[:200]}; check the "
                                        f"device registration (no retry)")
                if resp.status_code in _TRANSIENT_STATUS:
                    raise _TransientError(f"{what}: HTTP {resp.status_code}",
                                     resp.headers.get("Retry-After"))
                if resp.status_code >= 400:
                    raise UploadError(f"{what}: the ground service refused the request with "
                                      f"{resp.status_code} {resp.text[:300]}")
                try:
                    out = resp.json()
                except ValueError as exc:
                    raise _TransientError(f"{what}: answer is not JSON ({exc})") from None
                if not isinstance(out, dict):
                    raise UploadError(f"{what}: answer {out!r:.200} is not a JSON object")
                return out
            except httpx.TransportError as exc:
                if _is_tls_failure(exc):
                    raise UploadRefusedError(f"{what}: TLS verification of {self.config.url} "
                                        f"failed: {exc} (no retry)") from None
                err: _TransientError = _TransientError(f"{what}: {type(exc).__name__}: {exc}")
            except _TransientError as exc:
                err = exc
            if transient_raises:
                raise err
            attempt += 1
            wait = self.config.retry.wait_s(attempt, err.retry_after, self._now())
            if attempt > self.config.retry.max_in_call_retries:
                when = self._now() + timedelta(seconds=wait)
                raise RetryBudgetSpentError(f"{err} after {self.config.retry.max_in_call_retries}"
                                       f" retries; try again at {when.isoformat()}", when)
            with self._lock:
                self.summary.retries += 1
                self.summary.waited_s += wait
            log.warning("upload: %s; retry %d/%d in %.1f s", err, attempt,
                        self.config.retry.max_in_call_retries, wait)
            self._sleep(wait)

    def _apply_outcomes(self, todo: list[_Pending], answer: dict[str, Any]) -> list[_Pending]:
        """Store each outcome; returns the tiles to send again (retry / no outcome)."""
        outcomes = answer.get("outcomes")
        if not isinstance(outcomes, list):
            raise _TransientError(f"answer without an outcome list: {str(answer)[:200]}")
        by_sha: dict[str, tuple[TileOutcomeStatus, str]] = {}
        for o in outcomes:
            try:
                by_sha[str(o["sha256"])] = (TileOutcomeStatus(o["status"]),
                                            str(o.get("reason") or ""))
            except (KeyError, TypeError, ValueError):
                log.warning("upload: ignoring malformed outcome %r", o)
        done: list[TileId] = []
        again: list[_Pending] = []
        rejected: list[tuple[_Pending, str]] = []
        counts = {TileOutcomeStatus.ACCEPTED: 0, TileOutcomeStatus.DUPLICATE: 0}
        for p in todo:
            status, reason = by_sha.get(p.entry.sha256, (TileOutcomeStatus.RETRY, "no outcome"))
            if status in counts:
                counts[status] += 1
                done.append(p.record.tile)
            elif status == TileOutcomeStatus.REJECTED:
                rejected.append((p, reason))
            else:
                again.append(p)
        if done:
            self.store.mark_uploaded(done)
        for p, reason in rejected:
            self._count_rejection(p, reason)
        s = self.summary
        with self._lock:
            s.accepted += counts[TileOutcomeStatus.ACCEPTED]
            s.duplicate += counts[TileOutcomeStatus.DUPLICATE]
            s.rejected += len(rejected)
            self._done += len(todo) - len(again)
            done_n = self._done
        self._progress(done_n, s.offered)
        return again

    def _count_rejection(self, p: _Pending, reason: str) -> None:
        t = p.record.tile
        limit = self.config.retry.max_per_tile_attempts
        after = self.store.count_upload_rejection(t, limit)
        if after is None:
            return
        attempts, status = after
        if status == VotingStatus.UPLOAD_GIVEUP:
            with self._lock:
                self.summary.given_up += 1
            log.error("upload: tile %d/%d/%d (sha256 %s) given up after %d rejected attempts; "
                      "last reason: %s", t.z, t.x, t.y, p.entry.sha256[:16], attempts, reason)
            self._record("upload/giveup", {"tile": f"{t.z}/{t.x}/{t.y}",
                                           "sha256": p.entry.sha256, "attempts": attempts,
                                           "reason": reason, "flight_id": self.flight_id})
        else:
            log.warning("upload: tile %d/%d/%d rejected (%s), attempt %d of %d", t.z, t.x, t.y,
                        reason, attempts, limit)
