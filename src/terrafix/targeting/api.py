"""The local targeting API: HTTP over a Unix domain socket (default) or TCP on loopback only.

Why a Unix socket by default (REQUIREMENTS T6, "no listening port reachable from outside"): a
Unix socket has no network address at all, so no interface, route or firewall mistake can
expose it; who may ask is decided by the socket file's owner and mode (0660: the targeting
software's group), and it cannot collide with another program's port. TCP on 127.0.0.1 / ::1
is offered for targeting software that cannot speak HTTP over a Unix socket; any other host is
refused at configuration time.

Endpoints (JSON):
- POST /v1/target {"u_px", "v_px", "pan_deg", "tilt_deg", "zoom", "roll_deg"?, "t_ns"?,
  "gimbal_frame"?} -> 200 {"ok": true, "target": TargetFix.record()}; a refusal -> 422
  {"ok": false, "reason": RefusalReason, "detail"}; a bad request -> 400 {"ok": false,
  "reason": "bad_request", "detail"}. t_ns is the exposure time on the companion's monotonic
  clock (GET /v1/clock gives "now" on it); omitted: the latest pose.
- GET /v1/health -> {"ok": true, "solutions_held", "latest_t_ns"}.
- GET /v1/clock -> {"mono_ns"}.

The server is uvicorn (a real HTTP/1.1 server) on its own thread; answers are computed on the
event loop (a request is ~0.3 ms of numpy, shorter than a thread hand-off).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import orjson
import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from terrafix.targeting.errors import TargetingError, TargetInputError, TargetRefusedError
from terrafix.targeting.geometry import GimbalFrame
from terrafix.targeting.locate import TargetLocator, TargetRequest

log = logging.getLogger(__name__)


class LocalApiConfig(BaseModel):
    """Where the API listens: `transport` "unix" (the socket file `unix_socket`, default) or
    "tcp" (`tcp_host`:`tcp_port`, loopback only; port 0 lets the OS choose)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    transport: Literal["unix", "tcp"] = "unix"
    unix_socket: Path = Path("/run/terrafix/target.sock")
    socket_mode: int = Field(0o660, ge=0, le=0o777)
    tcp_host: str = "127.0.0.1"
    tcp_port: int = Field(8790, ge=0, le=65535)

    @model_validator(mode="after")
    def _loopback_only(self) -> LocalApiConfig:
        if self.transport == "tcp":
            try:
                loopback = ipaddress.ip_address(self.tcp_host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError(f"tcp_host must be a loopback address (127.0.0.1 or ::1), "
                                 f"got {self.tcp_host!r}: nothing may listen outside "
                                 "(REQUIREMENTS T6)")
        return self


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    u_px: float
    v_px: float
    pan_deg: float
    tilt_deg: float
    zoom: float
    roll_deg: float = 0.0
    t_ns: int | None = None
    gimbal_frame: GimbalFrame | None = None


def _answer(locator: TargetLocator, raw: bytes) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON object) of one POST /v1/target body."""
    try:
        body = _Body.model_validate_json(raw)
    except ValidationError as exc:
        return 400, {"ok": False, "reason": "bad_request",
                     "detail": exc.errors(include_url=False, include_input=False)}
    req = TargetRequest(body.u_px, body.v_px, body.pan_deg, body.tilt_deg, body.zoom,
                        body.roll_deg, body.t_ns, body.gimbal_frame)
    try:
        fix = locator.locate(req)
    except TargetRefusedError as exc:
        return 422, {"ok": False, "reason": exc.reason, "detail": exc.detail}
    except (TargetInputError, TargetingError) as exc:
        return 400, {"ok": False, "reason": "bad_request", "detail": str(exc)}
    return 200, {"ok": True, "target": fix.record()}


ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


def build_app(locator: TargetLocator) -> ASGIApp:
    """The ASGI application over a locator. A bare ASGI callable rather than a framework:
    three fixed routes, and a framework's per-request objects cost more than the answer
    itself on a loaded companion."""

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                  send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        chunks = []
        while True:
            event = await receive()
            chunks.append(event.get("body", b""))
            if not event.get("more_body", False):
                break
        if path == "/v1/target" and method == "POST":
            status, obj = _answer(locator, b"".join(chunks))
        elif path == "/v1/health" and method == "GET":
            status, obj = 200, {"ok": True, "solutions_held": len(locator.history),
                                "latest_t_ns": locator.history.latest_t_ns()}
        elif path == "/v1/clock" and method == "GET":
            status, obj = 200, {"mono_ns": time.monotonic_ns()}
        elif path in ("/v1/target", "/v1/health", "/v1/clock"):
            status, obj = 405, {"ok": False, "reason": "method_not_allowed", "detail": method}
        else:
            status, obj = 404, {"ok": False, "reason": "not_found", "detail": path}
        payload = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return app


class LocalApiServer:
    """uvicorn serving `build_app(locator)` on a Unix socket or loopback TCP, on a thread."""

    def __init__(self, locator: TargetLocator, config: LocalApiConfig) -> None:
        self.config = config
        self._app = build_app(locator)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def _bind(self) -> socket.socket:
        cfg = self.config
        if cfg.transport == "unix":
            path = Path(cfg.unix_socket)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_socket():
                path.unlink()  # a stale socket of an earlier run
            elif path.exists():
                raise TargetingError(f"{path} exists and is not a socket: refusing to replace "
                                     "it")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            os.chmod(path, cfg.socket_mode)
        else:
            family = socket.AF_INET6 if ":" in cfg.tcp_host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((cfg.tcp_host, cfg.tcp_port))
        sock.listen(128)
        return sock

    @property
    def address(self) -> str | tuple[str, int]:
        """The Unix socket path, or the bound (host, port)."""
        if self._sock is None:
            raise TargetingError("the local API is not started")
        if self.config.transport == "unix":
            return str(self.config.unix_socket)
        host, port = self._sock.getsockname()[:2]
        return host, port

    def start(self, timeout_s: float = 10.0) -> None:
        self._sock = self._bind()
        # httptools + uvloop: the C HTTP parser and event loop (h11 on asyncio costs several
        # times more per request on a loaded companion)
        cfg = uvicorn.Config(self._app, log_level="warning", access_log=False,
                             lifespan="off", timeout_keep_alive=30, http="httptools",
                             loop="uvloop")
        self._server = uvicorn.Server(cfg)
        sock = self._sock
        self._thread = threading.Thread(target=lambda: self._server.run(sockets=[sock]),
                                        name="target-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise TargetingError("the local targeting API did not start")
            time.sleep(0.01)
        log.info("targeting API listening on %s", self.address)

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._sock is not None:
            self._sock.close()
        if self.config.transport == "unix":
            path = Path(self.config.unix_socket)
            if path.is_socket():
                path.unlink()
