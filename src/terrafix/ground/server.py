"""The ground service's HTTP API: the provider API plus upload and operator routes.

Built on `terrafix.tiles.provider_server.create_app` over the serving store, so provisioning
(`terrafix tiles provision provider`) talks to it unchanged. Added:
- `{API_PREFIX}/sessions`, `.../batches`, `.../close` (docs/upload-protocol.md);
- `/v1/admin/devices` (GET list, POST add) and `/v1/admin/devices/{fp}/revoke`, and
  `/v1/admin/votes` (counts), all behind an operator bearer token.
Bodies are bounded while they are read: a request declaring more than the limit is refused
413 before a byte is read, a chunked one when it crosses the limit; the multipart parser gets
explicit `max_files` / `max_fields` / `max_part_size` (fields), file parts are spooled to disk
above 1 MiB by Starlette and read back at most `max_tile_bytes + 1` at a time. Refusals are
{"error": code, "detail": reason}. A server already processing `max_concurrent_batches`
answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Collection
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from terrafix.geo.tiles import TileId
from terrafix.ground import api_schema as S
from terrafix.ground.errors import RefusedError
from terrafix.ground.service import GroundService
from terrafix.ground.serving import served
from terrafix.tiles.provider_server import create_app
from terrafix.upload.protocol import API_PREFIX, ErrorCode, ProtocolError, loads_wire_json

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/v1/admin"
_TILE_NAME = re.compile(r"^[0-9a-f]{64}\.jpg$")
MAX_CONCURRENT_BATCHES = 16


class _BodyTooLargeError(RefusedError):
    """Raised by the limited receive() inside a route, answered by the refusal handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, ErrorCode.TOO_LARGE, f"request body over {limit} bytes")


