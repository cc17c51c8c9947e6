"""``POST /v1/moderations``' work: each image part judged under the policy ``model`` names, and
OpenAI's moderation shape of each result (categories = the policy's rule ids and, beside them, the
OpenAI categories its rules declare with ``openai_categories``)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from icm.errors import InputError
from icm.policy.schema import Policy
from icm.results import RuleVerdict, Verdict
from icm.serve.errors import TextNotSupported
from icm.serve.protocol import Moderation, ModerationImageInput, ModerationsRequest, StoredModeration
from icm.serve.service import Service
from icm.serve.serving.jobs import Asker, Judgement, judge_image


def verdict_score(verdict: RuleVerdict) -> float:
    """p(violates); a verdict without one scores 1 (violates), 0 (complies) or 0.5 (uncertain)."""
    if verdict.probability is not None:
        return verdict.probability
    return {Verdict.violates: 1.0, Verdict.complies: 0.0}.get(verdict.verdict, 0.5)


def image_inputs(body: ModerationsRequest) -> list[ModerationImageInput]:
    """The request's image parts; a request with none, or with text, is refused."""
    items = [body.input] if isinstance(body.input, str) else list(body.input)
    if not items:
        raise InputError("input is empty: send image_url parts")
    images = [item for item in items if isinstance(item, ModerationImageInput)]
    if len(images) != len(items):
        raise TextNotSupported(
            "icm judges images: send input=[{\"type\": \"image_url\", \"image_url\": {\"url\": DATA_URL}}], "
            "without text parts"
        )
    return images


async def moderations(service: Service, asker: Asker, body: ModerationsRequest) -> tuple[str, list[Moderation]]:
    """The policy judged by (``id@version``) and each image's moderation, in order."""
    results = []
    policy_name = ""
    policy: Policy | None = None
    for item in image_inputs(body):
        data, name = await service.image(item.image_url.url)
        judgement = await judge_image(service, asker, data, name, body.model)
        policy_name = f"{judgement.result.policy.id}@{judgement.result.policy.version}"
        if policy is None or policy_name != f"{policy.id}@{policy.version}":  # the version judged by
            policy = await run_in_threadpool(service.catalog.resolve, policy_name)
        results.append(moderation(judgement, policy))
    return policy_name, results


def moderation(judgement: Judgement, policy: Policy) -> Moderation:
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
