"""Starting and stopping peer processes (see peers.py) for the link tests."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Callable, Iterator
from typing import Any

import pytest

CTX = mp.get_context("spawn")  # no fork of a threaded pytest worker


class Peer:
    """A peer process steered over a pipe; `address` is what it reported when ready."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.conn, child = CTX.Pipe()
        self.proc = CTX.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        if not self.conn.poll(60.0):
            self.proc.kill()
            raise RuntimeError(f"peer {target.__name__} did not become ready")
        tag, self.address = self.conn.recv()
        assert tag == "ready"

    def call(self, *cmd: Any, timeout: float = 20.0) -> Any:
        self.conn.send(cmd)
        if not self.conn.poll(timeout):
            raise TimeoutError(f"peer did not answer {cmd[0]!r} within {timeout} s")
        return self.conn.recv()

    def close(self) -> None:
        if self.proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self.conn.send(("stop",))
            self.proc.join(10.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5.0)


@pytest.fixture
def start_peer() -> Iterator[Callable[..., Peer]]:
    peers: list[Peer] = []

    def start(target: Callable[..., None], *args: Any) -> Peer:
        peer = Peer(target, *args)
        peers.append(peer)
        return peer

    yield start
    for p in peers:
        p.close()
