"""`terrafix tiles ...`: fill, inspect, verify and serve a satellite tile cache.

info, explain, reconcile    look at a cache (read-only where possible)
provision geotiff|mbtiles|provider    fill it before flight (progress bar, resumable)
export-mbtiles              write it out for QGIS and other map tools
sectors, evict, migrate     maintain it
keygen, manifest, verify    sign what a flight needs, check it before take-off
serve                       run the satellite-provider API over it (TLS)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from terrafix.tiles.config import open_store
from terrafix.tiles.errors import TileCacheError
from terrafix.tiles.store import TileStore

app = typer.Typer(help="Satellite tile cache: provisioning, manifest, freshness, budget.",
                  no_args_is_help=True, add_completion=False)
provision_app = typer.Typer(help="Fill the cache before flight (resumable: rerun to continue).",
                            no_args_is_help=True, add_completion=False)
app.add_typer(provision_app, name="provision")

Root = Annotated[Path, typer.Option("--root", envvar="TERRAFIX_CACHE_ROOT",
                                    help="Cache folder (tiles, metadata, features).")]
Zooms = Annotated[list[int] | None, typer.Option("--zoom", "-z", help="Zoom level (repeatable).")]
CaptureDate = Annotated[str | None, typer.Option(
    "--capture-date", help="Capture date YYYY-MM-DD when the source does not carry one.")]


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


@contextmanager
def _store(root: Path, **kwargs: object) -> Iterator[TileStore]:
    try:
        store = open_store(root, **kwargs)  # type: ignore[arg-type]
    except TileCacheError as exc:
        raise _fail(exc) from exc
    try:
        yield store
    except TileCacheError as exc:
        raise _fail(exc) from exc
    finally:
        store.close()


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


@contextmanager
def _progress(label: str) -> Iterator[object]:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("tiles"), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


# --- overview ------------------------------------------------------------------------------
@app.command()
def info(root: Root, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Tile count, zooms, bounds, capture dates and disk use of a cache (read-only)."""
    with _store(root, read_only=True, reconcile="none") as store:
        s = store.summary()
        usage = store.disk_usage()
        doc = {
            "root": str(store.root), "backend": store.backend.dialect,
            "metadata": store.backend.location, "tiles": s.tile_count,
            "tile_bytes": s.total_bytes, "zooms": {str(k): v for k, v in s.zooms.items()},
            "bounds_wsen": s.bounds,
            "capture_dates": {d.isoformat(): n for d, n in s.capture_dates.items()},
            "quarantined": s.quarantined, "disk_bytes": usage,
            "budget_bytes": store.budget_bytes,
            "protected_areas": sorted(store.protected_areas()),
        }
    if as_json:
        typer.echo(json.dumps(doc, indent=1))
        return
    typer.echo(f"cache        {doc['root']} ({doc['backend']}: {doc['metadata']})")
    typer.echo(f"tiles        {s.tile_count} ({_fmt_bytes(s.total_bytes)}), budget "
               f"{_fmt_bytes(store.budget_bytes)}")
    typer.echo("zooms        " + (", ".join(f"z{z}: {n}" for z, n in s.zooms.items()) or "-"))
    if s.bounds:
        w, so, e, n = s.bounds
        typer.echo(f"bounds       W {w:.6f}  S {so:.6f}  E {e:.6f}  N {n:.6f}")
    dates = list(s.capture_dates.items())
    if dates:
        typer.echo(f"captured     {dates[0][0]} .. {dates[-1][0]} ("
                   + ", ".join(f"{d}: {n}" for d, n in dates[:6])
                   + (", ..." if len(dates) > 6 else "") + ")")
    typer.echo(f"quarantined  {s.quarantined}")
    typer.echo("disk use     " + ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in usage.items()))
    if doc["protected_areas"]:
        typer.echo(f"protected    {', '.join(doc['protected_areas'])}")


@app.command(context_settings={"ignore_unknown_options": True})  # negative LON is not an option
def explain(
    lat: Annotated[float, typer.Argument(help="Latitude, degrees.")],
    lon: Annotated[float, typer.Argument(help="Longitude, degrees.")],
    root: Root,
    on_date: Annotated[str | None, typer.Option("--date", help="Judge freshness at this date "
                                                "(YYYY-MM-DD, default today UTC).")] = None,
    zoom: Annotated[int | None, typer.Option("--zoom", "-z", help="Zoom (default: highest "
                                             "cached at the point).")] = None,
) -> None:
    """Why the imagery at LAT LON is served, downgraded or rejected."""
    from terrafix.tiles.explain import explain_point

    with _store(root, read_only=True, reconcile="none", today=_parse_date(on_date)) as store:
        for line in explain_point(store, lat, lon, zoom).lines():
            typer.echo(line)


