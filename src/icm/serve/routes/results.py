"""``GET /v1/results/{id}``, ``GET /v1/results`` (filtered, cursor-paged) and
``GET /v1/results/{id}/statement`` (its DSA statement of reasons). Keys with the review scope read
every result; a moderate key reads the results it made."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from icm.dsa import Statement
from icm.errors import InputError
from icm.policy.schema import Action
from icm.serve.auth import Caller, Scope
from icm.serve.bounds import check_text
from icm.serve.errors import NotFound
from icm.serve.openapi import KEYED, errors
from icm.serve.policies import split_ref
from icm.serve.protocol import ResultPage, StoredModeration
from icm.serve.service import authorized, service_of
from icm.serve.store.database import ResultFilter
from icm.serve.store.models import StoredResult

router = APIRouter(tags=["results"])


def _readable(caller: Caller, row: StoredResult) -> bool:
    return caller.has(Scope.review) or row.key_id == caller.key_id


def _stored(row: StoredResult) -> StoredModeration:
    return StoredModeration.model_validate({**row.result, "id": row.id})


@router.get("/v1/results/{result_id}", response_model=StoredModeration, summary="One stored result",
            responses=errors(400, 404, *KEYED))
async def get_result(result_id: str, request: Request, caller: Caller = Depends(authorized())) -> StoredModeration:
    row = await run_in_threadpool(service_of(request).store.result, check_text(result_id, "the result id"))
    if row is None or not _readable(caller, row):
        raise NotFound(f"no result {result_id!r}")
    return _stored(row)


@router.get("/v1/results/{result_id}/statement", response_model=Statement, response_model_exclude_none=True,
            summary="The result's EU DSA statement of reasons (404 says why there is none)",
            responses=errors(400, 404, *KEYED))
async def get_statement(result_id: str, request: Request, caller: Caller = Depends(authorized())) -> Statement:
    """The statement in force, in the DSA Transparency Database's submission form: the model's
    decision, a person's, or the one an appeal changed it to. 404 with the reason when the decision
    restricts nothing (allow), waits for a person (review) or the image was not judged."""
    from icm.serve.statements import Statements

    service = service_of(request)
    row = await run_in_threadpool(service.store.result, check_text(result_id, "the result id"))
    if row is None or not _readable(caller, row):
        raise NotFound(f"no result {result_id!r}")
    statements = Statements(service.store, service.settings.statement_defaults(), service.catalog)
    made = await run_in_threadpool(statements.current, result_id)
    assert made.statement is not None  # current() answers only a valid statement
    return made.statement


@router.get("/v1/results", response_model=ResultPage, summary="Stored results, oldest first, cursor-paged",
            responses=errors(400, *KEYED))
async def list_results(
    request: Request,
    decision: Action | None = Query(None, description="only this decision"),
    policy: str | None = Query(None, description="only this policy (id or id@version)"),
    sha256: str | None = Query(None, description="only this image"),
    after: str | None = Query(None, description="the `next` of the previous page; empty or absent: the first page"),
    limit: int = Query(50, ge=1, le=500),
    caller: Caller = Depends(authorized()),
) -> ResultPage:
    policy_id, version = split_ref(policy) if policy else (None, None)
    after = check_text(after, "after") if after else None
    sha256 = check_text(sha256, "sha256") if sha256 else None
    where = ResultFilter(
        decision=decision.value if decision else None,
        policy_id=policy_id,
        policy_version=version,
        sha256=sha256,
        key_id=None if caller.has(Scope.review) else caller.key_id,
    )
    try:
        rows = await run_in_threadpool(service_of(request).store.results, where, after, limit)
    except KeyError:
        raise InputError(f"unknown cursor after={after!r}: pass the `next` of a previous page") from None
    return ResultPage(data=[_stored(r) for r in rows], next=rows[-1].id if len(rows) == limit else None)
