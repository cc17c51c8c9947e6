"""``POST /v1/moderations``: OpenAI's Moderations API over a policy (``model`` = policy id or
id@version); the categories are the policy's rule ids and, beside them, the OpenAI categories its
rules declare (``openai_categories``), and ``icm`` carries the full result (the work is
:mod:`icm.serve.serving.moderations`')."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from icm.serve.auth import Caller, Scope
from icm.serve.openapi import JUDGING, KEYED, errors
from icm.serve.protocol import ModerationsRequest, ModerationsResponse
from icm.serve.service import authorized, request_id, service_of
from icm.serve.serving.jobs import Asker
from icm.serve.serving.moderations import moderations as judge_all

router = APIRouter(tags=["openai-compatible"])


@router.post("/v1/moderations", response_model=ModerationsResponse, summary="OpenAI-compatible moderation",
             responses=errors(400, *KEYED, *JUDGING))
async def moderations(
    body: ModerationsRequest, request: Request, caller: Caller = Depends(authorized(Scope.moderate))
) -> ModerationsResponse:
    """``flagged`` is a decision other than allow; ``categories`` / ``category_scores`` are per rule
    and per OpenAI category that the policy's rules map to."""
    asker = Asker(caller.key_id, request_id(request), "moderations")
    policy_name, results = await judge_all(service_of(request), asker, body)
    return ModerationsResponse(id=f"modr-{request_id(request)}", model=policy_name, results=results)
