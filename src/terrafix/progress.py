"""One progress line for every long job (simulation, provisioning, the live flight, replay).

On a terminal it is a rich progress bar on stderr with the figures that matter for the job
(frames, fixes, current 95% radius, GPS_INPUT rate...). Anywhere else (a log file, a test, CI)
nothing is redrawn: one line with the final state is printed when the job ends, so captured
consoles stay short.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class ProgressLine:
    """What a job updates: `advance(n)` / `update(completed=..., total=...)`, `figures` text."""

    def __init__(self, description: str, total: int | None, unit: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.description = description
        self.unit = unit
        self.total = total
        self.completed = 0
        self.figures = ""
        self._t0 = time.monotonic()
        self._console = Console(stderr=True)
        self.live = self._console.is_terminal
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TextColumn(unit),
                             TextColumn("{task.fields[figures]}"), TimeElapsedColumn(),
                             TimeRemainingColumn(), console=self._console,
                             disable=not self.live)
        self._task = self._bar.add_task(description, total=total, figures="")
        self._bar.start()

    def advance(self, n: int = 1, figures: str | None = None) -> None:
        self.update(completed=self.completed + n, figures=figures)

    def update(self, completed: int | None = None, total: int | None = None,
               figures: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if figures is not None:
            self.figures = figures
        self._bar.update(self._task, completed=self.completed, total=self.total,
                         figures=self.figures)

    def close(self) -> None:
        self._bar.stop()
        if not self.live:
            of = f"/{self.total}" if self.total else ""
            extra = f", {self.figures}" if self.figures else ""
            print(f"{self.description}: {self.completed}{of} {self.unit}{extra} "
                  f"({time.monotonic() - self._t0:.0f} s)", file=sys.stderr, flush=True)


@contextmanager
def progress(description: str, total: int | None, unit: str = "") -> Iterator[ProgressLine]:
    line = ProgressLine(description, total, unit)
    try:
        yield line
    finally:
        line.close()
