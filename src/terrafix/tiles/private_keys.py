"""Finding private keys inside a folder that flies (the tile cache, the model folder).

Why: whoever holds the aircraft holds its disk. A provisioning (manifest-signing) key left in
the cache lets them alter the cache and re-sign it, so a cache holding any private key is
refused before take-off. Detection is by content, not by name, since a renamed key signs
just as well:

- PEM armour of any private key (``-----BEGIN ... PRIVATE KEY-----``, PKCS#1/#8, EC,
  encrypted, OpenSSH) anywhere in a file of up to `FULL_SCAN_BYTES`, or in the first and last
  `FULL_SCAN_BYTES` of a larger one (a key appended to a JPEG is still found);
- the OpenSSH binary magic ``openssh-key-v1``;
- DER-encoded PKCS#8 private keys (small files starting with an ASN.1 SEQUENCE that the
  ``cryptography`` DER loader accepts as a private key);
- raw Ed25519 keys: a 32-byte (seed) or 64-byte (seed + public key, libsodium layout) binary
  file; and a text file holding 32 or 64 bytes in hex or base64 when the seed derives the
  pinned signer's public key (hex text alone could be a hash sidecar; the derivation is proof).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FULL_SCAN_BYTES = 1 << 20
_PEM_MARK = b"PRIVATE KEY-----"
_OPENSSH_MAGIC = b"openssh-key-v1\x00"
_DER_MAX_BYTES = 16 << 10


def find_private_keys(folder: str | Path,
                      pinned: Ed25519PublicKey | None = None) -> list[str]:
    """Every file under `folder` (recursively, symlinks not followed) that holds a private key,
    as "<path>: <what was found>"; [] when there is none or the folder does not exist."""
    root = Path(folder)
    found: list[str] = []
    if not root.is_dir():
        return found
    pinned_raw = _raw_public(pinned) if pinned is not None else None
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            what = private_key_in_file(path, pinned_raw)
            if what:
                found.append(f"{path}: {what}")
    return sorted(found)


def private_key_in_file(path: Path, pinned_raw: bytes | None = None) -> str | None:
    """What kind of private key `path` holds, or None (unreadable files are not keys)."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        size = path.stat().st_size
        with path.open("rb") as f:
            if size <= FULL_SCAN_BYTES:
                parts = [f.read()]
            else:
                head = f.read(FULL_SCAN_BYTES)
                f.seek(size - FULL_SCAN_BYTES)
                parts = [head, f.read()]
    except OSError:
        return None
    return private_key_in_bytes(parts[0], pinned_raw, tail=parts[1] if len(parts) > 1 else b"",
                                whole=len(parts) == 1)


def private_key_in_bytes(data: bytes, pinned_raw: bytes | None = None, *, tail: bytes = b"",
                         whole: bool = True) -> str | None:
    for chunk in (data, tail):
        if _PEM_MARK in chunk and b"-----BEGIN" in chunk:
            return "PEM private key"
        if _OPENSSH_MAGIC in chunk:
            return "OpenSSH private key"
    if not whole:
        return None
    if data[:1] == b"\x30" and len(data) <= _DER_MAX_BYTES and _loads_as_der_private(data):
        return "DER (PKCS#8) private key"
    if len(data) in (32, 64) and not _is_text(data):
        return f"raw {len(data)}-byte key material (Ed25519 seed layout)"
    if pinned_raw is not None and len(data) <= 256 and _is_text(data):
        seed = _decode_text_key(data.strip())
        if seed is not None and _derives(seed, pinned_raw):
            return "the pinned signer's private key (hex/base64 text)"
    return None


def _loads_as_der_private(data: bytes) -> bool:
    try:
        serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        return False
    except Exception:  # an encrypted or exotic key raises other errors: still a key blob
        return False
    return True


def _is_text(data: bytes) -> bool:
    return all(32 <= b < 127 or b in (9, 10, 13) for b in data)


def _decode_text_key(text: bytes) -> bytes | None:
    for decode in (bytes.fromhex, lambda t: base64.b64decode(t, validate=True)):
        try:
            raw = decode(text.decode("ascii"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            continue
        if len(raw) in (32, 64):
            return raw[:32]
    return None


def _derives(seed: bytes, pinned_raw: bytes) -> bool:
    return _raw_public(Ed25519PrivateKey.from_private_bytes(seed).public_key()) == pinned_raw


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