@app.command()
def reconcile(root: Root, read_only: bool = typer.Option(
        False, "--read-only", help="Only report, change nothing.")) -> None:
    """Compare metadata rows with tile files; repair (or with --read-only, report) orphans."""
    with _store(root, read_only=read_only, reconcile="full") as store:
        report = store.reconcile_report
        if report.clean:
            typer.echo("clean: every row has its file and every file its row")
        for line in report.lines():
            typer.echo(line)


# --- provisioning --------------------------------------------------------------------------
@provision_app.command("geotiff")
def provision_geotiff_cmd(
    file: Annotated[Path, typer.Argument(help="GeoTIFF or COG (any CRS).")],
    root: Root,
    zoom: Zooms = None,
    capture_date: CaptureDate = None,
    source: Annotated[str | None, typer.Option(help="Source label (default: file name).")] = None,
    replace: Annotated[bool, typer.Option(help="Replace tiles already cached.")] = False,
) -> None:
    """Reproject a raster into tiles at the zoom nearest its resolution (or --zoom)."""
    from terrafix.tiles.provision.geotiff import provision_geotiff

    with _store(root) as store, _progress(f"geotiff {file.name}") as update:
        rep = provision_geotiff(store, file, zooms=zoom, capture_date=_parse_date(capture_date),
                                source=source, replace=replace, on_progress=update)
    typer.echo(f"{rep.tiles_written} tiles written, {rep.tiles_skipped_existing} already cached, "
               f"{rep.tiles_empty} empty; zooms {list(rep.zooms)}; captured {rep.capture_date}; "
               f"stretch {rep.stretch.low:.0f}..{rep.stretch.high:.0f} -> 1..255")


@provision_app.command("mbtiles")
def provision_mbtiles_cmd(
    file: Annotated[Path, typer.Argument(help="MBTiles file.")],
    root: Root,
    capture_date: CaptureDate = None,
    source: Annotated[str | None, typer.Option(help="Source label (default: file name).")] = None,
    replace: Annotated[bool, typer.Option(help="Replace tiles already cached.")] = False,
) -> None:
    """Import the tiles of an MBTiles file."""
    from terrafix.tiles.provision.mbtiles import import_mbtiles

    with _store(root) as store, _progress(f"mbtiles {file.name}") as update:
        rep = import_mbtiles(store, file, capture_date=_parse_date(capture_date), source=source,
                             replace=replace, on_progress=update)
    typer.echo(f"{rep.tiles_written} tiles written, {rep.tiles_skipped} already cached, "
               f"{rep.tiles_converted} converted to grayscale JPEG, of {rep.tiles_total}")


@provision_app.command("provider")
def provision_provider_cmd(
    url: Annotated[str, typer.Argument(help="Provider base URL, e.g. https://host:8443")],
    root: Root,
    zoom: Zooms = None,
    area: Annotated[Path | None, typer.Option(help="GeoJSON polygon of the area.")] = None,
    bbox: Annotated[str | None, typer.Option(help="Area as W,S,E,N degrees.")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="TERRAFIX_PROVIDER_API_KEY",
                                                help="API key.")] = None,
    token: Annotated[str | None, typer.Option(envvar="TERRAFIX_PROVIDER_TOKEN",
                                              help="Bearer token.")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle to verify TLS with.")] = None,
    workers: Annotated[int, typer.Option(help="Parallel downloads.")] = 4,
) -> None:
    """Download an area's tiles from the satellite provider (inventory, then GET z/x/y)."""
    import shapely

    from terrafix.tiles.geometry import load_polygon
    from terrafix.tiles.provision.provider import ProviderClient, provision_from_provider

    if (area is None) == (bbox is None):
        raise typer.BadParameter("give exactly one of --area or --bbox")
    if not zoom:
        raise typer.BadParameter("give at least one --zoom")
    try:
        if area is not None:
            polygon = load_polygon(area)
        else:
            w, s, e, n = (float(v) for v in str(bbox).split(","))
            polygon = shapely.box(w, s, e, n)
        client = ProviderClient(url, api_key=api_key, bearer_token=token, ca_file=ca_file)
    except (TileCacheError, ValueError) as exc:
        raise _fail(exc) from exc
    with client, _store(root) as store, _progress("provider") as update:
        rep = provision_from_provider(store, client, polygon, zoom, workers=workers,
                                      on_progress=update)
    typer.echo(f"{rep.tiles_written} tiles written, {rep.tiles_already_present} already cached, "
               f"{len(rep.tiles_unavailable)} unavailable at the provider, of {rep.tiles_needed}; "
               f"{rep.retries} retried requests")
    if rep.tiles_unavailable:
        raise typer.Exit(1)


