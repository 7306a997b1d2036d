"""Values of the wrong JSON type are refused by the real ground server (TLS, loopback, both
backends) with the field named, even when the message is correctly signed: a JSON `true`
where the protocol version or another integer is expected (Python's bool is an int, so
`"v": true` used to pass as version 1), a float version, NaN/Infinity constants, and bodies
nested too deep for the JSON parser (which used to answer 500)."""

from __future__ import annotations

import json
import ssl

import httpx
import pytest

from terrafix.upload.protocol import API_PREFIX, b64, canonical_bytes

from .conftest import Ground, upload_tiles


def _http(ground: Ground) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(ground.tls.ca_cert)),
                        timeout=30)


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_a_session_certificate_whose_version_is_not_the_integer_1_is_refused(
        ground: Ground, version: object) -> None:
    key = ground.device("a1")
    with ground.client(key, "f1") as c:
        cert = c.certificate.to_dict()
        cert["v"] = version
        body = {"certificate": cert, "signature": b64(key.sign(canonical_bytes(cert)))}
        resp = c._c.post(f"{API_PREFIX}/sessions", json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "malformed"
    assert "certificate version" in resp.json()["detail"]
    assert ground.written() == (0, 0, 0)


def test_the_well_formed_certificate_is_still_accepted(ground: Ground) -> None:
    """The control of the test above: the same body with "v": 1 opens a session."""
    key = ground.device("a1")
    with ground.client(key, "f1") as c:
        cert = c.certificate.to_dict()
        assert type(cert["v"]) is int
        body = {"certificate": cert, "signature": b64(key.sign(canonical_bytes(cert)))}
        resp = c._c.post(f"{API_PREFIX}/sessions", json=body)
    assert resp.status_code == 201, resp.text
    assert ground.svc.db.session_count() == 1


@pytest.mark.parametrize(("field", "value", "named"), [
    ("v", True, "manifest version"),
    ("batch_seq", True, "manifest batch_seq"),
    ("batch_seq", 1 << 40, "manifest batch_seq"),
    ("tile.z", True, "tile z"),
    ("tile.x", False, "tile x"),
    ("tile.size", True, "tile size"),
    ("tile.sigma_m", True, "tile sigma_m"),
    ("tile.change_score", True, "tile change_score"),
    ("tile.change_score", 7.5, "tile change_score"),
])
def test_a_signed_manifest_with_a_bool_or_out_of_range_integer_is_refused(
        ground: Ground, field: str, value: object, named: str) -> None:
    with ground.client(ground.device("a1"), "f1") as c:
        c.open()
        manifest, _sig, files = c.batch_parts(upload_tiles(1))
        doc = json.loads(manifest)
        if field.startswith("tile."):
            doc["tiles"][0][field.removeprefix("tile.")] = value
        else:
            doc[field] = value
        body = canonical_bytes(doc)  # signed by the session key: only the types are wrong
        resp = c.post_parts(body, b64(c.session_key.sign(body)), files)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "malformed"
    assert named in resp.json()["detail"]
    assert ground.written()[:2] == (0, 0)


def test_nan_and_deeply_nested_bodies_are_refused_not_a_server_error(ground: Ground) -> None:
    key = ground.device("a1")
    with ground.client(key, "f1") as c:
        sid = c.open()
        manifest, _sig, files = c.batch_parts(upload_tiles(1))
        # a signed manifest carrying NaN (Python's json reads it unless told not to)
        nan_manifest = manifest.replace(b'"change_score":null', b'"change_score":NaN')
        assert nan_manifest != manifest
        resp = c.post_parts(nan_manifest, b64(c.session_key.sign(nan_manifest)), files)
        assert resp.status_code == 400 and "NaN is not a JSON number" in resp.json()["detail"]
        # a signed manifest nested deeper than the parser goes
        deep = b'{"v":1,"tiles":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        resp = c.post_parts(deep, b64(c.session_key.sign(deep)), files)
        assert resp.status_code == 400 and "nested too deeply" in resp.json()["detail"]
    with _http(ground) as h:
        for body in (b'{"certificate": {"v": NaN}, "signature": "x"}',
                     b'{"certificate": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
                     b'{"signature": Infinity}'):
            for path in (f"{API_PREFIX}/sessions", f"{API_PREFIX}/sessions/{sid}/close"):
                r = h.post(f"{ground.url}{path}", content=body,
                           headers={"Content-Type": "application/json"})
                assert r.status_code == 400, (path, body[:40], r.status_code, r.text[:200])
                assert r.json()["error"] == "malformed"
        # a certificate with a field this protocol version does not define
        cert = c.certificate.to_dict()
        cert["extra"] = [[[]]]
        signed = {"certificate": cert, "signature": b64(key.sign(canonical_bytes(cert)))}
        r = h.post(f"{ground.url}{API_PREFIX}/sessions", json=signed)
        assert r.status_code == 400 and "unknown fields ['extra']" in r.json()["detail"]
    assert ground.written()[:2] == (0, 0)
    assert ground.svc.db.session_count() == 1


def test_the_inventory_takes_no_bool_for_a_tile_coordinate(ground: Ground) -> None:
    """The provider routes of the ground server: pydantic's lax mode read [true, 0, 0] as
    tile 1/0/0; strict integers refuse it (422 naming the position), integers still work."""
    key = {"X-API-Key": ground.cfg.provider_api_keys[0]}
    with _http(ground) as h:
        for bad in ([True, 0, 0], [19, False, 0], [19, 0, 1.0], [25, 0, 0], [1, 2, 0]):
            r = h.post(f"{ground.url}/v1/inventory", json={"tiles": [bad]}, headers=key)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["detail"][0]["loc"][:3] == ["body", "tiles", 0], r.text
        r = h.post(f"{ground.url}/v1/inventory", json={"tiles": [[1, 1, 0]]}, headers=key)
        assert r.status_code == 200 and r.json()["missing"] == [[1, 1, 0]]
