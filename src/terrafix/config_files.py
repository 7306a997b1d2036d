"""Reading the TOML configs of the navigator, the onboard program and the tools around them.

One place for the error an integrator sees when a config is wrong: every offending key with
its dotted path, what was wrong with it and the value that was given, so a bad config is a
clear refusal at start-up rather than a surprise in flight.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def validate_config(model: type[M], data: dict[str, Any], source: str, what: str,
                    error: type[Exception]) -> M:
    """`model` validated from `data`; on failure `error` listing each bad key, why, and the
    value given (`what` names the config, e.g. "navigation config")."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"invalid {what} {source}:"]
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            lines.append(f"  {loc}: {err['msg']} (got {err.get('input')!r})")
        raise error("\n".join(lines)) from None


def load_toml_config(model: type[M], path: str | Path, what: str,
                     error: type[Exception]) -> M:
    """`model` read from a TOML file; an unreadable or malformed file is `error` naming it."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"cannot read {what} {p}: {exc}") from None
    return validate_config(model, data, str(p), what, error)
