"""Provisioning from the satellite-provider API: a real uvicorn server over TLS on loopback."""

from __future__ import annotations

import email.utils
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import shapely
from fastapi import FastAPI, Request
from fastapi.responses import Response

from terrafix.geo.tiles import TileId, tile_bounds
from terrafix.tiles import TileStore, open_store
from terrafix.tiles.errors import ProviderError
from terrafix.tiles.provider_server import create_app, serve_in_thread
from terrafix.tiles.provision.provider import (
    ProviderClient,
    _retry_after_s,
    provision_from_provider,
)
from terrafix.tiles.tls import TlsFiles, make_test_pki
from tests.tiles.conftest import block_of_tiles, new_tiles

KEY = "k-" + "x" * 30
TOKEN = "t-" + "y" * 30


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def provider_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TileId]]:
    root = tmp_path_factory.mktemp("provider")
    tiles = block_of_tiles(6, 5)
    with open_store(root) as store:
        store.put_many(new_tiles(tiles, source="provider-sat"))
    return root, tiles


def _area(tiles: list[TileId]) -> shapely.Geometry:
    boxes = [shapely.box(*tile_bounds(t)) for t in tiles]
    return shapely.union_all(boxes).buffer(-1e-7)


@contextmanager
def _server(root: Path, pki: TlsFiles,
            tweak: Callable[[FastAPI], None] | None = None) -> Iterator[tuple[str, TileStore]]:
    store = open_store(root, read_only=True)
    app = create_app(store, api_keys=[KEY], bearer_tokens=[TOKEN])
    if tweak:
        tweak(app)
    try:
        with serve_in_thread(app, tls_cert=pki.server_cert, tls_key=pki.server_key) as url:
            yield url, store
    finally:
        store.close()


def test_provisioning_over_tls_copies_every_tile_byte_for_byte(
        provider_root, pki: TlsFiles, tmp_path: Path) -> None:
    root, tiles = provider_root
    with _server(root, pki) as (url, server_store):
        assert url.startswith("https://127.0.0.1:")
        client_store = open_store(tmp_path / "client")
        with ProviderClient(url, api_key=KEY, ca_file=pki.ca_cert) as client:
            rep = provision_from_provider(client_store, client, _area(tiles), [18])
        assert rep.tiles_written == len(tiles) and not rep.tiles_unavailable
        for t in tiles:
            assert client_store.read_tile(t) == server_store.read_tile(t)
            assert client_store.get_record(t).source == "provider-sat"


def test_bearer_token_works_and_bad_credentials_fail_fast(provider_root, pki: TlsFiles) -> None:
    root, tiles = provider_root
    with _server(root, pki) as (url, _store):
        with ProviderClient(url, bearer_token=TOKEN, ca_file=pki.ca_cert) as client:
            available, missing = client.inventory(tiles[:3])
            assert [a.tile for a in available] == tiles[:3] and not missing
        for kwargs in ({"api_key": "wrong"}, {"bearer_token": "wrong"}):
            with ProviderClient(url, ca_file=pki.ca_cert, **kwargs) as client:
                with pytest.raises(ProviderError, match="refused the credentials") as info:
                    client.inventory(tiles[:1])
                assert info.value.status_code == 401 and client.retries == 0


def test_a_server_outside_the_trusted_ca_fails_fast(provider_root, pki: TlsFiles,
                                                    tmp_path: Path) -> None:
    root, tiles = provider_root
    other = make_test_pki(tmp_path / "other")
    with _server(root, pki) as (url, _store):
        with ProviderClient(url, api_key=KEY, ca_file=other.ca_cert) as client:
            with pytest.raises(ProviderError, match="TLS"):
                client.inventory(tiles[:1])
            assert client.retries == 0
        # and plain HTTP to a TLS port is not silently accepted either
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https", "http") + "/v1/health", timeout=5)


def test_inventory_is_limited_to_5000_tiles_per_call(provider_root, pki: TlsFiles) -> None:
    root, _tiles = provider_root
    too_many = [[20, i, 0] for i in range(5001)]
    with _server(root, pki) as (url, _store):
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        resp = httpx.post(f"{url}/v1/inventory", json={"tiles": too_many},
                          headers={"X-API-Key": KEY}, verify=ctx, timeout=30)
        assert resp.status_code == 413 and "5000" in resp.text
        resp = httpx.post(f"{url}/v1/inventory", json={"tiles": too_many[:5000]},
                          headers={"X-API-Key": KEY}, verify=ctx, timeout=30)
        assert resp.status_code == 200 and len(resp.json()["missing"]) == 5000
        with ProviderClient(url, api_key=KEY, ca_file=pki.ca_cert) as client, \
                pytest.raises(ProviderError, match="at most 5000"):
            client.inventory([TileId(20, i, 0) for i in range(5001)])