@app.command("export-mbtiles")
def export_mbtiles_cmd(
    out: Annotated[Path, typer.Argument(help="MBTiles file to write.")],
    root: Root,
    zoom: Zooms = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export the cache to MBTiles (opens in QGIS)."""
    from terrafix.tiles.provision.mbtiles import export_mbtiles

    with _store(root, read_only=True, reconcile="none") as store, \
            _progress("export") as update:
        rep = export_mbtiles(store, out, zooms=zoom, overwrite=overwrite, on_progress=update)
    typer.echo(f"{rep.tiles_written} tiles written to {out}"
               + (f", {rep.tiles_skipped} corrupt tiles skipped" if rep.tiles_skipped else ""))


# --- maintenance ---------------------------------------------------------------------------
@app.command()
def sectors(
    file: Annotated[Path, typer.Argument(help="GeoJSON FeatureCollection of sector polygons "
                                         "with a 'classification' property.")],
    root: Root,
) -> None:
    """Adopt freshness sectors and reclassify every cached tile."""
    from terrafix.tiles.freshness import FreshnessPolicy

    with _store(root, reconcile="none") as store:
        changed = store.set_sectors(FreshnessPolicy.load(file))
        typer.echo(f"{len(store.freshness.sectors)} sectors in force; {changed} tiles reclassified")


@app.command()
def evict(
    root: Root,
    budget_bytes: Annotated[int | None, typer.Option(help="Budget to enforce (default: the "
                                                     "store's).")] = None,
) -> None:
    """Evict least-recently-used tiles (never protected corridors) down to the budget."""
    with _store(root, reconcile="none") as store:
        budget = budget_bytes or store.budget_bytes
        _count, used = store.backend.totals()
        if used <= budget:
            typer.echo(f"{_fmt_bytes(used)} used of {_fmt_bytes(budget)}: nothing to evict")
            return
        store.budget_bytes = budget
        evicted = store.make_room(0)
        typer.echo(f"evicted {len(evicted)} tiles; {_fmt_bytes(store.backend.totals()[1])} used "
                   f"of {_fmt_bytes(budget)}")


@app.command()
def migrate(root: Root) -> None:
    """Upgrade an older store's schema to this terrafix's version (explicit, never automatic)."""
    with _store(root, reconcile="none", check_schema=False, create=False) as store:
        before = store.backend.schema_version()
        after = store.backend.migrate()
        typer.echo(f"schema version {before} -> {after}")


# --- manifest ------------------------------------------------------------------------------
@app.command()
def keygen(
    private_key: Annotated[Path | None, typer.Argument(
        help="Ed25519 private key PEM to write (0600); default: the terrafix config folder's "
             "provisioning_ed25519.pem.")] = None,
    public_key: Annotated[Path | None, typer.Argument(
        help="Public key PEM to write; default: beside the private key.")] = None,
) -> None:
    """Create the Ed25519 key pair that signs flight manifests (keep it on the ground)."""
    from terrafix.config_paths import PROVISIONING_PUBLIC_KEY_FILE, provisioning_key_path
    from terrafix.tiles.manifest import generate_keypair

    private_key = private_key or provisioning_key_path()
    public_key = public_key or private_key.with_name(PROVISIONING_PUBLIC_KEY_FILE)
    if private_key.exists():
        raise _fail(TileCacheError(f"{private_key} exists; refusing to overwrite a key"))
    fp = generate_keypair(private_key, public_key)
    typer.echo(f"wrote {private_key} and {public_key}; fingerprint {fp} "
               "(pin it as map.signer_fingerprint in the onboard config)")


@app.command()
def manifest(
    out: Annotated[Path, typer.Argument(help="Manifest JSON to write.")],
    root: Root,
    flight_id: Annotated[str, typer.Option(help="Flight identifier.")],
    origin: Annotated[str, typer.Option(help="Take-off origin LAT,LON[,ALT_M].")],
    corridor: Annotated[Path, typer.Option(help="GeoJSON polygon of the route corridor.")],
    zoom: Annotated[list[int], typer.Option("--zoom", "-z",
                                            help="Flight zoom (repeatable: every map level "
                                                 "the flight matches at).")],
    model: Annotated[list[Path] | None, typer.Option(
        "--model", help="ONNX model file the flight loads (repeatable).")] = None,
    key: Annotated[Path | None, typer.Option(
        help="Ed25519 private key PEM (default: the terrafix config folder's).")] = None,
    protect: Annotated[bool, typer.Option(help="Protect the corridor from eviction.")] = True,
) -> None:
    """Sign what a flight reads: corridor tiles at every flight zoom, the features/ and
    retrieval/ folders, the models (refuses when a corridor tile is missing)."""
    from terrafix.config_paths import provisioning_key_path
    from terrafix.tiles.geometry import load_polygon
    from terrafix.tiles.manifest import build_manifest, load_private_key, write_signed

    try:
        parts = [float(v) for v in origin.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3):
        raise typer.BadParameter(f"--origin must be LAT,LON[,ALT], got {origin!r}")
    lat, lon, alt = (*parts, 0.0)[:3]
    with _store(root) as store:
        try:
            signing_key = load_private_key(key or provisioning_key_path())
            polygon = load_polygon(corridor)
            m = build_manifest(store, flight_id, lat, lon, alt, polygon, zoom,
                               models=model or [], signer=signing_key.public_key())
            write_signed(m, signing_key, out)
        except TileCacheError as exc:
            raise _fail(exc) from None
        if protect:
            store.protect_area(f"flight:{flight_id}", polygon)
    zooms = ",".join(f"z{z}" for z in m.flight_zooms)
    typer.echo(f"manifest for flight {flight_id}: {len(m.tiles)} tiles at {zooms}, "
               f"{len(m.files)} feature/index files, {len(m.models)} models -> {out}")


@app.command()
def verify(
    manifest_file: Annotated[Path, typer.Argument(help="Signed manifest JSON.")],
    root: Root,
    public_key: Annotated[Path | None, typer.Option(
        help="Ed25519 public key PEM of the signer (kept outside the cache).")] = None,
    fingerprint: Annotated[str | None, typer.Option(
        help="Fingerprint of the signer's key (what the onboard config pins).")] = None,
    models: Annotated[Path | None, typer.Option(
        help="Model folder holding the manifest's ONNX models.")] = None,
) -> None:
    """Pre-take-off check: no private key in the cache, signer and signature, every tile,
    feature, index and model file against its size and hash, no extra file, corridor
    coverage. Exit 1 = refuse."""
    from terrafix.tiles.manifest import load_public_key, verify_cache

    if (public_key is None) == (fingerprint is None):
        raise typer.BadParameter("give exactly one of --public-key or --fingerprint")
    try:
        pinned = load_public_key(public_key) if public_key is not None else str(fingerprint)
    except TileCacheError as exc:
        raise _fail(exc) from None
    with _store(root, read_only=True, reconcile="journal") as store:
        report = verify_cache(store, manifest_file, pinned, model_folder=models)
    if report.ok:
        typer.echo(f"OK: flight {report.flight_id}: signature valid, {report.tiles_checked} tiles, "
                   f"{report.files_checked} files, {report.models_checked} models verified "
                   f"({report.bytes_hashed / 1e6:.1f} MB), corridor covered")
        return
    typer.echo(f"REFUSED: flight {report.flight_id}:", err=True)
    for p in report.problems:
        typer.echo(f"  {p}", err=True)
    raise typer.Exit(1)


# --- provider server -----------------------------------------------------------------------
@app.command()
def serve(
    root: Root,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8443,
    api_key: Annotated[list[str] | None,
                       typer.Option(help="Accepted API key (repeatable).")] = None,
    token: Annotated[list[str] | None,
                     typer.Option(help="Accepted bearer token (repeatable).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate PEM.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server key PEM.")] = None,
) -> None:
    """Serve the cache as a satellite-provider API (ground side; never run in flight)."""
    import uvicorn

    from terrafix.tiles.provider_server import create_app

    keys = list(api_key or []) + [k for k in os.environ.get("TERRAFIX_PROVIDER_API_KEYS",
                                                             "").split(",") if k]
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("give both --tls-cert and --tls-key, or neither")
    with _store(root, read_only=True) as store:
        try:
            fastapi_app = create_app(store, api_keys=keys, bearer_tokens=token or [])
        except TileCacheError as exc:
            raise _fail(exc) from exc
        uvicorn.run(fastapi_app, host=host, port=port, log_level="info",
                    ssl_certfile=str(tls_cert) if tls_cert else None,
                    ssl_keyfile=str(tls_key) if tls_key else None)
