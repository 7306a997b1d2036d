"""The operator's terrafix config folder: where ground-side keys live, never on the aircraft.

Why one helper: the provisioning (manifest-signing) key and the device key of the upload both
belong to the operator's ground tooling, not to the cache that flies; every tool that reads or
writes such a key resolves the folder here, so there is one place to override it.

Resolution order: ``$TERRAFIX_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/terrafix``, else
``~/.config/terrafix``. The folder is created owner-only (0700) and secret files in it are
written owner-only (0600), atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR_ENV = "TERRAFIX_CONFIG_DIR"
PROVISIONING_KEY_FILE = "provisioning_ed25519.pem"
"""The manifest-signing private key (PKCS#8 PEM) in the config folder."""
PROVISIONING_PUBLIC_KEY_FILE = "provisioning_ed25519.pub.pem"


def terrafix_config_dir() -> Path:
    """The user's terrafix config folder (not created; see `ensure_config_dir`)."""
    explicit = os.environ.get(CONFIG_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "terrafix"


def ensure_config_dir() -> Path:
    """`terrafix_config_dir()`, created with mode 0700 when absent."""
    folder = terrafix_config_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def write_secret_file(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` readable by the owner only (0600), replacing it atomically."""
    out = Path(path)
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def provisioning_key_path() -> Path:
    """Default location of the provisioning (manifest-signing) private key."""
    return terrafix_config_dir() / PROVISIONING_KEY_FILE


def provisioning_public_key_path() -> Path:
    return terrafix_config_dir() / PROVISIONING_PUBLIC_KEY_FILE
