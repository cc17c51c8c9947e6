"""``POST /v1/moderate``: one image (multipart upload, or JSON with a data URL) under a policy."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from icm.backends.base import Explain
from icm.dsa import SourceType
from icm.errors import InputError
from icm.serve.auth import Caller, Scope
from icm.serve.errors import UnsupportedMediaType
from icm.serve.inputs import upload_form
from icm.serve.openapi import JUDGING, KEYED, component, errors
from icm.serve.protocol import ModerateRequest, StoredModeration
from icm.serve.service import Service, authorized, request_id, service_of
from icm.serve.serving.jobs import Asker, Judgement
from icm.serve.serving.moderate import moderate as judge
from icm.validation import describe_validation_error

router = APIRouter(tags=["moderation"])

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "format": "binary"},
        "policy": {"type": "string"},
        "rules": {"type": "array", "items": {"type": "string"}},
        "explain": {"type": "string", "enum": [e.value for e in Explain]},
        "fresh": {"type": "boolean"},
        "source": {"type": "string", "enum": [s.value for s in SourceType]},
        "dsa": {"type": "string", "description": "StatementFacts as JSON"},
    },
}


@router.post(
    "/v1/moderate",
    summary="Judge one image against a policy",
    response_model=StoredModeration,
    responses=errors(400, 415, *KEYED, *JUDGING),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": component(ModerateRequest)},
                "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
            },
        }
    },
)
async def moderate(request: Request, caller: Caller = Depends(authorized(Scope.moderate))) -> JSONResponse:
    """The CLI's ModerationResult plus its stored ``id``. The header ``X-ICM-Cache`` says ``hit``
    when the same image was judged before under the same policy version and backend."""
    service = service_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        body = parse_json(ModerateRequest, await request.body())
        data, name = await service.image(body.image)
    elif content_type == "multipart/form-data":
        body, data, name = await _multipart(request, service)
    else:
        raise UnsupportedMediaType(
            "send application/json (with a data URL) or multipart/form-data (an upload), "
            f"not {content_type or 'nothing'}"
        )
    judgement = await judge(service, Asker(caller.key_id, request_id(request), "moderate"), body, data, name)
    return moderation_response(judgement)


def moderation_response(judgement: Judgement) -> JSONResponse:
    body = StoredModeration(id=judgement.id, **judgement.result.model_dump())
    headers = {"X-ICM-Cache": "hit" if judgement.cached else "miss"}
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


def parse_json(model: type[ModerateRequest], raw: bytes) -> ModerateRequest:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InputError("invalid request: " + describe_validation_error(exc, root="body")) from None


async def _multipart(request: Request, service: Service) -> tuple[ModerateRequest, bytes, str]:
    form, upload = await upload_form(request, "image", max_part_bytes=service.settings.max_body_bytes,
                                     max_fields=50)
    data = await upload.read()
    rules = [r.strip() for value in form.getlist("rules") if isinstance(value, str) for r in value.split(",")]
    fields: dict[str, Any] = {"image": "upload", "rules": [r for r in rules if r] or None}
    for key in ("policy", "explain", "fresh", "source"):
        value = form.get(key)
        if isinstance(value, str) and value:
            fields[key] = value
    facts = form.get("dsa")
    if isinstance(facts, str) and facts:
        try:
            fields["dsa"] = json.loads(facts)
        except ValueError:
            raise InputError("the form field 'dsa' must be a JSON object (StatementFacts)") from None
    try:
        body = ModerateRequest.model_validate(fields)
    except ValidationError as exc:
        raise InputError("invalid form field: " + describe_validation_error(exc)) from None
    return body, data, upload.filename or "upload"
