"""Keys of the upload trust chain (REQUIREMENTS U4).

- The device key: one long-term Ed25519 key per aircraft, created once by `terrafix keys`,
  stored as PKCS#8 PEM with file mode 0600 under the user's config folder
  ($XDG_CONFIG_HOME/terrafix/device_ed25519.pem, default ~/.config/terrafix/). Its public half
  is registered on the ground by the operator; the fingerprint identifies it everywhere.
- A session key: a fresh Ed25519 key per upload session, certified by the device key
  (`SessionCertificate`: session public key, flight id, validity window). It signs every
  batch manifest and is discarded when the session ends.

The manifest-signing (provisioning) key never lives here: it stays with the ground tooling.
"""

from __future__ import annotations

import ctypes
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terrafix.upload.errors import KeyFileError
from terrafix.upload.protocol import SessionCertificate, b64, fingerprint, raw_public_bytes

DEVICE_KEY_FILE = "device_ed25519.pem"


def default_key_dir() -> Path:
    """$XDG_CONFIG_HOME/terrafix, else ~/.config/terrafix."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "terrafix"


def default_device_key_path() -> Path:
    return default_key_dir() / DEVICE_KEY_FILE


@dataclass(frozen=True, slots=True)
class DeviceKeyInfo:
    """What the operator registers on the ground: fingerprint and raw public key (base64)."""

    path: Path
    fingerprint: str
    public_key_b64: str
    created: bool


def create_device_key(path: Path | None = None, *, overwrite: bool = False) -> DeviceKeyInfo:
    """Create the device key at `path` (mode 0600, parent 0700); an existing key is kept and
    described (created=False) unless overwrite."""
    path = Path(path) if path is not None else default_device_key_path()
    if path.exists() and not overwrite:
        key = load_device_key(path)
        return DeviceKeyInfo(path, fingerprint(key.public_key()),
                             b64(raw_public_bytes(key.public_key())), created=False)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return DeviceKeyInfo(path, fingerprint(key.public_key()),
                         b64(raw_public_bytes(key.public_key())), created=True)


def load_device_key(path: Path | None = None) -> Ed25519PrivateKey:
    """The device key; refuses a file readable by group or others (mode must be 0600 or
    stricter), a missing file (run `terrafix keys`) and anything but Ed25519."""
    path = Path(path) if path is not None else default_device_key_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"no device key at {path}; create it with `terrafix keys`") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"device key {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
                           f"expected 0600 (chmod 600 {path})")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"device key {path} is not an unencrypted PEM private key: "
                           f"{exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"device key {path} is a {type(key).__name__}, expected Ed25519")
    return key


class SessionKey:
    """A fresh per-session Ed25519 key and its certificate by the device key.

    `close()` (or leaving the `with` block) zeroes the key material this object holds and
    drops the key. Best effort only: the private scalar also lives inside OpenSSL's key object
    (freed, not wiped, when the last reference goes) and Python may have copied the raw bytes
    (immutable `bytes`) before we overwrite our buffer; a core dump or swap taken during the
    session can still contain it. What this guarantees: after close the object cannot sign,
    and our own copy of the raw bytes is overwritten with zeros.
    """

    def __init__(self, device_key: Ed25519PrivateKey, flight_id: str, *,
                 lifetime_s: float = 3600.0, now: datetime | None = None,
                 covers_from: datetime | None = None) -> None:
        """covers_from: the earliest capture time the session's tiles carry; the ground
        accepts a tile only when its capture time lies inside the certificate's window, so
        the window must reach back over the flight, not start at the upload."""
        key = Ed25519PrivateKey.generate()
        self._raw = bytearray(key.private_bytes(serialization.Encoding.Raw,
                                                serialization.PrivateFormat.Raw,
                                                serialization.NoEncryption()))
        self._key: Ed25519PrivateKey | None = key
        t_now = now or datetime.now(UTC)
        t0 = t_now - timedelta(seconds=60)  # clock skew margin
        if covers_from is not None:
            t0 = min(t0, covers_from - timedelta(seconds=60))
        self.certificate = SessionCertificate(
            device_fingerprint=fingerprint(device_key.public_key()),
            session_public_key=key.public_key(), flight_id=flight_id,
            not_before_utc=t0, expires_utc=t_now + timedelta(seconds=lifetime_s))
        self.session_body = self.certificate.sign(device_key)
        self.fingerprint = self.certificate.session_fingerprint

    @property
    def key(self) -> Ed25519PrivateKey:
        if self._key is None:
            raise KeyFileError(f"session key {self.fingerprint} was closed")
        return self._key

    @property
    def closed(self) -> bool:
        return self._key is None

    def close(self) -> None:
        """Zero our copy of the key bytes and drop the key (best effort, see class doc)."""
        if self._raw:
            ctypes.memset((ctypes.c_char * len(self._raw)).from_buffer(self._raw), 0,
                          len(self._raw))
        self._key = None

    def raw_is_zeroed(self) -> bool:
        return not any(self._raw)

    def __enter__(self) -> SessionKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
