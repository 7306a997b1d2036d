"""Everything unauthenticated or implausible is refused with its reason, and nothing of it is
written (no session row, no candidate row, no blob file), on both metadata backends, through
a real TLS server."""

from __future__ import annotations

import json
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terrafix.geo.tiles import TileId
from terrafix.ground.client import GroundClientError, OperatorClient, UploadTile
from terrafix.tiles.jpeg import encode_gray
from terrafix.upload.protocol import API_PREFIX

from .conftest import Ground, texture, upload_tiles


def _raw_request(ground: Ground, path: str, content_length: int) -> tuple[int, bytes]:
    """POST headers declaring `content_length` bytes over TLS, send no body, read the answer."""
    host, port = ground.url.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=str(ground.tls.ca_cert))
    with socket.create_connection((host, int(port)), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: "
                     f"{content_length}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _error(resp: httpx.Response) -> str:
    return resp.json()["error"]


def test_unknown_device_is_refused_and_nothing_written(ground: Ground) -> None:
    stranger = Ed25519PrivateKey.generate()  # never registered
    with ground.client(stranger, "f1") as c, pytest.raises(GroundClientError) as err:
        c.open()
    assert err.value.status == 401 and err.value.code == "unknown_device"
    assert ground.written() == (0, 0, 0)


def test_revoked_device_is_refused_at_open_and_mid_session(ground: Ground) -> None:
    key = ground.device("a1")
    other = ground.device("a2")
    with ground.client(other, "f2") as live:
        live.open()
        fp = live.certificate.device_fingerprint
        ground.svc.ingest.revoke_device(fp, "lost in the field")
        resp = live.post_parts(*live.batch_parts(upload_tiles(2)))
        assert resp.status_code == 403 and _error(resp) == "revoked_device"
    with ground.client(key, "f1") as c:
        ground.svc.ingest.revoke_device(c.certificate.device_fingerprint, "test")
        with pytest.raises(GroundClientError) as err:
            c.open()
    assert err.value.status == 403 and err.value.code == "revoked_device"
    assert ground.written()[:2] == (0, 0)
    assert ground.svc.db.session_count() == 1  # only the session opened before revocation


def test_expired_certificate_and_expired_session_are_refused(ground: Ground) -> None:
    key = ground.device("a1")
    past = datetime.now(UTC) - timedelta(hours=3)
    with ground.client(key, "old", not_before=past, valid_for=timedelta(hours=1)) as c, \
            pytest.raises(GroundClientError) as err:
        c.open()
    assert err.value.status == 401 and err.value.code == "session_expired"
    # A session valid when opened, used after its expiry.
    soon = datetime.now(UTC) - timedelta(seconds=58)
    with ground.client(key, "short", not_before=soon, valid_for=timedelta(seconds=60)) as c:
        c.open()
        time.sleep(max(0.0, (c.certificate.expires_utc - datetime.now(UTC)).total_seconds())
                   + 0.2)
        tiles = upload_tiles(1, captured=soon + timedelta(seconds=1))
        resp = c.post_parts(*c.batch_parts(tiles))
    assert resp.status_code == 401 and _error(resp) == "session_expired"
    assert ground.written()[:2] == (0, 0)


def test_certificate_signed_by_another_key_is_refused(ground: Ground) -> None:
    key = ground.device("a1")
    with ground.client(key, "f1") as c:
        forged = c.certificate.sign(Ed25519PrivateKey.generate())
        with pytest.raises(GroundClientError) as err:
            c.open(forged)
    assert err.value.status == 401 and err.value.code == "bad_signature"
    assert ground.written() == (0, 0, 0)


def test_batch_signed_by_another_key_is_refused(ground: Ground) -> None:
    with ground.client(ground.device("a1"), "f1") as c:
        c.open()
        manifest, _, files = c.batch_parts(upload_tiles(3))
        from terrafix.upload.protocol import b64

        wrong = b64(Ed25519PrivateKey.generate().sign(manifest))
        resp = c.post_parts(manifest, wrong, files)
    assert resp.status_code == 401 and _error(resp) == "bad_signature"
    assert "signature does not verify" in resp.json()["detail"]
    assert ground.written()[:2] == (0, 0)


def test_tampered_manifest_is_refused(ground: Ground) -> None:
    with ground.client(ground.device("a1"), "f1") as c:
        c.open()
        manifest, sig, files = c.batch_parts(upload_tiles(2))
        doc = json.loads(manifest)
        doc["tiles"][0]["y"] += 1  # move a tile after signing
        from terrafix.upload.protocol import canonical_bytes

        resp = c.post_parts(canonical_bytes(doc), sig, files)
    assert resp.status_code == 401 and _error(resp) == "bad_signature"
    assert ground.written()[:2] == (0, 0)


def test_tampered_tile_bytes_are_rejected_per_tile(ground: Ground) -> None:
    with ground.client(ground.device("a1"), "f1") as c:
        c.open()
        tiles = upload_tiles(2)
        manifest, sig, files = c.batch_parts(tiles)
        name, _, ctype = files[0][1]
        evil = encode_gray(texture(999))  # other bytes under the signed hash's name
        files[0] = ("tile", (name, evil, ctype))
        resp = c.post_parts(manifest, sig, files)
    assert resp.status_code == 200
    out = resp.json()["outcomes"]
    assert out[0]["status"] == "rejected"
    assert "hash to" in out[0]["reason"] or "bytes" in out[0]["reason"]
    assert out[1]["status"] == "accepted"
    rows, blobs, _ = ground.written()
    assert (rows, blobs) == (1, 1)
    assert not ground.svc.db.known_hashes([name[:-4]])


def test_implausible_georeferencing_is_rejected(ground: Ground) -> None:
    now = datetime.now(UTC)
    good = upload_tiles(1)[0]
    img = encode_gray(texture(5))
    far = TileId(19, 100, 100)  # far outside the service area
    cases = {
        "zoom": UploadTile(img, 12, good.x >> 7, good.y >> 7, good.captured_utc),
        "area": UploadTile(encode_gray(texture(6)), 19, far.x, far.y, good.captured_utc),
        "future": UploadTile(encode_gray(texture(7)), 19, good.x, good.y,
                             now + timedelta(hours=1)),
        "before": UploadTile(encode_gray(texture(8)), 19, good.x, good.y,
                             now - timedelta(days=2)),
        "sigma": UploadTile(encode_gray(texture(9)), 19, good.x, good.y, good.captured_utc,
                            sigma_m=7.5, trust="low"),
        "jpeg": UploadTile(b"\xff\xd8\xff" + b"x" * 500, 19, good.x, good.y,
                           good.captured_utc),
    }
    with ground.client(ground.device("a1"), "f1") as c:
        c.open()
        out = c.send(list(cases.values()))
    reasons = {k: o["reason"] for k, o in zip(cases, out, strict=True)}
    assert all(o["status"] == "rejected" for o in out), out
    assert "zoom 12" in reasons["zoom"]
    assert "service area" in reasons["area"]
    assert "capture time" in reasons["future"] and "capture time" in reasons["before"]
    assert "sigma" in reasons["sigma"]
    assert "256x256 JPEG" in reasons["jpeg"]
    assert ground.written()[:2] == (0, 0)


def test_part_not_in_manifest_refuses_the_batch(ground: Ground) -> None:
    with ground.client(ground.device("a1"), "f1") as c:
        c.open()
        manifest, sig, files = c.batch_parts(upload_tiles(1))
        extra = encode_gray(texture(77))
        import hashlib

        files.append(("tile", (f"{hashlib.sha256(extra).hexdigest()}.jpg", extra,
                               "image/jpeg")))
        resp = c.post_parts(manifest, sig, files)
    assert resp.status_code == 400 and "not listed" in resp.json()["detail"]
    assert ground.written()[:2] == (0, 0)


def test_oversized_and_malformed_bodies(ground: Ground) -> None:
    with ground.client(ground.device("a1"), "f1") as c:
        sid = c.open()
    url = f"{ground.url}{API_PREFIX}/sessions/{sid}/batches"
    limit = ground.cfg.limits.max_batch_body_bytes
    # Declared too large: refused before a byte of the body is sent.
    status, body = _raw_request(ground, f"{API_PREFIX}/sessions/{sid}/batches", limit + 1)
    assert status == 413 and json.loads(body)["error"] == "too_large"
    ctx = ssl.create_default_context(cafile=str(ground.tls.ca_cert))
    with httpx.Client(verify=ctx, timeout=30) as h:
        # Streamed (chunked, no length) past the limit.

        def chunks():
            yield (b'--b\r\nContent-Disposition: form-data; name="tile"; filename="x.jpg"'
                   b"\r\nContent-Type: image/jpeg\r\n\r\n")
            for _ in range(limit // (1 << 20) + 2):
                yield b"a" * (1 << 20)

        r = h.post(url, content=chunks(), headers={"Content-Type": "multipart/form-data; "
                                                                  "boundary=b"})
        assert r.status_code == 413
        # Too many file parts.
        files = [("tile", (f"{i:064x}.jpg", b"x", "image/jpeg")) for i in range(80)]
        r = h.post(url, data={"signature": "x"}, files=files)
        assert r.status_code == 413 and "Too many files" in r.json()["detail"]
        # A manifest field over its part limit.
        big = "m" * (ground.cfg.limits.max_manifest_bytes + 10)
        r = h.post(url, data={"manifest": big, "signature": "x"},
                   files=[("tile", ("a.jpg", b"x", "image/jpeg"))])
        assert r.status_code == 413
        # Not multipart; broken multipart; missing parts.
        r = h.post(url, content=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "malformed"
        r = h.post(url, content=b"--zz\r\ngarbage", headers={
            "Content-Type": "multipart/form-data; boundary=zz"})
        assert r.status_code == 400
        r = h.post(url, data={"signature": "x"}, files=[("tile", ("a.jpg", b"x", "image/jpeg"))])
        assert r.status_code == 400 and "no manifest" in r.json()["detail"]
        # Session body not JSON.
        r = h.post(f"{ground.url}{API_PREFIX}/sessions", content=b"{nope")
        assert r.status_code == 400 and r.json()["error"] == "malformed"
    assert ground.written()[:2] == (0, 0)


def test_operator_api_needs_the_operator_token(ground: Ground) -> None:
    bad = OperatorClient(ground.url, "not-the-token-at-all", ca_file=ground.tls.ca_cert)
    with pytest.raises(GroundClientError) as err:
        bad.add_device("x", "AAAA")
    assert err.value.status == 401
    provider_key = ground.cfg.provider_api_keys[0]  # a provider key is no operator token
    with pytest.raises(GroundClientError):
        OperatorClient(ground.url, provider_key, ca_file=ground.tls.ca_cert).list_devices()
    op = OperatorClient(ground.url, ground.cfg.operator_tokens[0], ca_file=ground.tls.ca_cert)
    key = Ed25519PrivateKey.generate()
    from terrafix.ground.client import public_key_b64

    d = op.add_device("tail-7", public_key_b64(key))
    assert [x["fingerprint"] for x in op.list_devices()] == [d["fingerprint"]]
    assert op.revoke_device(d["fingerprint"], "sold")["revoked_reason"] == "sold"
    with pytest.raises(GroundClientError) as err:
        op.revoke_device("0" * 32, "nope")
    assert err.value.status == 404
    assert ground.written() == (0, 0, 0)
