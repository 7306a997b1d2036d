"""Byte transports under the MAVLink and MSP links: serial, UDP, TCP, or an open descriptor.

Why a thin layer of our own over pymavlink's mavutil: mavutil parses the connection strings every
ArduPilot user knows (`udpin:0.0.0.0:14550`, `udpout:host:port`, `tcp:host:port`,
`tcpin:host:port`, `/dev/ttyACM0,921600`) and opens the port, which we reuse; but we parse and
verify MAVLink ourselves (see channel.py), so all we need from it is "wait for bytes, read bytes,
write bytes". The same transports carry iNav's MSP frames.

Airborne rule (REQUIREMENTS T6): the flight process opens no listening port reachable from
outside, so `udpin:`/`tcpin:` are refused on anything but a loopback address unless the caller
explicitly allows it (a bench or a ground tool).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
from typing import Protocol

from terrafix.autopilot.errors import LinkConfigError

os.environ.setdefault("MAVLINK20", "1")  # mavutil picks its (unused here) dialect at import
from pymavlink import mavutil

_READ_CHUNK = 4096
_NETWORK_SCHEMES = ("udpin:", "udpout:", "udp:", "tcp:", "tcpin:")


class ByteTransport(Protocol):
    """What a link needs from a transport (mavutil ports and raw descriptors implement it)."""

    description: str
    datagram: bool
    """True when each read is whole packets (UDP): a partial packet left over is garbage."""

    def wait_readable(self, timeout_s: float) -> bool: ...

    def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def local_address(self) -> tuple[str, int] | None: ...

    def close(self) -> None: ...


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_connection_string(connection: str, *, allow_external_listen: bool = False) -> str:
    """Validate a connection string; return its kind: 'udpin', 'udpout', 'tcp', 'tcpin', 'serial'.

    Raises LinkConfigError naming the string and what is accepted.
    """
    if not connection or connection != connection.strip():
        raise LinkConfigError(f"connection string {connection!r} is empty or padded")
    for scheme in _NETWORK_SCHEMES:
        if connection.startswith(scheme):
            rest = connection[len(scheme):]
            host, sep, port = rest.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise LinkConfigError(
                    f"connection {connection!r}: expected {scheme}<host>:<port> with port 0-65535"
                )
            kind = {"udp:": "udpin"}.get(scheme, scheme[:-1])
            if kind in ("udpin", "tcpin") and not allow_external_listen and not _is_loopback(host):
                raise LinkConfigError(
                    f"connection {connection!r} listens on {host!r}: the airborne process may "
                    "only listen on loopback (REQUIREMENTS T6); use a loopback address, a serial "
                    "port or an outbound udpout:/tcp: connection"
                )
            return kind
    if connection.startswith("/dev/") or connection.upper().startswith("COM"):
        _device, _, baud = connection.partition(",")
        if baud and not baud.isdigit():
            raise LinkConfigError(f"connection {connection!r}: baud {baud!r} is not an integer")
        return "serial"
    raise LinkConfigError(
        f"connection {connection!r} is not supported: expected udpin:/udpout:/tcp:/tcpin:"
        "<host>:<port> or a serial device such as /dev/ttyACM0[,baud]"
    )


class MavutilTransport:
    """A serial/UDP/TCP port opened by mavutil; reading and writing raw bytes only."""

    def __init__(self, connection: str, *, baud: int = 115200,
                 allow_external_listen: bool = False) -> None:
        self.kind = check_connection_string(connection, allow_external_listen=allow_external_listen)
        self.description = connection
        self.datagram = self.kind in ("udpin", "udpout")
        try:
            self._f = mavutil.mavlink_connection(
                connection, baud=baud, autoreconnect=self.kind == "tcp", retries=3,
                reconnect_delay=0.2,
            )
        except (OSError, ValueError) as e:
            raise LinkConfigError(f"cannot open connection {connection!r}: {e}") from e

    def _fd(self) -> int | None:
        return self._f.fd

    def wait_readable(self, timeout_s: float) -> bool:
        fd = self._fd()
        if fd is None:
            return False
        try:
            r, _, _ = select.select([fd], [], [], timeout_s)
        except (OSError, ValueError):
            return False
        return bool(r)

    def read(self) -> bytes:
        data = self._f.recv(_READ_CHUNK)
        return bytes(data) if data else b""

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def local_address(self) -> tuple[str, int] | None:
        sock = getattr(self._f, "listen", None) or getattr(self._f, "port", None)
        if isinstance(sock, socket.socket):
            host, port = sock.getsockname()[:2]
            return str(host), int(port)
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()


class FdTransport:
    """An already-open byte stream descriptor (a pty master, a pipe): used by simulators."""

    def __init__(self, fd: int, description: str = "fd") -> None:
        self._fd = fd
        self.description = description
        self.datagram = False
        os.set_blocking(fd, False)

    def wait_readable(self, timeout_s: float) -> bool:
        try:
            r, _, _ = select.select([self._fd], [], [], timeout_s)
        except (OSError, ValueError):
            return False
        return bool(r)

    def read(self) -> bytes:
        try:
            return os.read(self._fd, _READ_CHUNK)
        except BlockingIOError:
            return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                select.select([], [self._fd], [], 0.05)
                continue
            view = view[n:]

    def local_address(self) -> tuple[str, int] | None:
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def open_transport(connection: str | ByteTransport, *, baud: int = 115200,
                   allow_external_listen: bool = False) -> ByteTransport:
    """A transport from a connection string, or the given transport unchanged."""
    if isinstance(connection, str):
        return MavutilTransport(connection, baud=baud, allow_external_listen=allow_external_listen)
    return connection
