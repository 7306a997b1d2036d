"""MAVLink 2 message signing: the per-flight key and the inbound signature check.

Why our own inbound check rather than pymavlink's: pymavlink records a stream's timestamp before
it compares the signature, so one forged packet carrying a far-future timestamp would make every
later genuine packet of that stream look like a replay (a denial of service by a single injected
datagram). Here the HMAC is verified first and only an authentic packet moves the replay window.
Outbound signing is pymavlink's (`MAVLink.signing`), fed with the same key object.

The signature (MAVLink 2 specification): 6 bytes of SHA-256(key || header || payload || CRC ||
link_id || timestamp48), where timestamp48 counts 10 microsecond units since 2015-01-01 UTC and
must strictly increase per (link_id, system, component) stream.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import struct
import time
from typing import NoReturn

from terrafix.autopilot import constants as C

SIGNED_FLAG = 0x01
"""MAVLink 2 incompat_flags bit of a signed packet."""
SIGNATURE_BLOCK_LEN = 13
"""link_id (1) + timestamp (6) + signature (6)."""


class SigningKey:
    """A 32-byte secret held in a bytearray that `zero()` overwrites.

    The key is never written to logs, repr, pickles or files: repr/str show only that a key
    exists, and pickling raises. `material` hands the live bytearray to the encoder that signs
    with it, so zeroing the key also zeroes what the encoder uses. Python copies bytes in places
    we do not control (the SETUP_SIGNING payload, hashlib's internal buffer), so zeroing is a
    best effort against memory disclosure, not a guarantee.
    """

    __slots__ = ("_buf",)

    def __init__(self, material: bytes | bytearray) -> None:
        if len(material) != C.SIGNING_KEY_BYTES:
            raise ValueError(f"a signing key has {C.SIGNING_KEY_BYTES} bytes, got {len(material)}")
        self._buf = bytearray(material)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the operating system's CSPRNG (one per flight)."""
        return cls(secrets.token_bytes(C.SIGNING_KEY_BYTES))

    @property
    def material(self) -> bytearray:
        """The live key bytes (do not copy, log or store them)."""
        return self._buf

    @property
    def is_zeroed(self) -> bool:
        return not any(self._buf)

    def zero(self) -> None:
        """Overwrite the key in place; the key is unusable afterwards."""
        for i in range(len(self._buf)):
            self._buf[i] = 0

    def __repr__(self) -> str:
        return "SigningKey(<redacted>)" if not self.is_zeroed else "SigningKey(<zeroed>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SigningKey cannot be pickled or persisted")


def signing_timestamp_now(unix_ns: int | None = None) -> int:
    """Current signing timestamp: 10 microsecond units since 2015-01-01 00:00:00 UTC."""
    ns = time.time_ns() if unix_ns is None else unix_ns
    return max(0, (ns - C.SIGNING_EPOCH_UNIX_S * 1_000_000_000) // 10_000)


def compute_signature(key: bytes | bytearray, signed_part: bytes | bytearray) -> bytes:
    """The 6-byte signature of everything before it (header .. timestamp)."""
    h = hashlib.sha256()
    h.update(key)
    h.update(signed_part)
    return h.digest()[:6]


class SignatureVerdict(enum.Enum):
    ACCEPTED = "accepted"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    REPLAY = "replay"
    STALE_STREAM = "stale_stream"
    NOT_MAVLINK2 = "not_mavlink2"


class SignatureVerifier:
    """Checks inbound packets against one key; keeps per-stream replay state.

    Not thread-safe: the link's reader thread is its only user.
    """

    __slots__ = ("_key", "_now", "_streams", "_timestamp")

    def __init__(self, key: SigningKey, now_timestamp=signing_timestamp_now) -> None:
        self._key = key
        self._now = now_timestamp
        self._streams: dict[tuple[int, int, int], int] = {}
        self._timestamp = 0

    def check(self, packet: bytes | bytearray) -> SignatureVerdict:
        """Verdict on one complete MAVLink packet (as received, signature block included)."""
        if len(packet) < 12 or packet[0] != 0xFD:
            return SignatureVerdict.NOT_MAVLINK2
        if not packet[2] & SIGNED_FLAG or len(packet) < 12 + SIGNATURE_BLOCK_LEN:
            return SignatureVerdict.UNSIGNED
        expected = compute_signature(self._key.material, packet[:-6])
        if self._key.is_zeroed or not hmac.compare_digest(expected, bytes(packet[-6:])):
            return SignatureVerdict.BAD_SIGNATURE
        link_id = packet[-13]
        lo, hi = struct.unpack_from("<IH", packet, len(packet) - 12)
        timestamp = lo | (hi << 32)
        stream = (link_id, packet[5], packet[6])
        last = self._streams.get(stream)
        if last is not None:
            if timestamp <= last:
                return SignatureVerdict.REPLAY
        else:
            local = max(self._timestamp, self._now())
            if timestamp + C.SIGNING_NEW_STREAM_TOLERANCE < local:
                return SignatureVerdict.STALE_STREAM
        self._streams[stream] = timestamp
        self._timestamp = max(self._timestamp, timestamp)
        return SignatureVerdict.ACCEPTED
