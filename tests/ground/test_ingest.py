"""Idempotent ingest keyed by content hash, concurrent uploaders, and a real server process
killed with kill -9 mid-batch and restarted: nothing accepted is lost, nothing is stored
twice, no half tile and no orphan blob remains."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import tomli_w

from terrafix.ground.client import OperatorClient, UploadClient, public_key_b64
from terrafix.ground.config import GroundConfig
from terrafix.ground.db import GroundDb
from terrafix.tiles.tls import TlsFiles

from .conftest import Ground, upload_tiles

REPO = Path(__file__).resolve().parents[2]


def _stored_hashes(ground: Ground) -> list[str]:
    return sorted(ground.svc.db.iter_candidate_hashes())


def _blob_hashes(root: Path) -> list[str]:
    return sorted(p.name[:-4] for p in (root / "blobs").rglob("*.jpg"))


def test_resent_batch_is_duplicate_and_stored_once(ground: Ground) -> None:
    tiles = upload_tiles(10)
    with ground.client(ground.device("a1"), "f1") as c:
        c.open()
        first = c.send(tiles, seq=0)
        again = c.send(tiles, seq=0)  # the very same batch (a lost response, re-sent)
        other_seq = c.send(tiles[:4], seq=7)  # the same tiles in another batch
        summary = c.close_session()
        # A closed session takes no more batches.
        resp = c.post_parts(*c.batch_parts(tiles[:1]))
        assert resp.status_code == 401 and resp.json()["error"] == "session_closed"
    assert [o["status"] for o in first] == ["accepted"] * 10
    assert [o["status"] for o in again] == ["duplicate"] * 10
    assert [o["status"] for o in other_seq] == ["duplicate"] * 4
    assert summary["accepted"] == 10 and summary["duplicate"] == 14 and summary["closed"]
    hashes = sorted(hashlib.sha256(t.jpeg).hexdigest() for t in tiles)
    assert _stored_hashes(ground) == hashes
    assert _blob_hashes(ground.cfg.root) == hashes


def test_concurrent_uploaders_store_every_tile_exactly_once(ground: Ground) -> None:
    """Eight aircraft upload at once; half of each one's tiles are byte-identical to another
    aircraft's (a replayed copy): each hash is stored once, accepted exactly once overall."""
    shared = upload_tiles(24, seed=1)
    keys = [ground.device(f"a{i}") for i in range(8)]

    def run(i: int) -> list[dict]:
        own = upload_tiles(24, seed=100 + i)
        mine = own + shared[(i % 2) * 12:(i % 2) * 12 + 12]
        outs: list[dict] = []
        with ground.client(keys[i], f"f{i}") as c:
            c.open()
            for j in range(0, len(mine), 9):
                outs += c.send(mine[j:j + 9])
        return outs

    with ThreadPoolExecutor(8) as pool:
        results = [o for outs in pool.map(run, range(8)) for o in outs]
    accepted = [o["sha256"] for o in results if o["status"] == "accepted"]
    dup = [o for o in results if o["status"] == "duplicate"]
    assert all(o["status"] in ("accepted", "duplicate") for o in results)
    assert len(accepted) == len(set(accepted)) == 8 * 24 + 24
    assert len(dup) == 8 * 12 - 24
    assert _stored_hashes(ground) == sorted(accepted) == _blob_hashes(ground.cfg.root)


