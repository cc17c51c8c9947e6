"""``POST /v1/appeals`` (an uploader appeals a stored result) and ``GET /v1/appeals/{id}`` (its
state, and once a reviewer other than the result's own has decided: the final decision and the
statement of reasons)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from icm.serve.auth import Caller, Scope
from icm.serve.bounds import check_text
from icm.serve.errors import Forbidden, NotFound
from icm.serve.openapi import KEYED, errors
from icm.serve.protocol import AppealRequest, AppealState
from icm.serve.service import authorized, service_of
from icm.serve.store.models import Appeal

router = APIRouter(tags=["appeals"])


def _state(appeal: Appeal) -> AppealState:
    return AppealState(
        id=appeal.id, result_id=appeal.result_id, text=appeal.text, created_at=appeal.created_at,
        status="decided" if appeal.decided_at is not None else "open", decision=appeal.decision,
        statement=appeal.statement, decided_at=appeal.decided_at,
    )


@router.post("/v1/appeals", response_model=AppealState, status_code=201, summary="Appeal a stored result",
             responses=errors(400, 403, 404, 413, *KEYED))
async def open_appeal(body: AppealRequest, request: Request, caller: Caller = Depends(authorized())) -> AppealState:
    """A moderate key appeals the results it made, a review key any result; a person decides the
    appeal in the console."""
    if not (caller.has(Scope.moderate) or caller.has(Scope.review)):
        raise Forbidden(f"this key ({caller.key_id}) lacks the scope 'moderate' or 'review' that opening an appeal "
                        "needs")
    service = service_of(request)
    row = await run_in_threadpool(service.store.result, check_text(body.result_id, "result_id"))
    check_text(body.text, "text")
    if row is None or not (caller.has(Scope.review) or row.key_id == caller.key_id):
        raise NotFound(f"no result {body.result_id!r}")
    reviews = service.reviews
    source = body.source.value if body.source is not None and body.source.notice else None
    appeal = await run_in_threadpool(reviews.add_appeal, row, caller.key_id, body.text, source)
    await run_in_threadpool(reviews.audit, caller.key_id, "appeal_opened", appeal.id, {"decision": row.decision},
                            {"result": row.id, "text": appeal.text})
    return _state(appeal)


@router.get("/v1/appeals/{appeal_id}", response_model=AppealState, summary="An appeal and its outcome",
            responses=errors(400, 404, *KEYED))
async def get_appeal(appeal_id: str, request: Request, caller: Caller = Depends(authorized())) -> AppealState:
    appeal = await run_in_threadpool(service_of(request).reviews.appeal, check_text(appeal_id, "the appeal id"))
    if appeal is None or not (caller.has(Scope.review) or appeal.key_id == caller.key_id):
        raise NotFound(f"no appeal {appeal_id!r}")
    return _state(appeal)
