"""A scriptable ground service for the uploader's tests and benchmark (not the production one).

A real FastAPI app served by uvicorn over TLS (`serve_in_thread`), implementing the protocol's
happy path of `terrafix.upload.protocol` with its checks: the session certificate must verify
under a registered device key and be within its validity, every manifest must verify under the
session key, every tile part must hash to its manifest entry. Tiles are stored on disk by
content hash (`<root>/tiles/<sha256>.jpg`, atomic rename), so a re-sent tile is a `duplicate`
and never stored twice; every store is appended to `<root>/stored.jsonl`, which is how tests
count "stored twice" independently of the server's own duplicate check.

Misbehaviour on purpose, scripted per request (`GroundDouble.script_batches(...)` /
`script_sessions(...)`, consumed in order; an empty script is the happy path):
  {"status": 503, "retry_after": "3"}      answer that status (and header), store nothing
  {"partial": 2}                           store the first 2 tiles, answer "retry" for the rest
  {"omit_after": 2}                        store the first 2, leave the rest out of the answer
  {"drop": "before"}                       read part of the body, then cut the connection
  {"drop": "after_store"}                  store everything, then cut the connection mid-answer
  {"delay_s": 0.5}                         wait, then answer normally (kill -9 windows)
Persistent: `reject_sha` (those tiles are answered "rejected"), `revoked` devices (403).
A wrong certificate is a server started with another CA's certificate (`make_test_pki`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import threading
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from terrafix.upload.protocol import (
    API_PREFIX,
    BatchManifest,
    ErrorCode,
    ProtocolError,
    SessionCertificate,
    TileOutcomeStatus,
    canonical_bytes,
    fingerprint,
    verify,
)

_DISPOSITION = re.compile(rb'form-data;\s*name="([^"]*)"(?:;\s*filename="([^"]*)")?', re.I)


def parse_multipart(body: bytes, content_type: str) -> dict[str, list[tuple[str | None, bytes]]]:
    """multipart/form-data -> field name -> [(filename, bytes)], with bytes-level splitting
    (starlette's form parser walks the body in Python and was the server's main cost)."""
    m = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
    if not content_type.startswith("multipart/form-data") or m is None:
        raise ValueError(f"expected multipart/form-data with a boundary, got {content_type!r}")
    delim = b"--" + m.group(1).encode("ascii")
    out: dict[str, list[tuple[str | None, bytes]]] = {}
    chunks = body.split(delim)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise ValueError("multipart body is truncated (no closing boundary)")
    for chunk in chunks[1:-1]:
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep or not data.endswith(b"\r\n"):
            raise ValueError("malformed multipart part")
        d = _DISPOSITION.search(head)
        if d is None:
            raise ValueError("multipart part without a form-data name")
        name = d.group(1).decode()
        filename = d.group(2).decode() if d.group(2) is not None else None
        out.setdefault(name, []).append((filename, data[:-2]))
    return out


def _error(status: int, code: ErrorCode, detail: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": str(code), "detail": detail}, status_code=status,
                        headers=headers)


class GroundDouble:
    """State of the scriptable server (thread-safe); `app` is the ASGI application."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tiles_dir = self.root / "tiles"
        self.tiles_dir.mkdir(parents=True, exist_ok=True)
        self.devices: dict[str, Ed25519PublicKey] = {}
        self.revoked: set[str] = set()
        self.reject_sha: dict[str, str] = {}
        self.sessions: dict[str, SessionCertificate] = {}
        self.closed_sessions: list[str] = []
        self.batch_script: deque[dict[str, Any]] = deque()
        self.session_script: deque[dict[str, Any]] = deque()
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self.app = self._build()

    # --- scripting ---------------------------------------------------------------------
    def register(self, public_key: Ed25519PublicKey) -> str:
        fp = fingerprint(public_key)
        self.devices[fp] = public_key
        return fp

    def script_batches(self, *actions: dict[str, Any]) -> None:
        self.batch_script.extend(actions)

    def script_sessions(self, *actions: dict[str, Any]) -> None:
        self.session_script.extend(actions)

    def stored_shas(self) -> list[str]:
        """Every store the server made, in order (from the append-only log)."""
        log = self.root / "stored.jsonl"
        if not log.exists():
            return []
        return [json.loads(line)["sha256"] for line in log.read_text().splitlines() if line]

    # --- storage -----------------------------------------------------------------------
    def _store(self, sha: str, data: bytes, session_id: str) -> TileOutcomeStatus:
        path = self.tiles_dir / f"{sha}.jpg"
        with self._lock:
            if path.exists():
                return TileOutcomeStatus.DUPLICATE
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            with open(self.root / "stored.jsonl", "a") as f:
                f.write(json.dumps({"sha256": sha, "session": session_id}) + "\n")
                f.flush()
        return TileOutcomeStatus.ACCEPTED

    # --- the app -----------------------------------------------------------------------
    def _build(self) -> Any:
        app = FastAPI(title="terrafix ground double")
        double = self

        @app.post(API_PREFIX + "/sessions")
        async def start_session(request: Request) -> JSONResponse:
            double.requests.append("session")
            action = double.session_script.popleft() if double.session_script else {}
            if "status" in action:
                headers = {"Retry-After": action["retry_after"]} \
                    if "retry_after" in action else None
                return _error(action["status"], ErrorCode.BUSY, "scripted", headers)
            try:
                body = await request.json()
                cert = SessionCertificate.from_dict(body["certificate"])
                if cert.device_fingerprint in double.revoked:
                    return _error(403, ErrorCode.REVOKED_DEVICE, cert.device_fingerprint)
                key = double.devices.get(cert.device_fingerprint)
                if key is None:
                    return _error(401, ErrorCode.UNKNOWN_DEVICE, cert.device_fingerprint)
                verify(key, body["signature"], canonical_bytes(body["certificate"]),
                       "session certificate")
            except ProtocolError as exc:
                return _error(401, ErrorCode.BAD_SIGNATURE, str(exc))
            except (KeyError, ValueError, TypeError) as exc:
                return _error(400, ErrorCode.MALFORMED, str(exc))
            now = datetime.now(UTC)
            if not cert.not_before_utc <= now <= cert.expires_utc:
                return _error(401, ErrorCode.SESSION_EXPIRED, "certificate not valid now")
            sid = uuid.uuid4().hex
            double.sessions[sid] = cert
            return JSONResponse({"session_id": sid, "expires_utc": cert.expires_utc.isoformat()},
                                status_code=201)

        @app.post(API_PREFIX + "/sessions/{sid}/batches")
        async def batch(sid: str, request: Request) -> JSONResponse:
            action = request.scope.get("terrafix_action", {})
            if "delay_s" in action:
                await asyncio.sleep(action["delay_s"])
            if "status" in action:
                headers = {"Retry-After": action["retry_after"]} \
                    if "retry_after" in action else None
                return _error(action["status"], ErrorCode.BUSY, "scripted", headers)
            cert = double.sessions.get(sid)
            if cert is None:
                return _error(401, ErrorCode.UNKNOWN_SESSION, sid)
            try:
                raw = await request.body()
            except ClientDisconnect:  # the uploader was killed mid-request: nothing stored
                return _error(400, ErrorCode.MALFORMED, "client went away mid-body")
            try:
                fields = parse_multipart(raw, request.headers.get("content-type", ""))
                manifest_bytes = fields["manifest"][0][1]
                sig = fields["signature"][0][1].decode("ascii")
                verify(cert.session_public_key, sig.strip(), manifest_bytes, "batch manifest")
                manifest = BatchManifest.parse(manifest_bytes)
            except ProtocolError as exc:
                return _error(401, ErrorCode.BAD_SIGNATURE, str(exc))
            except (KeyError, ValueError, UnicodeDecodeError) as exc:
                return _error(400, ErrorCode.MALFORMED, f"bad multipart body: {exc}")
            if manifest.session_id != sid or manifest.flight_id != cert.flight_id:
                return _error(400, ErrorCode.MALFORMED, "manifest session/flight mismatch")
            parts = {Path(name or "").stem: data for name, data in fields.get("tile", [])}
            outcomes = []
            limit = action.get("partial", action.get("omit_after"))
            for i, entry in enumerate(manifest.tiles):
                if limit is not None and i >= limit:
                    if "partial" in action:
                        outcomes.append({"sha256": entry.sha256, "status": "retry",
                                         "reason": "scripted partial"})
                    continue
                data = parts.get(entry.sha256)
                if entry.sha256 in double.reject_sha:
                    status, reason = TileOutcomeStatus.REJECTED, double.reject_sha[entry.sha256]
                elif data is None or hashlib.sha256(data).hexdigest() != entry.sha256 \
                        or len(data) != entry.size_bytes:
                    status, reason = TileOutcomeStatus.REJECTED, "bytes do not match manifest"
                else:
                    status, reason = double._store(entry.sha256, data, sid), None
                outcomes.append({"sha256": entry.sha256, "status": str(status),
                                 "reason": reason})
            return JSONResponse({"outcomes": outcomes})

        @app.post(API_PREFIX + "/sessions/{sid}/close")
        async def close(sid: str) -> JSONResponse:
            if sid not in double.sessions:
                return _error(401, ErrorCode.UNKNOWN_SESSION, sid)
            double.closed_sessions.append(sid)
            return JSONResponse({"closed": sid})

        return _Scripted(app, self)


