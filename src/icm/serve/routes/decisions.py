"""``POST /v1/decisions``: OpenAI's Decisions API over a policy (the work is
:mod:`icm.serve.serving.decisions`')."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from icm.serve.auth import Caller, Scope
from icm.serve.openapi import JUDGING, KEYED, errors
from icm.serve.protocol import DecisionResponse, DecisionsRequest
from icm.serve.service import authorized, request_id, service_of
from icm.serve.serving.decisions import decide
from icm.serve.serving.jobs import Asker

router = APIRouter(tags=["openai-compatible"])


@router.post("/v1/decisions", response_model=DecisionResponse, summary="OpenAI-compatible decisions",
             responses=errors(400, *KEYED, *JUDGING))
async def decisions(
    body: DecisionsRequest, request: Request, caller: Caller = Depends(authorized(Scope.moderate))
) -> DecisionResponse:
    """Each predicate answer's ``probability`` is p(violates); a choice or score answer comes from
    the choice labels' next-token probabilities where the backend is a local VLM; an uncertain
    verdict, or a question the backend cannot judge (the local engine: choice and score), is a
    refusal."""
    return await decide(service_of(request), Asker(caller.key_id, request_id(request), "decisions"), body)
