"""The local targeting API: real uvicorn on a Unix socket or loopback TCP, real HTTP clients,
and nothing listening anywhere else (REQUIREMENTS T6)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import psutil
import pytest
from pydantic import ValidationError

from terrafix.targeting.api import LocalApiConfig, LocalApiServer

from .helpers import locator

REQ = {"u_px": 960.0, "v_px": 540.0, "pan_deg": 30.0, "tilt_deg": -60.0, "zoom": 3.0,
       "t_ns": int(5e9)}


def _tcp_listeners() -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket this process listens on."""
    return [(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN]


def test_unix_socket_api_answers_and_opens_no_tcp_port(tmp_path: Path) -> None:
    before = set(_tcp_listeners())
    sock = tmp_path / "target.sock"
    server = LocalApiServer(locator(), LocalApiConfig(unix_socket=sock))
    server.start()
    try:
        assert set(_tcp_listeners()) == before  # no new TCP listener at all
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        assert stat.S_ISSOCK(os.stat(sock).st_mode) and mode == 0o660
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                          base_url="http://terrafix") as client:
            r = client.post("/v1/target", json=REQ)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["ok"] and body["target"]["ellipse95"]["semi_major_m"] > 0
            assert body["target"]["slant_range_m"] > 200
            r = client.post("/v1/target", json=dict(REQ, tilt_deg=10.0))
            assert r.status_code == 422 and r.json()["reason"] == "ray_misses_ground"
            r = client.post("/v1/target", json=dict(REQ, zoom="big"))
            assert r.status_code == 400 and r.json()["reason"] == "bad_request"
            r = client.post("/v1/target", json=dict(REQ, u_px=5000.0))
            assert r.status_code == 400 and "outside" in r.json()["detail"]
            assert client.get("/v1/health").json()["solutions_held"] > 0
    finally:
        server.close()
    assert not sock.exists()


def test_tcp_api_listens_on_loopback_only() -> None:
    before = set(_tcp_listeners())
    server = LocalApiServer(locator(), LocalApiConfig(transport="tcp", tcp_port=0))
    server.start()
    try:
        _host, port = server.address
        new = set(_tcp_listeners()) - before
        assert new == {("127.0.0.1", port)}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/target", json=REQ)
        assert r.status_code == 200 and r.json()["ok"]
    finally:
        server.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "localhost.example"])
def test_a_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        LocalApiConfig(transport="tcp", tcp_port=8080, tcp_host=host)


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(ValidationError, match="transport"):
        LocalApiConfig(transport="udp")
