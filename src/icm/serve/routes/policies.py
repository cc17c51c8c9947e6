"""``GET /v1/policies``, ``GET /v1/policies/{id}`` (or ``id@version``) and ``PUT /v1/policies/{id}``
(admin: publishes a new, validated version; earlier versions stay addressable)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from icm.errors import InputError
from icm.serve.auth import Caller, Scope
from icm.serve.openapi import KEYED, errors
from icm.serve.policies import split_ref
from icm.serve.protocol import PolicyList, PolicySummary, PolicyVersionInfo
from icm.serve.service import Service, authorized, service_of

router = APIRouter(tags=["policies"])


def _summaries(service: Service) -> list[PolicySummary]:
    versions: dict[str, list[PolicyVersionInfo]] = {}
    for row in service.store.policy_versions():  # by id, then version
        info = PolicyVersionInfo(version=row.version, created_at=row.created_at, created_by=row.created_by)
        versions.setdefault(row.policy_id, []).append(info)
    out = []
    for policy_id, infos in versions.items():
        latest = service.catalog.resolve(f"{policy_id}@{infos[-1].version}")
        out.append(
            PolicySummary(id=policy_id, name=latest.name, latest=latest.version, versions=infos,
                          rules=[r.id for r in latest.rules])
        )
    return out


@router.get("/v1/policies", response_model=PolicyList, summary="The policies served, with their versions",
            responses=errors(*KEYED))
async def list_policies(request: Request, caller: Caller = Depends(authorized())) -> PolicyList:
    service = service_of(request)
    return PolicyList(data=await run_in_threadpool(_summaries, service), default=service.catalog.default)


@router.get("/v1/policies/{ref}", summary="One policy (id for the newest version, or id@version)",
            responses=errors(400, 404, *KEYED))
async def get_policy(ref: str, request: Request, caller: Caller = Depends(authorized())) -> dict[str, Any]:
    policy = await run_in_threadpool(service_of(request).catalog.resolve, ref)
    return policy.model_dump(mode="json")


@router.put(
    "/v1/policies/{policy_id}",
    summary="Publish a new version of a policy (admin)",
    responses=errors(400, 403, 409, 413, *KEYED),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def put_policy(
    policy_id: str, request: Request, caller: Caller = Depends(authorized(Scope.admin))
) -> dict[str, Any]:
    """The body is the policy as YAML or JSON; its version is set to the next free number."""
    policy_id_only, version = split_ref(policy_id)
    if version is not None:
        raise InputError("PUT takes a policy id without @version: versions are numbered by the service")
    text = (await request.body()).decode("utf-8", errors="replace")
    policy = await run_in_threadpool(service_of(request).catalog.publish, policy_id_only, text, caller.key_id)
    return policy.model_dump(mode="json")
