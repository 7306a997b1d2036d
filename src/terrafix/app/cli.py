"""The `terrafix` command-line tool.

Each package that has commands exposes a `typer.Typer` named `app` in its own `cli.py`; this
module only mounts them, so that commands live next to the code they drive.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import typer

from terrafix import __version__
from terrafix.app import fly_cli, replay_cli
from terrafix.eval import cli as eval_cli
from terrafix.ground import cli as ground_cli
from terrafix.inference import cli as models_cli
from terrafix.recorder import cli as recorder_cli
from terrafix.review import cli as review_cli
from terrafix.sim import cli as sim_cli
from terrafix.tiles import cli as tiles_cli
from terrafix.upload import cli as upload_cli
from terrafix.vision import cli as vps_cli

app = typer.Typer(
    name="terrafix",
    help="Onboard GNSS-denied navigation for fixed-wing UAVs.",
    no_args_is_help=True,
    add_completion=False,
)

# --- sub-command groups (one line each; keep sorted) ------------------------------------------
app.command("eval")(eval_cli.evaluate_command)
app.command("demo")(fly_cli.demo_command)
app.add_typer(recorder_cli.app, name="fdr")
app.command("fly")(fly_cli.fly_command)
app.add_typer(ground_cli.app, name="ground")
app.command("keys")(upload_cli.keys_command)
app.add_typer(models_cli.app, name="models")
app.command("replay")(replay_cli.replay_command)
app.command("review")(review_cli.review_command)
app.add_typer(sim_cli.app, name="sim")
app.command("sim-fc")(fly_cli.sim_fc_command)
app.command("sitl-demo")(fly_cli.sitl_demo_command)
app.add_typer(tiles_cli.app, name="tiles")
app.command("upload")(upload_cli.upload_command)
app.add_typer(vps_cli.app, name="vps")


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[_StderrNow()],
    )
    if not verbose:
        # one INFO line per HTTP request (upload batches, provisioning) is log-file detail
        logging.getLogger("httpx").setLevel(logging.WARNING)


class _StderrNow(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time, so that a live progress bar (which
    redirects stderr) prints log lines above itself instead of being torn by them."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


@app.command()
def version() -> None:
    """Print the terrafix version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
