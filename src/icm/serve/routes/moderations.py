"""``POST /v1/moderations``: OpenAI's Moderations API over a policy (``model`` = policy id or
id@version); the categories are the policy's rule ids and, beside them, the OpenAI categories its
rules declare (``openai_categories``), and ``icm`` carries the full result."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from icm.errors import InputError
from icm.policy.schema import Policy
from icm.results import RuleVerdict, Verdict
from icm.serve.auth import Caller, Scope
from icm.serve.judging import Judgement
from icm.serve.openapi import JUDGING, KEYED, errors
from icm.serve.protocol import (
    Moderation,
    ModerationImageInput,
    ModerationsRequest,
    ModerationsResponse,
    StoredModeration,
)
from icm.serve.routes.moderate import judge_image
from icm.serve.service import authorized, request_id, service_of

router = APIRouter(tags=["openai-compatible"])


class TextNotSupported(InputError):
    code = "text_not_supported"


def verdict_score(verdict: RuleVerdict) -> float:
    """p(violates); a verdict without one scores 1 (violates), 0 (complies) or 0.5 (uncertain)."""
    if verdict.probability is not None:
        return verdict.probability
    return {Verdict.violates: 1.0, Verdict.complies: 0.0}.get(verdict.verdict, 0.5)


def _moderation(judgement: Judgement, policy: Policy) -> Moderation:
    """Per rule id, then per OpenAI category a rule maps to: flagged when any of its rules is
    violated, scored by the highest of theirs. A category no rule maps to is left out (nothing
    judged it); a rule named like a mapped category shares the category's key."""
    result = judgement.result
    categories = {v.rule_id: v.verdict is Verdict.violates for v in result.verdicts}
    scores = {v.rule_id: verdict_score(v) for v in result.verdicts}
    for category, rule_ids in policy.openai_category_rules().items():
        mapped = [v for v in result.verdicts if v.rule_id in rule_ids]
        if mapped:
            categories[category] = any(v.verdict is Verdict.violates for v in mapped)
            scores[category] = max(verdict_score(v) for v in mapped)
    return Moderation(
        flagged=result.decision.value != "allow",
        categories=categories,
        category_scores=scores,
        category_applied_input_types={key: ["image"] for key in categories},
        icm=StoredModeration(id=judgement.id, **result.model_dump()),
    )


@router.post("/v1/moderations", response_model=ModerationsResponse, summary="OpenAI-compatible moderation",
             responses=errors(400, *KEYED, *JUDGING))
async def moderations(
    body: ModerationsRequest, request: Request, caller: Caller = Depends(authorized(Scope.moderate))
) -> ModerationsResponse:
    """``flagged`` is a decision other than allow; ``categories`` / ``category_scores`` are per rule
    and per OpenAI category that the policy's rules map to."""
    items = [body.input] if isinstance(body.input, str) else list(body.input)
    if not items:
        raise InputError("input is empty: send image_url parts")
    if any(not isinstance(item, ModerationImageInput) for item in items):
        raise TextNotSupported(
            "icm judges images: send input=[{\"type\": \"image_url\", \"image_url\": {\"url\": DATA_URL}}], "
            "without text parts"
        )
    service = service_of(request)
    results = []
    policy_name = ""
    policy: Policy | None = None
    for item in items:
        assert isinstance(item, ModerationImageInput)
        data, name = await service.image(item.image_url.url)
        judgement = await judge_image(service, caller, request, data, name, body.model, None, False,
                                      endpoint="moderations")
        policy_name = f"{judgement.result.policy.id}@{judgement.result.policy.version}"
        if policy is None or policy_name != f"{policy.id}@{policy.version}":  # the version judged by
            policy = await run_in_threadpool(service.catalog.resolve, policy_name)
        results.append(_moderation(judgement, policy))
    return ModerationsResponse(id=f"modr-{request_id(request)}", model=policy_name, results=results)