class _Scripted:
    """ASGI wrapper that takes the next batch action and applies the connection drops, which
    an endpoint cannot do (uvicorn closes the connection when the app fails mid-answer)."""

    def __init__(self, app: FastAPI, double: GroundDouble) -> None:
        self.app = app
        self.double = double

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/batches"):
            await self.app(scope, receive, send)
            return
        self.double.requests.append("batch")
        action = self.double.batch_script.popleft() if self.double.batch_script else {}
        scope = dict(scope, terrafix_action=action)
        drop = action.get("drop")
        if drop == "before":
            await receive()  # part of the body, then gone
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"1000"),
                                    (b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"outc', "more_body": True})
            raise ConnectionAbortedError("scripted drop before storing")
        if drop == "after_store":
            async def cut(message: dict) -> None:
                if message["type"] == "http.response.start":
                    headers = [(k, v) for k, v in message["headers"]
                               if k.lower() != b"content-length"]
                    await send(dict(message, headers=[*headers, (b"content-length", b"100000")]))
                elif message["type"] == "http.response.body":
                    await send({"type": "http.response.body", "body": message["body"][:10],
                                "more_body": True})
                    raise ConnectionAbortedError("scripted drop after storing")

            await self.app(scope, receive, cut)
            return
        await self.app(scope, receive, send)
