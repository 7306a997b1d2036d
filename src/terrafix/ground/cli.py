"""`terrafix ground ...`: the ground service (never run in flight).

serve                      upload + operator + satellite-provider API over TLS
devices add|list|revoke    the aircraft registry, through the operator API
vote                       re-evaluate the votes of an area now
seed-base                  load base imagery (a provisioned tile cache) into the serving store
status                     vote counts of a ground root
migrate                    upgrade the ground database schema
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from terrafix.ground.config import GroundConfig, load_ground_config
from terrafix.ground.errors import GroundError

app = typer.Typer(help="Ground service: registered aircraft, signed ingest, voting, serving.",
                  no_args_is_help=True, add_completion=False)
devices_app = typer.Typer(help="Aircraft registry (operator API).", no_args_is_help=True,
                          add_completion=False)
app.add_typer(devices_app, name="devices")

ConfigOpt = Annotated[Path, typer.Option("--config", envvar="TERRAFIX_GROUND_CONFIG",
                                         help="ground.toml (see terrafix.ground.config).")]
UrlOpt = Annotated[str, typer.Option("--url", envvar="TERRAFIX_GROUND_URL",
                                     help="Ground service base URL, e.g. https://host:8443")]
TokenOpt = Annotated[str, typer.Option("--token", envvar="TERRAFIX_GROUND_OPERATOR_TOKEN",
                                       help="Operator bearer token.")]
CaOpt = Annotated[Path | None, typer.Option("--ca-file", help="CA bundle to verify TLS with.")]


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


def _config(path: Path) -> GroundConfig:
    try:
        return load_ground_config(path)
    except GroundError as exc:
        raise _fail(exc) from exc


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(v for v in os.environ.get(name, "").split(",") if v)


@app.command("serve")
def serve_cmd(
    config: ConfigOpt,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8443,
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate PEM.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server key PEM.")] = None,
    insecure_http: Annotated[bool, typer.Option(
        help="Serve plain HTTP (only behind a TLS-terminating proxy).")] = False,
) -> None:
    """Run the ground service (TLS). Credentials from the config, or the environment:
    TERRAFIX_GROUND_OPERATOR_TOKENS, TERRAFIX_PROVIDER_API_KEYS (comma-separated)."""
    import uvicorn

    from terrafix.ground.server import create_ground_app
    from terrafix.ground.service import GroundService

    cfg = _config(config)
    extra = {"operator_tokens": cfg.operator_tokens + _env_list("TERRAFIX_GROUND_OPERATOR_TOKENS"),
             "provider_api_keys": cfg.provider_api_keys + _env_list("TERRAFIX_PROVIDER_API_KEYS")}
    try:
        cfg = GroundConfig.model_validate({**cfg.model_dump(by_alias=True), **extra})
    except ValueError as exc:
        raise _fail(exc) from exc
    if (tls_cert is None or tls_key is None) and not insecure_http:
        raise typer.BadParameter("give --tls-cert and --tls-key (or --insecure-http behind a "
                                 "TLS proxy)")
    if not cfg.operator_tokens or not (cfg.provider_api_keys or cfg.provider_tokens):
        raise _fail(GroundError("the ground service needs at least one operator token and one "
                                "provider API key or token"))
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        svc = GroundService.open(cfg)
    except GroundError as exc:
        raise _fail(exc) from exc
    rep = svc.startup_reconcile
    typer.echo(f"ground service at {cfg.root}: reconcile removed {rep.partial_writes} partial "
               f"writes, {len(rep.orphan_blobs)} orphan blobs; {svc.db.candidate_count()} "
               "candidates", err=True)
    try:
        uvicorn.run(create_ground_app(svc), host=host, port=port, log_level="warning",
                    timeout_graceful_shutdown=10,
                    ssl_certfile=str(tls_cert) if tls_cert else None,
                    ssl_keyfile=str(tls_key) if tls_key else None)
    finally:
        svc.close()


def _operator(url: str, token: str, ca_file: Path | None):  # -> OperatorClient
    from terrafix.ground.client import OperatorClient

    return OperatorClient(url, token, ca_file=ca_file)


@devices_app.command("add")
def devices_add(
    name: Annotated[str, typer.Argument(help="Aircraft name (e.g. its tail number).")],
    public_key: Annotated[Path, typer.Argument(help="Device public key: PEM or base64 raw.")],
    url: UrlOpt, token: TokenOpt, ca_file: CaOpt = None,
) -> None:
    """Register an aircraft's long-term device key."""
    try:
        text = public_key.read_text("ascii")
        op = _operator(url, token, ca_file)
        d = op.add_device(name, text)
    except (OSError, UnicodeDecodeError, GroundError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"{d['fingerprint']}  {d['name']}  registered")


