"""Schemathesis against an HTTP service's own OpenAPI document.

`fuzz_openapi(base_url, headers)` reads `<base_url>/openapi.json` and sends, for every
operation, requests generated from the schema (valid and invalid bodies, paths, queries) to
the running server over real HTTP. Verdicts per request:
- crash: a 5xx answer (schemathesis' `not_a_server_error`) or a connection error;
- hang: no answer within `timeout_s`;
- schema violation (counted and listed, not a crash): any other failed default check, e.g. a
  422 body that differs from the documented shape.

Generated requests are both schema-valid and schema-invalid (schemathesis' negative mode).
The target is anything with an OpenAPI document: `ground_service()` starts the ground service
(upload, operator and provider routes) on a real TLS server on loopback, `provider_service()`
the satellite provider API of `terrafix.tiles.provider_server` over a small real store; another
running service is pointed at with `bench/fuzz.py --api-url URL --api-header 'Name: value'`.
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


@contextlib.contextmanager
def ground_service() -> Iterator[tuple[str, dict[str, str], str, dict[str, str]]]:
    """(base URL, headers, CA file, path parameters) of the ground service
    (terrafix.ground.server: upload, operator and provider routes) on a real uvicorn TLS
    server on loopback, over a fresh SQLite root with one registered aircraft, an open session
    and a few served tiles. The headers carry both the provider API key and the operator
    bearer token, and the path parameters name the open session and the registered device,
    so generated requests get past authentication and lookup to the parsers."""
    import secrets
    from datetime import date

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from terrafix.geo.tiles import TileId
    from terrafix.ground.client import UploadClient, public_key_b64
    from terrafix.ground.config import AreaConfig, GroundConfig
    from terrafix.ground.server import create_ground_app
    from terrafix.ground.service import GroundService
    from terrafix.tiles import NewTile
    from terrafix.tiles.provider_server import API_KEY_HEADER, serve_in_thread
    from terrafix.tiles.tls import make_test_pki
    from tests.fuzz.targets import _tile_bytes

    with tempfile.TemporaryDirectory(prefix="terrafix-fuzz-ground-") as tmp:
        tls = make_test_pki(Path(tmp) / "tls")
        operator, api_key = secrets.token_hex(16), secrets.token_hex(16)
        cfg = GroundConfig(root=Path(tmp) / "ground", operator_tokens=(operator,),
                           provider_api_keys=(api_key,),
                           area=AreaConfig(bbox=(-105.16, 40.12, -105.12, 40.16)))
        svc = GroundService.open(cfg)
        try:
            svc.serving.put_many([NewTile(TileId(18, 53000 + i, 98000), _tile_bytes(i),
                                          date(2024, 5, 1), "fuzz") for i in range(3)])
            device = Ed25519PrivateKey.generate()
            rec, _ = svc.ingest.register_device(public_key_b64(device), "fuzz-aircraft")
            with serve_in_thread(create_ground_app(svc),  # type: ignore[arg-type]
                                 tls_cert=tls.server_cert, tls_key=tls.server_key) as url:
                with UploadClient(url, device, "fuzz-flight", ca_file=tls.ca_cert) as c:
                    sid = c.open()
                yield (url, {API_KEY_HEADER: api_key, "Authorization": f"Bearer {operator}"},
                       str(tls.ca_cert), {"session_id": sid, "fp": rec.fingerprint})
        finally:
            svc.close()


def schema_checks_excluded() -> list:
    """The one built-in check left out of `schema_violations`: positive_data_acceptance
    ("a schema-valid request is accepted"). Its premise cannot hold for refusals that depend
    on relations between values or on server state, which JSON Schema cannot express and the
    API documents as 4xx: a tile x or y beyond 2^z - 1, a public key that is valid base64 but
    not 32 bytes, a certificate window that is not current, a signature that does not verify.
    Every other check (status codes and bodies as documented, content types, headers,
    schema-invalid requests refused, missing credentials refused) counts."""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    return [positive_data_acceptance]


def fuzz_openapi(base_url: str, headers: dict[str, str], *, max_examples: int = 100,
                 timeout_s: float = 10.0, seed: int = 1, verify: str | bool = True,
                 checks: list | None = None, excluded_checks: list | None = None,
                 path_parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """Run every operation of the service's OpenAPI; returns the counts (module docstring).
    verify: the CA file of a TLS service (or False). checks / excluded_checks: the
    schemathesis checks that count as schema violations (default: all built-in ones).
    path_parameters: values pinned for the path parameters of these names (an existing
    session or device), the others are generated."""
    import requests
    import schemathesis

    doc = requests.get(f"{base_url}/openapi.json", verify=verify, timeout=timeout_s).json()
    schema = schemathesis.openapi.from_dict(doc)
    out: dict[str, Any] = {"inputs": 0, "crashes": 0, "hangs": 0, "schema_violations": 0,
                           "operations": {}, "crash_examples": [], "violation_examples": []}
    t0 = time.perf_counter()
    for result in schema.get_all_operations():
        op = result.ok()
        name = f"{op.method.upper()} {op.path}"
        stats = {"inputs": 0, "crashes": 0, "hangs": 0, "schema_violations": 0}
        pinned = {k: v for k, v in (path_parameters or {}).items() if f"{{{k}}}" in op.path}
        _run_operation(op, name, stats, out, base_url, headers, max_examples, timeout_s, seed,
                       verify, checks, excluded_checks, pinned)
        out["operations"][name] = stats
        for k in ("inputs", "crashes", "hangs", "schema_violations"):
            out[k] += stats[k]
    out["seconds"] = time.perf_counter() - t0
    return out


def _run_operation(op, name: str, stats: dict[str, int], out: dict[str, Any], base_url: str,
                   headers: dict[str, str], max_examples: int, timeout_s: float,
                   seed: int, verify: str | bool = True, checks: list | None = None,
                   excluded_checks: list | None = None,
                   pinned: dict[str, str] | None = None) -> None:
    """Generated requests for one API operation (counts into `stats`, examples into `out`)."""
    import requests
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    kw = {"path_parameters": pinned} if pinned else {}
    strategies = [op.as_strategy(**kw)]
    # schema-invalid requests too (an operation without parameters has none to negate)
    with contextlib.suppress(Exception):
        strategies.append(op.as_strategy(GenerationMode.NEGATIVE, **kw))

    @hseed(seed)
    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def one(case) -> None:
        stats["inputs"] += 1
        try:
            response = case.call(base_url=base_url, headers=headers, timeout=timeout_s,
                                 verify=verify)
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
            case.validate_response(response, checks=checks, excluded_checks=excluded_checks,
                                   headers=headers, transport_kwargs={"verify": verify})
        except (Exception, BaseExceptionGroup) as exc:  # FailureGroup is a BaseExceptionGroup
            stats["schema_violations"] += 1
            _keep(out["violation_examples"], f"{name}: {case.method} {case.formatted_path} "
                  f"-> {response.status_code} {response.text[:160]!r}: {_failure_text(exc)}")

    one()


def _failure_text(exc: BaseException) -> str:
    """The failing checks' titles and messages, one line (a FailureGroup holds several)."""
    parts = []
    for f in getattr(exc, "exceptions", None) or [exc]:
        title = getattr(f, "title", type(f).__name__)
        parts.append(f"{title}: {str(getattr(f, 'message', f))[:200]}")
    return " | ".join(parts).replace("\n", " ")


def _keep(examples: list[str], text: str, limit: int = 5) -> None:
    if len(examples) < limit:
        examples.append(text[:600])
