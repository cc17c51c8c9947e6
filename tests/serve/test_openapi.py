"""The OpenAPI document is true of the live service: every reference resolves, each operation
documents the error statuses it gives (never FastAPI's 422), and schemathesis, sending generated
requests (valid and invalid) to every operation with a key of every scope, finds no 5xx, no
undocumented status and no answer that breaks its schema."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def test_the_document_resolves_and_documents_the_errors(serve, sqlite_url) -> None:
    server = serve(sqlite_url)
    document = httpx2.get(server.url + "/openapi.json").json()
    for ref in _refs(document):
        _resolve(document, ref)
    moderate = document["paths"]["/v1/moderate"]["post"]
    assert moderate["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModerateRequest"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert "422" not in statuses, f"{method} {path}"
            for status in statuses - {"200", "201"}:
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, f"{method} {path} {status}"
            if path.startswith("/v1/"):
                assert {"401", "429"} <= statuses, f"{method} {path}"
    assert {"409", "403"} <= set(document["paths"]["/v1/policies/{policy_id}"]["put"]["responses"])
    assert {"404", "503", "504"} <= set(moderate["responses"])


def test_times_carry_their_time_zone(serve, sqlite_url) -> None:
    """SQLite keeps no time zone; every time the service answers with has one (UTC)."""
    server = serve(sqlite_url)
    with server.client("moderate") as client:
        listed = client.get("/v1/policies").json()
        times = [v["created_at"] for p in listed["data"] for v in p["versions"]]
        assert times and all(t.endswith(("+00:00", "Z")) for t in times), times


def test_schemathesis_finds_nothing_against_the_live_service(serve, sqlite_url) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    server = serve(sqlite_url)
    headers = {"Authorization": f"Bearer {server.key('moderate', 'review', 'admin')}"}
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    failures: list[str] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def probe(case: Any) -> None:
                case.call_and_validate(base_url=server.url, headers=headers, checks=checks, timeout=60)

            try:
                probe()
            except Unsatisfiable:  # no invalid request exists (no parameters, or any string is valid)
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # every operation is probed; the failures are reported together
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:2000]}")
    assert not failures, "\n\n".join(failures)
    assert time.monotonic() - started < 240
    with httpx2.Client(base_url=server.url) as client:
        assert client.get("/healthz").status_code == 200
