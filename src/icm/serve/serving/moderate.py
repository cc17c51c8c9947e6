"""``POST /v1/moderate``'s work: one image under a policy, narrowed to the rules asked for, and
the answer with the explanations asked for."""

from __future__ import annotations

from icm.backends.base import Explain
from icm.results import ModerationResult, Verdict
from icm.serve.protocol import ModerateRequest
from icm.serve.service import Service
from icm.serve.serving.jobs import Asker, Judgement, judge_image


async def moderate(service: Service, asker: Asker, body: ModerateRequest, data: bytes, name: str) -> Judgement:
    judgement = await judge_image(service, asker, data, name, body.policy, body.rules, body.fresh,
                                  source=body.source, facts=body.dsa)
    return Judgement(judgement.id, with_explanations(judgement.result, body.explain), judgement.cached)


def with_explanations(result: ModerationResult, explain: Explain) -> ModerationResult:
    """The answer carries the explanations ``explain`` asks for (the store keeps them all)."""
    if explain is Explain.all:
        return result
    keep = Verdict.violates if explain is Explain.violations else None
    verdicts = [v if v.verdict is keep else v.model_copy(update={"explanation": ""}) for v in result.verdicts]
    return result.model_copy(update={"verdicts": verdicts})
