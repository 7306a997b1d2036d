"""`terrafix keys` (the device key) and `terrafix upload` (a flight's tiles to the ground).

Exit codes of `terrafix upload`: 0 done; 2 refused by the flight-state gate (nothing sent);
3 retry budget spent (prints `next_retry_at`; rerun then); 4 refused for good (TLS failure,
401, 403); 1 any other error.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from terrafix.config_files import load_toml_config
from terrafix.upload.config import UploadConfig
from terrafix.upload.errors import (
    GateRefusedError,
    RetryBudgetSpentError,
    UploadConfigError,
    UploadError,
    UploadRefusedError,
)
from terrafix.upload.gate import FcStateReading, read_fc_state
from terrafix.upload.keys import create_device_key, default_device_key_path
from terrafix.upload.post_flight import upload_flight

log = logging.getLogger(__name__)


def keys_command(
    path: Annotated[Path | None, typer.Option(
        "--path", help="Device key file (default: "
        "$XDG_CONFIG_HOME/terrafix/device_ed25519.pem).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing key (the old registration on the ground stops "
        "working).")] = False,
) -> None:
    """Create (once) the aircraft's device key and print what to register on the ground."""
    info = create_device_key(path or default_device_key_path(), overwrite=force)
    typer.echo(f"device key   {info.path} ({'created' if info.created else 'existing'}, "
               f"mode 0600)")
    typer.echo(f"fingerprint  {info.fingerprint}")
    typer.echo(f"public key   {info.public_key_b64}")
    typer.echo("register the public key on the ground service before the first upload")


def read_fc(connection: str, wait_s: float) -> FcStateReading:
    """One reading of the FC over its MAVLink connection, on a signed link (opened for it,
    then closed).

    The same signing as `terrafix fly` (`ArduPilotLink.establish_signing`): a fresh key is
    installed with SETUP_SIGNING and proven both ways before the state is read, and from then
    on every unsigned, wrongly signed or replayed packet is dropped, so an EXTENDED_SYS_STATE
    that someone without the key injects on the link cannot open the gate. Only a report that
    arrives after the handshake counts. A failed handshake (the FC holds another key, e.g.
    after a crashed flight; it does not sign; it is armed) is a failed reading, i.e. a
    refusal naming why. Closing the link clears the key on the (disarmed) FC again."""
    from terrafix.autopilot import ArduPilotLink, ArduPilotLinkConfig
    from terrafix.autopilot.errors import AutopilotError

    try:
        link = ArduPilotLink(ArduPilotLinkConfig(connection=connection))
        link.open()
    except Exception as exc:
        return FcStateReading(None, None, None, f"cannot open {connection}: {exc}")
    try:
        if not link.wait_for_fc(wait_s):
            return FcStateReading(None, None, None)  # no answer: the gate names it
        try:
            link.establish_signing()
        except AutopilotError as exc:
            why = str(exc).removesuffix(": take-off refused").removesuffix("; take-off refused")
            log.error("MAVLink signing with the flight controller on %s failed: %s",
                      connection, why)
            return FcStateReading(None, None, None, f"MAVLink signing handshake failed: {why}")
        return read_fc_state(link, wait_s=wait_s, newer_than_ns=time.monotonic_ns())
    finally:
        link.close()


def upload_command(
    flight_store: Annotated[Path, typer.Option(
        "--flight-store", help="The flight's tile store root (<flight_tiles_dir>/<flight_id>).")],
    recorder: Annotated[Path, typer.Option(
        "--recorder", help="The flight's recorder folder (a clean footer is required).")],
    fc: Annotated[str, typer.Option(
        "--fc", help="MAVLink connection to the flight controller (e.g. "
        "udpout:127.0.0.1:14551): it must say ON_GROUND and disarmed.")],
    url: Annotated[str | None, typer.Option(help="Ground service base URL (https://...).")]
    = None,
    ca_cert: Annotated[Path | None, typer.Option(help="CA certificate (PEM) of the ground "
                                                      "service.")] = None,
    config: Annotated[Path | None, typer.Option(
        help="TOML with the upload settings (the [upload] table of the onboard config, or a "
        "bare one).")] = None,
    device_key: Annotated[Path | None, typer.Option(help="Device key file.")] = None,
    flight_id: Annotated[str | None, typer.Option(help="Default: the store folder name.")]
    = None,
    max_in_call_retries: Annotated[int | None, typer.Option()] = None,
    max_per_tile_attempts: Annotated[int | None, typer.Option()] = None,
    batch_tiles: Annotated[int | None, typer.Option()] = None,
    fc_wait_s: Annotated[float, typer.Option(
        help="How long to wait for the FC's first answer (one reading, no polling).")] = 5.0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Upload a landed flight's tiles to the ground service (signed, resumable)."""
    try:
        cfg = _config(config, url, ca_cert, device_key, max_in_call_retries,
                      max_per_tile_attempts, batch_tiles)
    except UploadConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    fid = flight_id or flight_store.name
    reading = read_fc(fc, fc_wait_s)
    try:
        if progress:
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeRemainingColumn()) as bar:
                task = bar.add_task(f"upload {fid}", total=None)
                summary = upload_flight(flight_store, fid, cfg, reading, recorder,
                                        on_progress=lambda d, t: bar.update(task, completed=d,
                                                                            total=t))
        else:
            summary = upload_flight(flight_store, fid, cfg, reading, recorder)
    except GateRefusedError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except RetryBudgetSpentError as exc:
        typer.echo(f"{exc}\nnext_retry_at {exc.next_retry_at.isoformat()}", err=True)
        raise typer.Exit(3) from None
    except UploadRefusedError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(4) from None
    except UploadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps({k: v for k, v in summary.as_dict().items()
                           if k not in ("close_response",)}))


def _config(path: Path | None, url: str | None, ca_cert: Path | None, device_key: Path | None,
            retries: int | None, attempts: int | None, batch: int | None) -> UploadConfig:
    from pydantic import ValidationError

    base = UploadConfig() if path is None else _load(path)
    retry = base.retry.model_dump()
    if retries is not None:
        retry["max_in_call_retries"] = retries
    if attempts is not None:
        retry["max_per_tile_attempts"] = attempts
    data = base.model_dump()
    data["retry"] = retry
    for key, value in (("url", url), ("ca_cert", ca_cert), ("device_key", device_key),
                       ("batch_tiles", batch)):
        if value is not None:
            data[key] = value
    try:
        return UploadConfig.model_validate(data)
    except ValidationError as exc:
        raise UploadConfigError(f"upload settings: {exc}") from None


def _load(path: Path) -> UploadConfig:
    import tomllib

    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UploadConfigError(f"cannot read upload config {path}: {exc}") from None
    if "upload" in raw:
        from terrafix.config_files import validate_config

        return validate_config(UploadConfig, raw["upload"], str(path), "upload config",
                               UploadConfigError)
    return load_toml_config(UploadConfig, path, "upload config", UploadConfigError)
