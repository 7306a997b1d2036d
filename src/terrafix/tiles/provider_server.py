"""The satellite-provider HTTP API, served from a tile store (FastAPI + uvicorn).

The same API the real provider offers, so provisioning, tests and the demo talk to a real
server over real HTTP(S):

- `POST /v1/inventory` with `{"tiles": [[z, x, y], ...]}` (at most 5000 per call) answers which
  tiles are available, with SHA-256, capture date, source and size, and which are missing;
- `GET /v1/tiles/{z}/{x}/{y}.jpg` returns the JPEG (hash-checked by the store before it
  leaves) with `X-Tile-SHA256`, `X-Capture-Date` and `X-Tile-Source` headers;
- `GET /v1/health` (no credentials) for probes.

Every other route needs an API key (`X-API-Key`) or a bearer token (`Authorization: Bearer`),
compared in constant time. The ground-side upload service extends this app (`create_app` is
the factory to build on).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, StrictInt

from terrafix.geo.tiles import MAX_ZOOM, TileId
from terrafix.tiles.errors import CorruptTileError, StoreConfigError, TileNotFoundError
from terrafix.tiles.store import TileStore

INVENTORY_LIMIT = 5000
API_KEY_HEADER = "X-API-Key"


Zoom = Annotated[StrictInt, Field(ge=0, le=MAX_ZOOM)]
Index = Annotated[StrictInt, Field(ge=0)]


class InventoryRequest(BaseModel):
    """Strict integers: a JSON `true` is not tile coordinate 1 (pydantic's lax mode would take
    it for one)."""

    tiles: list[tuple[Zoom, Index, Index]] = Field(default_factory=list)


class ErrorDetail(BaseModel):
    """What the provider API's refusals carry (FastAPI's HTTPException body)."""

    detail: str


class InventoryItem(BaseModel):
    z: int
    x: int
    y: int
    sha256: str
    capture_date: str
    source: str
    size_bytes: int


class InventoryResponse(BaseModel):
    available: list[InventoryItem]
    missing: list[tuple[int, int, int]]


def _credential_checker(api_keys: Collection[str], bearer_tokens: Collection[str]):
    keys = [k.encode() for k in api_keys]
    tokens = [t.encode() for t in bearer_tokens]

    def check(request: Request) -> None:
        key = request.headers.get(API_KEY_HEADER)
        if key is not None and any(hmac.compare_digest(key.encode(), k) for k in keys):
            return
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token and any(
                hmac.compare_digest(token.strip().encode(), t) for t in tokens):
            return
        raise HTTPException(status_code=401, detail="missing or invalid API key / bearer token",
                            headers={"WWW-Authenticate": "Bearer"})

    return check


def create_app(store: TileStore, *, api_keys: Collection[str] = (),
               bearer_tokens: Collection[str] = ()) -> FastAPI:
    """The provider API over `store` (see module docstring); at least one credential needed."""
    if not api_keys and not bearer_tokens:
        raise StoreConfigError("the provider server needs at least one API key or bearer token")
    app = FastAPI(title="terrafix satellite provider", version="1")
    app.state.store = store
    auth = Depends(_credential_checker(api_keys, bearer_tokens))

    @app.get("/v1/health")
    def health() -> dict[str, object]:
        count, _ = store.backend.totals()
        return {"status": "ok", "tiles": count}

    @app.post("/v1/inventory", dependencies=[auth], responses={
        400: {"model": ErrorDetail, "description": "a body that does not parse"},
        401: {"model": ErrorDetail, "description": "missing or invalid credentials"},
        413: {"model": ErrorDetail, "description": f"more than {INVENTORY_LIMIT} tiles"}})
    def inventory(body: InventoryRequest) -> InventoryResponse:
        if len(body.tiles) > INVENTORY_LIMIT:
            raise HTTPException(status_code=413, detail=(
                f"inventory requests are limited to {INVENTORY_LIMIT} tiles, got "
                f"{len(body.tiles)}"))
        available: list[InventoryItem] = []
        missing: list[tuple[int, int, int]] = []
        for i, (z, x, y) in enumerate(body.tiles):
            try:
                t = TileId(z, x, y)
            except ValueError as exc:  # x or y beyond 2^z - 1: in FastAPI's own 422 shape
                raise RequestValidationError([{"loc": ("body", "tiles", i), "msg": str(exc),
                                               "type": "value_error", "input": [z, x, y]}]
                                             ) from exc
            rec = store.get_record(t)
            if rec is None:
                missing.append((z, x, y))
            else:
                available.append(InventoryItem(
                    z=z, x=x, y=y, sha256=rec.sha256, capture_date=rec.capture_date.isoformat(),
                    source=rec.source, size_bytes=rec.size_bytes))
        return InventoryResponse(available=available, missing=missing)

    @app.get("/v1/tiles/{z}/{x}/{y}.jpg", dependencies=[auth], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}, "description": "the tile's JPEG"},
                        401: {"model": ErrorDetail, "description": "missing or invalid "
                              "credentials"},
                        404: {"model": ErrorDetail, "description": "no such tile here"}})
    def tile(z: Annotated[int, FastApiPath(ge=0, le=MAX_ZOOM)],
             x: Annotated[int, FastApiPath(ge=0)],
             y: Annotated[int, FastApiPath(ge=0)]) -> Response:
        try:
            t = TileId(z, x, y)
        except ValueError as exc:  # x or y beyond 2^z - 1: a tile that does not exist
            raise HTTPException(status_code=404, detail=f"no tile {z}/{x}/{y}: {exc}") from exc
        rec = store.get_record(t)
        if rec is None:
            raise HTTPException(status_code=404, detail=f"no tile {z}/{x}/{y}")
        try:
            data = store.read_tile(t, allow_rejected=True)
        except (TileNotFoundError, CorruptTileError) as exc:
            raise HTTPException(status_code=404, detail=f"tile {z}/{x}/{y} unavailable: {exc}") \
                from exc
        return Response(content=data, media_type="image/jpeg", headers={
            "X-Tile-SHA256": rec.sha256, "X-Capture-Date": rec.capture_date.isoformat(),
            "X-Tile-Source": rec.source, "ETag": f'"{rec.sha256}"'})

    return app


@contextmanager
def serve_in_thread(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0,
                    tls_cert: Path | None = None, tls_key: Path | None = None,
                    startup_timeout_s: float = 20.0) -> Iterator[str]:
    """Run uvicorn in a background thread; yields the base URL (port 0 picks a free one)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            ssl_certfile=str(tls_cert) if tls_cert else None,
                            ssl_keyfile=str(tls_key) if tls_key else None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="provider-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise StoreConfigError(f"provider server did not start on {host}:{port}")
        time.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if tls_cert else "http"
    try:
        yield f"{scheme}://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
