"""Open a page in a real headless Chromium (Debian `chromium`) and report what it did.

Driven over the DevTools protocol on loopback with a minimal WebSocket client written here
(the standard library only: no selenium/playwright in the environment). What comes back:
every console message and page error, every failed network request, each <img>'s load state
(complete and with a natural size) and a PNG screenshot of the whole page at a given width.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    console: list[dict[str, Any]] = field(default_factory=list)
    """Console messages and log entries: {"level", "text"}."""
    errors: list[str] = field(default_factory=list)
    """Uncaught exceptions and failed requests."""
    images: list[dict[str, Any]] = field(default_factory=list)
    """Per <img>: src, complete, naturalWidth, naturalHeight."""
    screenshot_png: bytes = b""
    document_width: int = 0


class _WebSocket:
    """Just enough RFC 6455 for the DevTools protocol: masked text frames out, text frames
    (possibly fragmented) in."""

    def __init__(self, url: str, timeout_s: float) -> None:
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"DevTools refused the WebSocket upgrade: {status!r}")
        self._buf = head.split(b"\r\n\r\n", 1)[1]

    def _recv_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def send(self, text: str) -> None:
        data = text.encode()
        head = bytearray([0x81])
        n = len(data)
        if n < 126:
            head.append(0x80 | n)
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        head += mask
        self.sock.sendall(bytes(head) + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            payload = self._recv_exact(n)
            op = b0 & 0x0F
            if op == 0x8:
                raise ConnectionError("DevTools sent a close frame")
            if op in (0x9, 0xA):  # ping/pong: not expected from DevTools; ignore
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.sock.close()


class _Cdp:
    def __init__(self, ws: _WebSocket, report: PageReport) -> None:
        self.ws = ws
        self.report = report
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        my = self._id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def wait_for(self, method: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        if any(e.get("method") == method for e in self.events):
            return
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self._event(msg)
            if msg.get("method") == method:
                return
        raise TimeoutError(f"no {method} within {timeout_s} s")

    def _event(self, msg: dict[str, Any]) -> None:
        self.events.append(msg)
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            self.report.console.append({"level": p.get("type"), "text": text})
        elif m == "Log.entryAdded":
            e = p["entry"]
            self.report.console.append({"level": e.get("level"), "text": e.get("text")})
        elif m == "Runtime.exceptionThrown":
            self.report.errors.append(str(p["exceptionDetails"].get("text")))
        elif m == "Network.loadingFailed":
            self.report.errors.append(f"request failed: {p.get('errorText')}")


def open_page(page: Path, width_px: int = 1100, timeout_s: float = 60.0) -> PageReport:
    """Load `page` (a local file) in headless Chromium at `width_px` and report on it."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium not installed (scripts/bootstrap.sh installs it)")
    report = PageReport()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-",
                                     ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                 "about:blank"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout_s
            while not port_file.is_file() or len(port_file.read_text().split()) < 2:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            targets = json.loads(_http_get(port, "/json/list"))
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            ws = _WebSocket(ws_url, timeout_s)
            try:
                cdp = _Cdp(ws, report)
                for domain in ("Page", "Runtime", "Log", "Network"):
                    cdp.call(f"{domain}.enable")
                cdp.call("Emulation.setDeviceMetricsOverride", width=width_px, height=900,
                         deviceScaleFactor=1, mobile=width_px < 600)
                cdp.call("Page.navigate", url=page.resolve().as_uri())
                cdp.wait_for("Page.loadEventFired", timeout_s)
                imgs = cdp.call("Runtime.evaluate", returnByValue=True, expression=(
                    "Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
                    "complete: i.complete, naturalWidth: i.naturalWidth, "
                    "naturalHeight: i.naturalHeight, shownWidth: i.clientWidth}))"))
                report.images = imgs["result"]["value"]
                dims = cdp.call("Runtime.evaluate", returnByValue=True, expression=(
                    "[document.documentElement.scrollWidth, "
                    "document.documentElement.scrollHeight]"))["result"]["value"]
                report.document_width = int(dims[0])
                shot = cdp.call("Page.captureScreenshot", format="png",
                                captureBeyondViewport=True, clip={
                                    "x": 0, "y": 0, "width": width_px,
                                    "height": min(int(dims[1]), 16000), "scale": 1})
                report.screenshot_png = base64.b64decode(shot["data"])
            finally:
                ws.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return report


def _http_get(port: int, path: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                  .encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += s.recv(65536)
    return body.decode()