def test_transient_errors_are_retried_with_backoff_honouring_retry_after(
        provider_root, pki: TlsFiles, tmp_path: Path) -> None:
    root, tiles = provider_root
    failures: dict[str, int] = {}
    lock = threading.Lock()

    def flaky(app: FastAPI) -> None:
        @app.middleware("http")
        async def fail_twice(request: Request, call_next):  # type: ignore[no-untyped-def]
            with lock:
                n = failures.get(request.url.path, 0)
                failures[request.url.path] = n + 1
            if n == 0:
                return Response(status_code=503, headers={"Retry-After": "0"})
            if n == 1:
                return Response(status_code=502)
            return await call_next(request)

    waits: list[float] = []
    with _server(root, pki, flaky) as (url, _store):
        client_store = open_store(tmp_path / "client")
        client = ProviderClient(url, api_key=KEY, ca_file=pki.ca_cert, backoff_s=0.01,
                                sleep=waits.append)
        with client:
            rep = provision_from_provider(client_store, client, _area(tiles[:4]), [18])
    assert rep.tiles_written == 4
    # every request (1 inventory + 4 tiles) failed twice before succeeding
    assert rep.retries == 10 and len(waits) == 10
    assert waits.count(0.0) == 5  # Retry-After: 0 honoured exactly
    backoff = [w for w in waits if w > 0]
    assert len(backoff) == 5 and all(0.01 <= w <= 0.02 for w in backoff)  # 2nd attempt, jitter


def test_an_interrupted_run_resumes_without_downloading_twice(
        provider_root, pki: TlsFiles, tmp_path: Path) -> None:
    root, tiles = provider_root
    state = {"gets": 0, "broken_after": 12}
    lock = threading.Lock()

    def breaks_down(app: FastAPI) -> None:
        @app.middleware("http")
        async def outage(request: Request, call_next):  # type: ignore[no-untyped-def]
            if request.method == "GET" and request.url.path.startswith("/v1/tiles/"):
                with lock:
                    state["gets"] += 1
                    broken = state["broken_after"] is not None and \
                        state["gets"] > state["broken_after"]
                if broken:
                    return Response(status_code=500)
            return await call_next(request)

    client_store = open_store(tmp_path / "client")
    with _server(root, pki, breaks_down) as (url, _store):
        client = ProviderClient(url, api_key=KEY, ca_file=pki.ca_cert, max_retries=1,
                                sleep=lambda s: None)
        with client, pytest.raises(ProviderError, match="HTTP 500"):
            provision_from_provider(client_store, client, _area(tiles), [18], workers=1, batch=8)
        stored = client_store.backend.totals()[0]
        assert stored == 8  # the first batch was committed, the second failed
        state["broken_after"] = None
        state["gets"] = 0
        with ProviderClient(url, api_key=KEY, ca_file=pki.ca_cert) as client:
            rep = provision_from_provider(client_store, client, _area(tiles), [18])
    assert rep.tiles_already_present == stored
    assert rep.tiles_written == len(tiles) - stored
    assert state["gets"] == len(tiles) - stored
    assert client_store.backend.totals()[0] == len(tiles)


def test_tiles_the_provider_lacks_are_reported(provider_root, pki: TlsFiles,
                                               tmp_path: Path) -> None:
    root, tiles = provider_root
    beyond = [TileId(t.z, t.x + 6, t.y) for t in tiles[:6]]
    with _server(root, pki) as (url, _store), \
            ProviderClient(url, api_key=KEY, ca_file=pki.ca_cert) as client:
        rep = provision_from_provider(open_store(tmp_path / "c"), client,
                                      _area(tiles[:6] + beyond), [18])
    assert set(rep.tiles_unavailable) == set(beyond) and rep.tiles_written == 6


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _retry_after_s("7") == 7.0
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25.0 < _retry_after_s(when) <= 30.0
    assert _retry_after_s("soon") is None and _retry_after_s(None) is None


def test_the_cli_provisions_from_the_provider(provider_root, pki: TlsFiles,
                                              tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from terrafix.app.cli import app as root_app

    root, tiles = provider_root
    w, s, e, n = _area(tiles[:4]).bounds
    with _server(root, pki) as (url, _store):
        result = CliRunner().invoke(root_app, [
            "tiles", "provision", "provider", url, "--root", str(tmp_path / "cli"),
            "--bbox", f"{w},{s},{e},{n}", "--zoom", "18", "--ca-file", str(pki.ca_cert)],
            env={"TERRAFIX_PROVIDER_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    assert "4 tiles written" in result.output
    with open_store(tmp_path / "cli", read_only=True) as store:
        assert {r.tile for r in store.backend.iter_records()} == set(tiles[:4])
