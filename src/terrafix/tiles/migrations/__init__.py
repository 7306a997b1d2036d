"""Plain numbered SQL migrations, one folder per SQL dialect.

`NNNN_description.sql` files are applied in order; the store records the highest applied
number in `schema_version`. Opening a store never upgrades it silently: a new store gets every
migration, an older one is refused until `terrafix tiles migrate` is run, and a newer one (written
by a later terrafix) is refused outright.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from terrafix.tiles.errors import SchemaVersionError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: its number, name and text."""

    version: int
    name: str
    sql: str


def migrations(dialect: str) -> list[Migration]:
    """The migrations of a dialect ("sqlite" or "postgres"), sorted by number."""
    folder = resources.files(__name__).joinpath(dialect)
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    numbers = [mig.version for mig in found]
    if numbers != list(range(1, len(found) + 1)):
        raise SchemaVersionError(f"{dialect} migrations must be numbered 1..n without gaps, "
                                 f"found {numbers}")
    return found


def latest_version(dialect: str) -> int:
    """The schema version this terrafix writes and expects."""
    return len(migrations(dialect))


def check_version(found: int, dialect: str, where: str) -> None:
    """Raise unless the store at `where` has exactly the expected schema version."""
    expected = latest_version(dialect)
    if found < expected:
        raise SchemaVersionError(
            f"tile store {where} has schema version {found}, older than the {expected} this "
            f"terrafix expects; upgrade it explicitly with `terrafix tiles migrate`")
    if found > expected:
        raise SchemaVersionError(
            f"tile store {where} has schema version {found}, newer than the {expected} this "
            f"terrafix understands; use the terrafix version that wrote it")
