"""Schemathesis against an HTTP service's own OpenAPI document.

`fuzz_openapi(base_url, headers)` reads `<base_url>/openapi.json` and sends, for every
operation, requests generated from the schema (valid and invalid bodies, paths, queries) to
the running server over real HTTP. Verdicts per request:
- crash: a 5xx answer (schemathesis' `not_a_server_error`) or a connection error;
- hang: no answer within `timeout_s`;
- schema violation (counted and listed, not a crash): any other failed default check, e.g. a
  422 body that differs from the documented shape.

The target is anything with an OpenAPI document: `provider_service()` starts the satellite
provider API of `terrafix.tiles.provider_server` over a small real store; the ground service
is pointed at the same way (`bench/fuzz.py --api-url URL --api-header 'Name: value'`).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

API_KEY = "fuzz-key-0123456789"


@contextlib.contextmanager
def provider_service() -> Iterator[tuple[str, dict[str, str]]]:
    """(base URL, auth headers) of the satellite-provider API on loopback, serving a store
    with a few tiles."""
    from datetime import date

    from terrafix.tiles import open_store
    from terrafix.tiles.provider_server import API_KEY_HEADER, create_app, serve_in_thread
    from tests.fuzz.targets import _tile_bytes

    with tempfile.TemporaryDirectory(prefix="terrafix-fuzz-api-") as tmp:
        store = open_store(Path(tmp))
        from terrafix.geo.tiles import TileId

        for i in range(3):
            store.put(TileId(18, 53000 + i, 98000), _tile_bytes(i), capture_date=date(2024, 5, 1),
                      source="fuzz")
        try:
            with serve_in_thread(create_app(store, api_keys=[API_KEY])) as url:
                yield url, {API_KEY_HEADER: API_KEY}
        finally:
            store.close()


def fuzz_openapi(base_url: str, headers: dict[str, str], *, max_examples: int = 100,
                 timeout_s: float = 10.0, seed: int = 1) -> dict[str, Any]:
    """Run every operation of the service's OpenAPI; returns the counts (module docstring)."""
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    out: dict[str, Any] = {"inputs": 0, "crashes": 0, "hangs": 0, "schema_violations": 0,
                           "operations": {}, "crash_examples": [], "violation_examples": []}
    t0 = time.perf_counter()
    for result in schema.get_all_operations():
        op = result.ok()
        name = f"{op.method.upper()} {op.path}"
        stats = {"inputs": 0, "crashes": 0, "hangs": 0, "schema_violations": 0}
        _run_operation(op, name, stats, out, base_url, headers, max_examples, timeout_s, seed)
        out["operations"][name] = stats
        for k in ("inputs", "crashes", "hangs", "schema_violations"):
            out[k] += stats[k]
    out["seconds"] = time.perf_counter() - t0
    return out


def _run_operation(op, name: str, stats: dict[str, int], out: dict[str, Any], base_url: str,
                   headers: dict[str, str], max_examples: int, timeout_s: float,
                   seed: int) -> None:
    """Generated requests for one API operation (counts into `stats`, examples into `out`)."""
    import requests
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from schemathesis.checks import not_a_server_error

    @hseed(seed)
    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def one(case) -> None:
        stats["inputs"] += 1
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=timeout_s)
        except requests.Timeout:
            stats["hangs"] += 1
            return
        except requests.ConnectionError as exc:
            stats["crashes"] += 1
            _keep(out["crash_examples"], f"{name}: connection failed: {exc}")
            return
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is a BaseExceptionGroup
            stats["crashes"] += 1
            _keep(out["crash_examples"], f"{name}: {exc}")
            return
        try:
            case.validate_response(response)
        except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is a BaseExceptionGroup
            stats["schema_violations"] += 1
            _keep(out["violation_examples"], f"{name}: {str(exc).splitlines()[0:3]}")

    one()


def _keep(examples: list[str], text: str, limit: int = 5) -> None:
    if len(examples) < limit:
        examples.append(text[:600])
