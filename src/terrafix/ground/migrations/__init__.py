"""Numbered SQL migrations of the ground metadata, one folder per dialect (the house pattern
of `terrafix.tiles.migrations`): `NNNN_name.sql` applied in order, the highest applied number
kept in `schema_version`, and a store of another version refused at connect."""

from __future__ import annotations

import re
from importlib import resources

from terrafix.ground.errors import GroundConfigError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations(dialect: str) -> list[tuple[int, str]]:
    """(version, sql) of `dialect` ("sqlite" or "postgres"), numbered 1..n."""
    found = []
    for entry in resources.files(__name__).joinpath(dialect).iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append((int(m.group(1)), entry.read_text("utf-8")))
    found.sort()
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise GroundConfigError(f"{dialect} ground migrations must be numbered 1..n")
    return found


def latest_version(dialect: str) -> int:
    return len(migrations(dialect))


def check_version(found: int, dialect: str, where: str) -> None:
    expected = latest_version(dialect)
    if found != expected:
        hint = ("run `terrafix ground migrate`" if found < expected
                else "use the terrafix version that wrote it")
        raise GroundConfigError(f"ground database {where} has schema version {found}, this "
                                f"terrafix expects {expected}; {hint}")
