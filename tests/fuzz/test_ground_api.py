"""Schemathesis against the ground service's own OpenAPI document, over real HTTPS: the app of
terrafix.ground.server on uvicorn with TLS on loopback, over a fresh SQLite root with a
registered aircraft and an open session (pinned into the session and device paths, so the
requests reach the batch, close and revoke parsers). Schema-valid and schema-invalid
requests, a bounded number per operation (the long campaign is bench/fuzz.py)."""

from __future__ import annotations

import ssl

import httpx

from tests.fuzz.api import fuzz_openapi, ground_service, schema_checks_excluded

EXAMPLES = 40  # per operation: ~10 s here (11 operations)


def test_the_ground_api_never_answers_5xx_and_answers_as_its_openapi_says() -> None:
    with ground_service() as (url, headers, ca_file, pinned):
        result = fuzz_openapi(url, headers, max_examples=EXAMPLES, timeout_s=30.0,
                              verify=ca_file, excluded_checks=schema_checks_excluded(),
                              path_parameters=pinned)
    ops = result["operations"]
    for route in ("POST /v1/upload/sessions", "POST /v1/upload/sessions/{session_id}/batches",
                  "POST /v1/upload/sessions/{session_id}/close", "POST /v1/admin/devices",
                  "POST /v1/admin/devices/{fp}/revoke", "GET /v1/admin/votes/{z}/{x}/{y}",
                  "POST /v1/inventory", "GET /v1/tiles/{z}/{x}/{y}.jpg"):
        assert ops[route]["inputs"] >= EXAMPLES // 2, (route, ops.get(route))
    assert result["crashes"] == 0, result["crash_examples"]
    assert result["hangs"] == 0
    assert result["schema_violations"] == 0, result["violation_examples"]


def test_the_ground_openapi_declares_every_refusal_with_its_body() -> None:
    """What the test above checks against: each upload and operator route documents its
    refusals (400 and 413 everywhere, 401 where a credential or signature is checked) with
    the {"error", "detail"} body, and its request body."""
    with ground_service() as (url, _headers, ca_file, _pinned):
        doc = httpx.get(f"{url}/openapi.json",
                        verify=ssl.create_default_context(cafile=ca_file)).json()
    refusal = {"$ref": "#/components/schemas/Refusal"}
    for path, method in (("/v1/upload/sessions", "post"),
                         ("/v1/upload/sessions/{session_id}/batches", "post"),
                         ("/v1/upload/sessions/{session_id}/close", "post"),
                         ("/v1/admin/devices", "post"),
                         ("/v1/admin/devices/{fp}/revoke", "post")):
        op = doc["paths"][path][method]
        assert "requestBody" in op, path
        for status in ("400", "401", "413"):
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == refusal, (path, status, schema)
    cert = doc["paths"]["/v1/upload/sessions"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["certificate"]
    assert cert["properties"]["v"] == {"type": "integer", "enum": [1]}