@devices_app.command("list")
def devices_list(url: UrlOpt, token: TokenOpt, ca_file: CaOpt = None) -> None:
    """Registered aircraft, revoked ones marked."""
    try:
        devices = _operator(url, token, ca_file).list_devices()
    except GroundError as exc:
        raise _fail(exc) from exc
    for d in devices:
        state = f"REVOKED ({d['revoked_reason']})" if d["revoked_utc"] else "active"
        typer.echo(f"{d['fingerprint']}  {d['name']:<24}  {state}")


@devices_app.command("revoke")
def devices_revoke(
    fingerprint: Annotated[str, typer.Argument(help="Device fingerprint (devices list).")],
    url: UrlOpt, token: TokenOpt, ca_file: CaOpt = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the registry).")] = "",
) -> None:
    """Revoke an aircraft: its sessions are refused from now on."""
    try:
        d = _operator(url, token, ca_file).revoke_device(fingerprint, reason)
    except GroundError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{d['fingerprint']}  {d['name']}  revoked")


@app.command("vote")
def vote_cmd(
    config: ConfigOpt,
    bbox: Annotated[str, typer.Option(help="Area as W,S,E,N degrees.")],
    zoom: Annotated[list[int], typer.Option("--zoom", "-z", help="Zoom (repeatable).")],
) -> None:
    """Re-evaluate every voted tile of an area now and print the counts."""
    from terrafix.geo.tiles import lonlat_to_tile
    from terrafix.ground.service import GroundService

    try:
        w, s, e, n = (float(v) for v in bbox.split(","))
    except ValueError:
        raise typer.BadParameter(f"--bbox must be W,S,E,N degrees, got {bbox!r}") from None
    cfg = _config(config)
    try:
        with GroundService.open(cfg, start_voter=False, reconcile=False) as svc:
            tiles = []
            for z in zoom:
                nw, se = lonlat_to_tile(w, n, z), lonlat_to_tile(e, s, z)
                tiles += svc.db.candidate_tiles_in(z, nw.x, se.x, nw.y, se.y)
            evaluated = svc.revote(tiles)
            counts = svc.vote_counts()
    except GroundError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{evaluated} tiles evaluated; all votes: {counts['TRUSTED']} trusted, "
               f"{counts['CONFLICT']} conflict, {counts['PENDING']} pending")


@app.command("seed-base")
def seed_base_cmd(
    config: ConfigOpt,
    from_cache: Annotated[Path, typer.Option(help="A provisioned tile cache root.")],
) -> None:
    """Load base imagery into the serving store (tiles already served are kept). Run it with
    the service stopped."""
    from terrafix.ground.serving import copy_from_store, open_serving_store, seed_base
    from terrafix.tiles import TileCacheError, open_store

    cfg = _config(config)
    try:
        with open_store(from_cache, read_only=True) as src, \
                open_serving_store(cfg.root, cfg.dsn, cfg.schema_name) as dst:
            n = seed_base(dst, copy_from_store(src))
    except TileCacheError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{n} base tiles written")


@app.command("status")
def status_cmd(config: ConfigOpt) -> None:
    """Vote counts and candidates of a ground root."""
    from terrafix.ground.db import GroundDb

    cfg = _config(config)
    try:
        db = GroundDb.open(cfg.root, dsn=cfg.dsn, schema=cfg.schema_name, create=False)
    except GroundError as exc:
        raise _fail(exc) from exc
    c = db.vote_counts()
    typer.echo(f"{db.candidate_count()} candidates; {c['TRUSTED']} trusted, {c['CONFLICT']} "
               f"conflict, {c['PENDING']} pending, {db.pending_evaluations()} to evaluate")
    db.close()


@app.command("migrate")
def migrate_cmd(config: ConfigOpt) -> None:
    """Upgrade the ground database to this terrafix's schema."""
    from terrafix.ground.db import GroundDb

    cfg = _config(config)
    try:
        db = GroundDb.open(cfg.root, dsn=cfg.dsn, schema=cfg.schema_name, check_schema=False)
        typer.echo(f"schema version {db.migrate()}")
        db.close()
    except GroundError as exc:
        raise _fail(exc) from exc