# --- a real server process, killed -------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`terrafix ground serve` in its own process (the real CLI, real TLS)."""

    def __init__(self, cfg: GroundConfig, tls: TlsFiles, folder: Path) -> None:
        self.cfg = cfg
        self.tls = tls
        self.folder = folder
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = folder / "server.log"

    def start(self, **overrides: object) -> None:
        doc = self.cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
        doc.update(overrides)
        conf = self.folder / "ground.toml"
        conf.write_text(tomli_w.dumps(doc))
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "terrafix.app.cli", "ground", "serve", "--config", str(conf),
             "--port", str(self.port), "--tls-cert", str(self.tls.server_cert),
             "--tls-key", str(self.tls.server_key)],
            stdout=subprocess.DEVNULL, stderr=self.log.open("ab"), env=env)
        ctx = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/v1/health", verify=ctx, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"server did not come up:\n{self.log.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def test_kill9_mid_batch_then_restart_loses_nothing_and_leaves_no_orphan(
        ground_config: GroundConfig, tls_files: TlsFiles, tmp_path: Path) -> None:
    cfg = ground_config.model_copy(update={"orphan_grace_s": 0.0})
    server = ServerProcess(cfg, tls_files, tmp_path)
    # The fault pause holds each batch between its durable blobs and its commit: the kill
    # lands exactly in the window where a half-done batch could leave debris.
    server.start(fault_pause_before_commit_s=3.0)
    try:
        op = OperatorClient(server.url, cfg.operator_tokens[0], ca_file=tls_files.ca_cert)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        op.add_device("a1", public_key_b64(key))
        tiles = upload_tiles(30, seed=3)
        first, second = tiles[:12], tiles[12:]
        client = UploadClient(server.url, key, "f1", ca_file=tls_files.ca_cert)
        client.open()
        out0 = client.send(first, seq=0)
        assert [o["status"] for o in out0] == ["accepted"] * 12
        failure: list[BaseException] = []

        def doomed() -> None:
            try:
                client.send(second, seq=1)
            except BaseException as exc:
                failure.append(exc)

        t = threading.Thread(target=doomed)
        t.start()
        want = {hashlib.sha256(x.jpeg).hexdigest() for x in second}
        deadline = time.monotonic() + 30
        while not want <= set(_blob_hashes(cfg.root)):
            assert time.monotonic() < deadline, "batch 1's blobs never appeared"
            time.sleep(0.05)
        server.kill9()
        t.join(timeout=30)
        assert failure, "the batch in flight should have failed with the server killed"
        # The debris a crash leaves: durable blobs of batch 1, and no rows for them.
        db = GroundDb.open(cfg.root, dsn=cfg.dsn, schema=cfg.schema_name)
        assert set(db.iter_candidate_hashes()) == {o["sha256"] for o in out0}
        db.close()
        assert want <= set(_blob_hashes(cfg.root))

        server.start()  # restart: start-up reconcile removes the orphans
        assert set(_blob_hashes(cfg.root)) == {o["sha256"] for o in out0}
        out1 = client.send(second, seq=1)  # the uploader re-sends what got no answer
        out0_again = client.send(first, seq=0)
        assert [o["status"] for o in out1] == ["accepted"] * len(second)
        assert [o["status"] for o in out0_again] == ["duplicate"] * len(first)
        client.close()
        server.stop()
        db = GroundDb.open(cfg.root, dsn=cfg.dsn, schema=cfg.schema_name)
        rows = sorted(db.iter_candidate_hashes())
        db.close()
        every = sorted(hashlib.sha256(x.jpeg).hexdigest() for x in tiles)
        assert rows == every == _blob_hashes(cfg.root)
        assert not list((cfg.root / "blobs").rglob("*.tmp"))
        for h in every:  # every blob whole: its bytes hash to its name
            path = next((cfg.root / "blobs").rglob(f"{h}.jpg"))
            assert hashlib.sha256(path.read_bytes()).hexdigest() == h
    finally:
        server.stop()


@pytest.mark.parametrize("kill_after_s", [0.6, 1.3])
def test_kill9_during_concurrent_uploads(tmp_path: Path, tls_files: TlsFiles,
                                         kill_after_s: float) -> None:
    """Four uploaders stream batches; the server dies at an arbitrary moment (no fault
    pause) and restarts; each uploader re-sends every batch it has no answer for. In the
    end every tile is stored exactly once and every blob has its row."""
    import secrets

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from terrafix.ground.config import AreaConfig

    from .conftest import AREA

    cfg = GroundConfig(root=tmp_path / "g", operator_tokens=(secrets.token_hex(16),),
                       provider_api_keys=(secrets.token_hex(16),), area=AreaConfig(bbox=AREA))
    server = ServerProcess(cfg, tls_files, tmp_path)
    server.start()
    try:
        op = OperatorClient(server.url, cfg.operator_tokens[0], ca_file=tls_files.ca_cert)
        keys = [Ed25519PrivateKey.generate() for _ in range(4)]
        for i, k in enumerate(keys):
            op.add_device(f"a{i}", public_key_b64(k))
        plans = [upload_tiles(48, seed=50 + i) for i in range(4)]
        clients = [UploadClient(server.url, k, f"f{i}", ca_file=tls_files.ca_cert)
                   for i, k in enumerate(keys)]
        for c in clients:
            c.open()
        answered: list[set[int]] = [set() for _ in range(4)]
        accepted: list[str] = []
        lock = threading.Lock()

        def upload(i: int) -> None:
            for seq in range(0, 6):
                if seq in answered[i]:
                    continue
                try:
                    outs = clients[i].send(plans[i][seq * 8:(seq + 1) * 8], seq=seq)
                except Exception:
                    return
                with lock:
                    answered[i].add(seq)
                    accepted.extend(o["sha256"] for o in outs if o["status"] == "accepted")

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(kill_after_s)
        server.kill9()
        for t in threads:
            t.join(timeout=60)
        server.start()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(upload, range(4)))
        assert all(a == set(range(6)) for a in answered)
        for c in clients:
            c.close()
        server.stop()
        every = sorted(hashlib.sha256(x.jpeg).hexdigest() for p in plans for x in p)
        db = GroundDb.open(cfg.root)
        rows = sorted(db.iter_candidate_hashes())
        db.close()
        assert rows == every == _blob_hashes(cfg.root)
        assert len(accepted) == len(set(accepted))  # nothing accepted twice
        assert not list((cfg.root / "blobs").rglob("*.tmp"))
    finally:
        server.stop()


def test_busy_server_answers_503_with_retry_after(ground_config: GroundConfig,
                                                  tls_files: TlsFiles) -> None:
    """With its one batch slot held (fault pause), a second batch is told to come back."""
    from terrafix.ground.server import create_ground_app
    from terrafix.ground.service import GroundService
    from terrafix.tiles.provider_server import serve_in_thread

    cfg = ground_config.model_copy(update={"fault_pause_before_commit_s": 3.0})
    svc = GroundService.open(cfg)
    try:
        app = create_ground_app(svc, max_concurrent_batches=1)
        with serve_in_thread(app, tls_cert=tls_files.server_cert,  # type: ignore[arg-type]
                             tls_key=tls_files.server_key) as url:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            key = Ed25519PrivateKey.generate()
            svc.ingest.register_device(public_key_b64(key), "a1")
            slow = UploadClient(url, key, "f1", ca_file=tls_files.ca_cert)
            fast = UploadClient(url, key, "f2", ca_file=tls_files.ca_cert)
            slow.open()
            fast.open()
            holder = threading.Thread(target=slow.send, args=(upload_tiles(2, seed=8),))
            holder.start()
            time.sleep(1.0)
            resp = fast.post_parts(*fast.batch_parts(upload_tiles(2, seed=9)))
            holder.join(timeout=30)
            assert resp.status_code == 503 and resp.json()["error"] == "busy"
            assert int(resp.headers["Retry-After"]) >= 1
            assert [o["status"] for o in fast.send(upload_tiles(2, seed=9))] == ["accepted"] * 2
            slow.close()
            fast.close()
    finally:
        svc.close()
