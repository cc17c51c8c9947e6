"""``POST /v1/moderations``' work: each image part judged under the policy ``model`` names, and
OpenAI's moderation shape of each result (categories = the policy's rule ids)."""

from __future__ import annotations

from icm.errors import InputError
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
    for item in image_inputs(body):
        data, name = await service.image(item.image_url.url)
        judgement = await judge_image(service, asker, data, name, body.model)
        policy_name = f"{judgement.result.policy.id}@{judgement.result.policy.version}"
        results.append(moderation(judgement))
    return policy_name, results


def moderation(judgement: Judgement) -> Moderation:
    result = judgement.result
    return Moderation(
        flagged=result.decision.value != "allow",
        categories={v.rule_id: v.verdict is Verdict.violates for v in result.verdicts},
        category_scores={v.rule_id: verdict_score(v) for v in result.verdicts},
        category_applied_input_types={v.rule_id: ["image"] for v in result.verdicts},
        icm=StoredModeration(id=judgement.id, **result.model_dump()),
    )
