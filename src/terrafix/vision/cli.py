"""`terrafix vps`: provision the visual-positioning data of a tile cache, locate one image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terrafix.vision.errors import VisionError
from terrafix.vision.provision import LevelConfig

app = typer.Typer(help="Visual positioning: map features, retrieval index, single fixes.",
                  no_args_is_help=True)


def _parse_level(text: str) -> LevelConfig:
    try:
        z, chunk, overlap = text.split(":")
        return LevelConfig(z=int(z), chunk_m=float(chunk), overlap=float(overlap))
    except ValueError as exc:
        raise typer.BadParameter(f"level {text!r} must be ZOOM:CHUNK_M:OVERLAP, "
                                 "e.g. 18:700:0.45") from exc


@app.command()
def provision(
    cache_root: Annotated[Path, typer.Argument(
        help="Tile cache root (features/ and retrieval/ are written under it).")],
    geotiff: Annotated[Path | None, typer.Option(
        help="Map imagery as a GeoTIFF/COG instead of the cache's tiles.")] = None,
    extractor: Annotated[list[str] | None, typer.Option(
        help="Feature type to build (repeatable): xfeat, sift; default both.")] = None,
    level: Annotated[list[str] | None, typer.Option(
        help="ZOOM:CHUNK_M:OVERLAP (repeatable); default: the zooms the cache holds (z19 "
        "and finer: 300 m chunks, 50% overlap; z18 and coarser: 700 m, 45%); with --geotiff "
        "z19 and z18.")] = None,
    models: Annotated[Path, typer.Option(help="Model cache (XFeat).")] = Path("build/models"),
) -> None:
    """Compute map features and the chunk retrieval index for a tile cache (before flight),
    from the cache's own tiles (default) or from a GeoTIFF."""
    from terrafix.vision import provision as step
    from terrafix.vision.features import SiftExtractor
    from terrafix.vision.rasters import raster_from_geotiff, rasters_from_store
    from terrafix.vision.xfeat import MAP_WINDOW_SIZE, XFeatExtractor

    if level:
        cfg = step.ProvisionConfig(levels=tuple(_parse_level(t) for t in level))
    elif geotiff is None:
        cfg = step.ProvisionConfig(levels=_cache_levels(cache_root))
    else:
        cfg = step.ProvisionConfig()
    for name in extractor or ["xfeat", "sift"]:
        if name == "xfeat":
            ext = XFeatExtractor.open(models, [MAP_WINDOW_SIZE])
        elif name == "sift":
            ext = SiftExtractor()
        else:
            raise typer.BadParameter(f"extractor {name!r} must be xfeat or sift")
        try:
            if geotiff is not None:
                path = step.main(cfg, cache_root, lambda z: [raster_from_geotiff(geotiff, z)],
                                 ext)
            else:
                from terrafix.tiles.config import open_store

                store = open_store(cache_root, read_only=True)
                try:
                    path = step.main(cfg, cache_root, lambda z, s=store: rasters_from_store(s, z),
                                     ext, merge_areas=True)
                finally:
                    store.close()
        except VisionError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"{name}: {path}")


def _cache_levels(cache_root: Path) -> tuple[LevelConfig, ...]:
    """The levels for the zooms the cache holds (`levels_for_zooms`), said on the console."""
    from terrafix.tiles.config import open_store
    from terrafix.vision.provision import levels_for_zooms

    if not Path(cache_root).is_dir():
        typer.echo(f"error: {cache_root} is not a tile cache folder", err=True)
        raise typer.Exit(1)
    store = open_store(cache_root, read_only=True)
    try:
        zooms = sorted(store.summary().zooms)
    finally:
        store.close()
    try:
        levels = levels_for_zooms(zooms)
    except VisionError as exc:
        typer.echo(f"error: {cache_root}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("levels from the cache's zooms: " + ", ".join(
        f"z{lv.z} ({lv.chunk_m:.0f} m chunks, {lv.overlap:.0%} overlap)" for lv in levels))
    return levels
