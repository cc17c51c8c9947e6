"""The OpenAPI document as the service answers: each operation lists the error statuses it can
give, with the one error body (:class:`~icm.serve.protocol.ErrorBody`); request validation is a
400 like any bad input, never FastAPI's 422; a body model that a route reads itself (not as a
FastAPI parameter) is a named component, so its references resolve."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from icm.serve.protocol import ErrorBody

_MEANING = {
    400: "bad input: malformed body, query or path, an unknown rule, a number out of range, an image that "
    "cannot be judged (the code says why)",
    401: "no valid key",
    403: "the key lacks the scope",
    404: "no such policy, version, result or appeal",
    409: "published at the same time as another version: send it again",
    413: "body or image too large",
    415: "neither JSON nor multipart",
    429: "the key's rate limit (Retry-After)",
    502: "the backend failed, or its answer could not be read",
    503: "every worker busy and the queue full, or not ready yet (Retry-After)",
    504: "not judged within the request timeout",
}

# what every operation behind a key can answer: no valid key, or its rate limit spent
KEYED = (401, 429)
# what every judging operation can answer beyond its input errors
JUDGING = (403, 404, 413, 429, 502, 503, 504)

_COMPONENTS: dict[str, type[BaseModel]] = {}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: these error statuses, each with the error body."""
    return {status: {"model": ErrorBody, "description": _MEANING[status]} for status in sorted(set(statuses))}


def component(model: type[BaseModel]) -> dict[str, str]:
    """A reference to ``model`` as a component of the document (for a body a route parses itself)."""
    _COMPONENTS[model.__name__] = model
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` give the document described above (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _COMPONENTS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for sub_name, sub in schema.pop("$defs", {}).items():
            schemas.setdefault(sub_name, sub)
        schemas[name] = schema
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document
