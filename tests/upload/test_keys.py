"""`terrafix keys` and the session keys: 0600 device key under $XDG_CONFIG_HOME, refused when
too open, fingerprint printed for registration; a session key certified by the device key,
zeroed and unusable after the session."""

from __future__ import annotations

import os
import stat

import pytest
from typer.testing import CliRunner

from terrafix.app.cli import app
from terrafix.upload.errors import KeyFileError
from terrafix.upload.keys import SessionKey, create_device_key, load_device_key
from terrafix.upload.protocol import SessionCertificate, canonical_bytes, fingerprint, verify


def test_keys_command_creates_a_0600_key_in_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    out = CliRunner().invoke(app, ["keys"])
    assert out.exit_code == 0, out.output
    path = tmp_path / "cfg" / "terrafix" / "device_ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fp = fingerprint(load_device_key(path).public_key())
    assert fp in out.output and "created" in out.output
    again = CliRunner().invoke(app, ["keys"])  # idempotent: the same key, described
    assert fp in again.output and "existing" in again.output


def test_open_key_file_is_refused(tmp_path):
    info = create_device_key(tmp_path / "k.pem")
    os.chmod(info.path, 0o644)
    with pytest.raises(KeyFileError, match="0644"):
        load_device_key(info.path)
    with pytest.raises(KeyFileError, match="terrafix keys"):
        load_device_key(tmp_path / "missing.pem")


def test_session_key_is_certified_then_zeroed(tmp_path):
    device = load_device_key(create_device_key(tmp_path / "k.pem").path)
    with SessionKey(device, "flight-7") as s:
        body = s.session_body
        cert = SessionCertificate.from_dict(body["certificate"])
        verify(device.public_key(), body["signature"], canonical_bytes(body["certificate"]),
               "certificate")
        assert cert.flight_id == "flight-7" and cert.session_fingerprint == s.fingerprint
        sig = s.key.sign(b"manifest")
        cert.session_public_key.verify(sig, b"manifest")
        assert not s.raw_is_zeroed()
    assert s.closed and s.raw_is_zeroed()
    with pytest.raises(KeyFileError, match="closed"):
        s.key.sign(b"x")
