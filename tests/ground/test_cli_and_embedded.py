"""The operator commands (`terrafix ground devices add|list|revoke`) against a running
service, and the embedded service of the demo loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from terrafix.app.cli import app as terrafix_app
from terrafix.ground.client import GroundClientError, UploadClient, UploadTile
from terrafix.ground.embedded import embedded_ground
from terrafix.tiles import NewTile, open_store
from terrafix.tiles.jpeg import encode_gray
from terrafix.upload.protocol import fingerprint

from .conftest import Ground, scene, tile_ids, view

runner = CliRunner()


def test_devices_add_list_revoke_commands(ground: Ground, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "device.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    common = ["--url", ground.url, "--token", ground.cfg.operator_tokens[0], "--ca-file",
              str(ground.tls.ca_cert)]
    fp = fingerprint(key.public_key())
    r = runner.invoke(terrafix_app, ["ground", "devices", "add", "tail-7", str(pub), *common])
    assert r.exit_code == 0 and fp in r.output, r.output
    r = runner.invoke(terrafix_app, ["ground", "devices", "list", *common])
    assert r.exit_code == 0 and "tail-7" in r.output and "active" in r.output
    with ground.client(key, "f1") as c:
        c.open()  # the registered key can open a session
    r = runner.invoke(terrafix_app, ["ground", "devices", "revoke", fp, "--reason", "lost",
                                     *common])
    assert r.exit_code == 0 and "revoked" in r.output
    r = runner.invoke(terrafix_app, ["ground", "devices", "list", *common])
    assert "REVOKED (lost)" in r.output
    with ground.client(key, "f2") as c:
        try:
            c.open()
            raise AssertionError("a revoked device opened a session")
        except GroundClientError as exc:
            assert exc.status == 403
    # A wrong operator token is one clear error line, exit code 2.
    bad = ["--url", ground.url, "--token", "x" * 20, "--ca-file", str(ground.tls.ca_cert)]
    r = runner.invoke(terrafix_app, ["ground", "devices", "list", *bad])
    assert r.exit_code == 2 and "401" in r.output


def test_embedded_ground_seeds_base_and_counts_votes(tmp_path: Path) -> None:
    tiles = tile_ids(4)
    grounds = {t: scene(400 + i) for i, t in enumerate(tiles)}
    base_root = tmp_path / "map-cache"
    with open_store(base_root) as base:
        base.put_many([NewTile(t, encode_gray(view(grounds[t], seed=1)),
                               datetime(2024, 1, 1).date(), "base") for t in tiles])
        with embedded_ground(tmp_path / "ground", base=base, fsync=False) as g:
            assert g.service.serving.backend.totals()[0] == 4
            flown = datetime.now(UTC) - timedelta(minutes=5)
            for dev, which in ((1, tiles), (2, tiles[:2])):
                key, _ = g.register_device(f"aircraft-{dev}")
                with UploadClient(g.url, key, f"f{dev}", ca_file=g.ca_file) as c:
                    c.open()
                    c.send([UploadTile(encode_gray(view(grounds[t], seed=10 * dev + i)), t.z,
                                       t.x, t.y, flown) for i, t in enumerate(which)])
            assert g.wait_votes()
            assert g.counts().as_dict() == {"promoted": 2, "conflict": 0, "pending": 2}