class BodyLimitMiddleware:
    """Refuse (413) request bodies over a limit, declared or streamed, on chosen prefixes."""

    def __init__(self, app: ASGIApp, limits: dict[str, int], default: int) -> None:
        self.app = app
        self.limits = limits
        self.default = default

    def _limit(self, path: str) -> int:
        return max((v for k, v in self.limits.items() if path.startswith(k)),
                   default=self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await _json(send, 400, ErrorCode.MALFORMED, "Content-Length is not a number")
                return
            if n > limit:
                log.warning("refused 413: %s body of %d bytes, limit %d", scope["path"], n,
                            limit)
                await _json(send, 413, ErrorCode.TOO_LARGE,
                            f"request body of {n} bytes, at most {limit}")
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    log.warning("refused 413: %s body over %d bytes", scope["path"], limit)
                    raise _BodyTooLargeError(limit)
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError as exc:  # raised outside the routes' handlers
            if not started:
                await _json(send, 413, ErrorCode.TOO_LARGE, exc.detail)


async def _json(send: Send, status: int, code: ErrorCode, detail: str) -> None:
    body = json.dumps({"error": str(code), "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _remote(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "?"


async def _json_body(request: Request, limit: int) -> Any:
    body = await request.body()
    if len(body) > limit:
        raise RefusedError(413, ErrorCode.TOO_LARGE, f"JSON body of {len(body)} bytes, at most "
                                                f"{limit}")
    if not body:
        return {}
    try:  # strict: no NaN/Infinity, and nesting too deep is a refusal, not a 500
        return loads_wire_json(body, "body")
    except ProtocolError as exc:
        raise RefusedError(400, ErrorCode.MALFORMED, str(exc)) from None


def create_ground_app(svc: GroundService, *, api_keys: Collection[str] = (),
                      bearer_tokens: Collection[str] = (),
                      operator_tokens: Collection[str] = (),
                      max_concurrent_batches: int = MAX_CONCURRENT_BATCHES) -> ASGIApp:
    """The ground API over a running `GroundService` (see module docstring)."""
    cfg = svc.config
    app: FastAPI = create_app(svc.serving, api_keys=api_keys or cfg.provider_api_keys,
                              bearer_tokens=bearer_tokens or cfg.provider_tokens)
    app.title = "terrafix ground service"
    ops = [t.encode() for t in (operator_tokens or cfg.operator_tokens)]
    limits = cfg.limits
    busy = asyncio.Semaphore(max_concurrent_batches)
    ingest = svc.ingest

    @app.exception_handler(RefusedError)
    async def refusal_handler(request: Request, exc: RefusedError) -> JSONResponse:
        log.info("answered %d %s to %s %s (%s): %s", exc.status, exc.code, request.method,
                 request.url.path, _remote(request), exc.detail)
        return JSONResponse({"error": str(exc.code), "detail": exc.detail},
                            status_code=exc.status, headers=exc.headers)

    def operator(request: Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if not (ops and scheme.lower() == "bearer" and token and any(
                hmac.compare_digest(token.strip().encode(), t) for t in ops)):
            log.warning("refused 401: operator API without a valid token (%s)",
                        _remote(request))
            raise RefusedError(401, ErrorCode.UNAUTHORIZED, "operator bearer token missing or "
                                                       "invalid", {"WWW-Authenticate": "Bearer"})

    # --- upload --------------------------------------------------------------------------
    @app.post(f"{API_PREFIX}/sessions", openapi_extra=S.SESSION_BODY,
              responses={200: {"model": S.SessionOpened, "description": "already open"},
                         **S.answers(201, S.SessionOpened, 401, 403, 409)})
    async def open_session(request: Request) -> JSONResponse:
        body = await _json_body(request, limits.max_json_bytes)
        session, created = await run_in_threadpool(ingest.open_session, body,
                                                    remote=_remote(request))
        from datetime import UTC, datetime

        return JSONResponse({"session_id": session.session_id, "expires_utc": datetime
                             .fromtimestamp(session.expires_utc_s, UTC).isoformat()},
                            status_code=201 if created else 200)

    @app.post(f"{API_PREFIX}/sessions/{{session_id}}/batches", openapi_extra=S.BATCH_BODY,
              responses=S.answers(200, S.BatchOutcomes, 401, 403, 503))
    async def post_batch(session_id: str, request: Request) -> JSONResponse:
        remote = _remote(request)
        # The session is checked before the body is read: an unknown, expired or revoked
        # sender gets its refusal without the server reading (or spooling) a byte of tiles.
        session = await run_in_threadpool(ingest.live_session, session_id, remote=remote)
        try:
            await asyncio.wait_for(busy.acquire(), timeout=1.0)
        except TimeoutError:
            log.warning("refused 503: %d batches in progress (%s)", max_concurrent_batches,
                        remote)
            raise RefusedError(503, ErrorCode.BUSY, "too many batches in progress; retry later",
                          {"Retry-After": str(limits.busy_retry_after_s)}) from None
        try:
            manifest, signature, tiles = await _read_batch(request, limits, remote)
            outcomes = await run_in_threadpool(ingest.ingest_batch, session, manifest,
                                               signature, tiles, remote=remote)
        finally:
            busy.release()
        return JSONResponse({"outcomes": [o.to_dict() for o in outcomes]})

    @app.post(f"{API_PREFIX}/sessions/{{session_id}}/close", openapi_extra=S.CLOSE_BODY,
              responses=S.answers(200, S.SessionSummary, 401))
    async def close_session(session_id: str, request: Request) -> JSONResponse:
        body = await _json_body(request, limits.max_json_bytes)
        return JSONResponse(await run_in_threadpool(ingest.close_session, session_id, body,
                                                    remote=_remote(request)))

    # --- operator ------------------------------------------------------------------------
    def device_dict(d: Any) -> dict[str, Any]:
        return {"fingerprint": d.fingerprint, "name": d.name, "public_key": d.public_key_b64,
                "registered_utc": d.registered_utc_s, "revoked_utc": d.revoked_utc_s,
                "revoked_reason": d.revoked_reason}

    @app.get(f"{ADMIN_PREFIX}/devices", responses=S.answers(200, S.DeviceList, 401))
    async def list_devices(request: Request) -> JSONResponse:
        operator(request)
        devices = await run_in_threadpool(svc.db.list_devices)
        return JSONResponse({"devices": [device_dict(d) for d in devices]})

    @app.post(f"{ADMIN_PREFIX}/devices", openapi_extra=S.DEVICE_BODY,
              responses={200: {"model": S.DeviceModel, "description": "already registered"},
                         **S.answers(201, S.DeviceModel, 401)})
    async def add_device(request: Request) -> JSONResponse:
        operator(request)
        body = await _json_body(request, limits.max_json_bytes)
        if not isinstance(body, dict) or not isinstance(body.get("public_key"), str) \
                or not isinstance(body.get("name"), str):
            raise RefusedError(400, ErrorCode.MALFORMED,
                          "body must be {\"name\": str, \"public_key\": b64 raw or PEM}")
        rec, created = await run_in_threadpool(ingest.register_device, body["public_key"],
                                               body["name"])
        return JSONResponse(device_dict(rec), status_code=201 if created else 200)

    @app.post(f"{ADMIN_PREFIX}/devices/{{fp}}/revoke", openapi_extra=S.REVOKE_BODY,
              responses=S.answers(200, S.DeviceModel, 401, 404))
    async def revoke_device(fp: str, request: Request) -> JSONResponse:
        operator(request)
        body = await _json_body(request, limits.max_json_bytes)
        reason = body.get("reason", "") if isinstance(body, dict) else None
        if not isinstance(reason, str):
            raise RefusedError(400, ErrorCode.MALFORMED, "body must be {} or {\"reason\": str},"
                               f" got {json.dumps(body)[:80]}")
        rec = await run_in_threadpool(ingest.revoke_device, fp, reason)
        return JSONResponse(device_dict(rec))

    @app.get(f"{ADMIN_PREFIX}/votes", responses=S.answers(200, S.VoteCounts, 401))
    async def vote_counts(request: Request) -> JSONResponse:
        operator(request)
        counts = await run_in_threadpool(svc.vote_counts)
        pending = await run_in_threadpool(svc.db.pending_evaluations)
        return JSONResponse({"counts": dict(counts), "evaluations_pending": pending})

    @app.get(f"{ADMIN_PREFIX}/votes/{{z}}/{{x}}/{{y}}",
             responses=S.answers(200, S.TileVote, 401, 404))
    async def tile_vote(z: int, x: int, y: int, request: Request) -> JSONResponse:
        """One tile's vote and what the serving store holds for it now (a CONFLICT tile is
        not served as trusted: `serving` is the base imagery or the earlier trusted version,
        `withdrawn` the publication that was stopped)."""
        operator(request)
        try:
            tile = TileId(z, x, y)
        except ValueError as exc:
            raise RefusedError(404, ErrorCode.NOT_FOUND, f"no tile {z}/{x}/{y}: {exc}") from None
        vote = await run_in_threadpool(svc.db.get_vote, tile)
        if vote is None:
            raise RefusedError(404, ErrorCode.NOT_FOUND, f"no candidates for tile {tile.path()}")
        now = await run_in_threadpool(served, svc.serving, tile)
        try:
            evidence = json.loads(vote.evidence_json)
        except ValueError:
            evidence = {}
        return JSONResponse({"tile": tile.path(), "status": str(vote.status),
                             "flights": vote.flights, "devices": vote.devices,
                             "reason": evidence.get("reason"),
                             "trusted_sha256": vote.trusted_sha256,
                             "published_sha256": vote.served_sha256,
                             "withdrawn_sha256": evidence.get("withdrawn"),
                             "serving": now.to_dict()})

    body_limits = {f"{API_PREFIX}/sessions/": limits.max_batch_body_bytes}
    return BodyLimitMiddleware(app, body_limits, default=max(limits.max_json_bytes, 1 << 20))


async def _read_batch(request: Request, limits: Any, remote: str
                      ) -> tuple[bytes, str, dict[str, bytes]]:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise RefusedError(400, ErrorCode.MALFORMED,
                      f"a batch is multipart/form-data, got {ctype or 'no content type'!r}")
    try:
        form = await request.form(max_files=limits.max_tiles_per_batch + 2, max_fields=4,
                                  max_part_size=limits.max_manifest_bytes)
    except StarletteHTTPException as exc:  # the multipart parser's refusals
        detail = str(exc.detail)
        # too many tile files or a part over its size: too large; too many other fields: a
        # malformed batch (it has manifest and signature fields and tile files, nothing else)
        status = 413 if ("Too many files" in detail or "maximum size" in detail) else 400
        log.warning("refused %d: multipart: %s (%s)", status, detail, remote)
        raise RefusedError(status, ErrorCode.TOO_LARGE if status == 413 else ErrorCode.MALFORMED,
                      f"multipart body refused: {detail}") from None
    try:
        manifest = await _part_bytes(form.get("manifest"), limits.max_manifest_bytes,
                                     "manifest")
        signature = (await _part_bytes(form.get("signature"), 1024, "signature")).decode(
            "ascii", "replace").strip()
        tiles: dict[str, bytes] = {}
        for key, part in form.multi_items():
            if key in ("manifest", "signature"):
                continue
            if key != "tile" or not isinstance(part, UploadFile):
                raise RefusedError(400, ErrorCode.MALFORMED,
                              f"unexpected part {key!r}; a batch has manifest, signature and "
                              "tile files")
            name = part.filename or ""
            if not _TILE_NAME.match(name):
                raise RefusedError(400, ErrorCode.MALFORMED,
                              f"tile part file name must be <sha256>.jpg, got {name[:80]!r}")
            if name in tiles:
                raise RefusedError(400, ErrorCode.MALFORMED, f"tile part {name} sent twice")
            tiles[name] = await _part_bytes(part, limits.max_tile_bytes, f"tile {name}")
        return manifest, signature, tiles
    finally:
        await form.close()


async def _part_bytes(part: Any, limit: int, what: str) -> bytes:
    if part is None:
        raise RefusedError(400, ErrorCode.MALFORMED, f"the batch has no {what} part")
    if isinstance(part, UploadFile):
        data = await part.read(limit + 1)
    else:
        data = str(part).encode("utf-8")
    if len(data) > limit:
        raise RefusedError(413, ErrorCode.TOO_LARGE, f"{what} part over {limit} bytes")
    return data
