"""What every judging endpoint does with one image: narrow the policy to the rules asked for,
build the :class:`~icm.serve.judging.Job`, judge it, record the answer, and raise the error of a
result that has no judgement (its record's id in the error)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from icm.dsa import SourceType, StatementFacts
from icm.errors import IcmError, InputError
from icm.policy.schema import Policy
from icm.results import ErrorCode, ErrorInfo, ModerationResult
from icm.serve.errors import AnswerUnreadable, ImageRejected, JudgeFailed, JudgeTimeout
from icm.serve.judging import Job
from icm.serve.service import Service


@dataclass(frozen=True)
class Judgement:
    """A request's answer: its stored row's id, the result, and whether it was a cache hit."""

    id: str
    result: ModerationResult
    cached: bool


@dataclass(frozen=True)
class Asker:
    """Who asked, as the stored row names them."""

    key_id: str | None
    request_id: str | None
    endpoint: str


def narrow(policy: Policy, rules: list[str] | None) -> tuple[Policy, str]:
    """The policy limited to ``rules`` (in the policy's order), and the key the store files it under."""
    if not rules:
        return policy, ""
    known = {rule.id for rule in policy.rules}
    unknown = [r for r in rules if r not in known]
    if unknown:
        raise InputError(f"{policy.id} v{policy.version} has no rule {', '.join(unknown)}; its rules: "
                         f"{', '.join(sorted(known))}")
    chosen = [rule for rule in policy.rules if rule.id in set(rules)]
    return policy.model_copy(update={"rules": chosen}), ",".join(rule.id for rule in chosen)


def job(data: bytes, name: str, policy: Policy, rules_key: str, asker: Asker, fresh: bool = False,
        source: SourceType | None = None, facts: StatementFacts | None = None) -> Job:
    """The job of one image; a notice (``source``) and the request's statement facts are kept on
    its stored row, for its DSA statement (a cache hit's row has its own)."""
    notice = source.value if source is not None and source.notice else None
    return Job(data=data, name=name, policy=policy, rules_key=rules_key, key_id=asker.key_id,
               request_id=asker.request_id, endpoint=asker.endpoint, fresh=fresh, source=notice,
               dsa_facts=facts.model_dump(mode="json", exclude_none=True) if facts is not None else None)


async def judge_image(service: Service, asker: Asker, data: bytes, name: str, policy_ref: str | None,
                      rules: list[str] | None = None, fresh: bool = False, source: SourceType | None = None,
                      facts: StatementFacts | None = None) -> Judgement:
    """One image under the policy ``policy_ref`` names (the default when None), narrowed to ``rules``."""
    policy = await run_in_threadpool(service.catalog.resolve, policy_ref)
    narrowed, rules_key = narrow(policy, rules)
    return await judge(service, job(data, name, narrowed, rules_key, asker, fresh, source, facts))


async def judge(service: Service, work: Job) -> Judgement:
    """Judge a job and record its answer; a result without a judgement raises its error (the
    service answers it) after its record is stored."""
    judged = await service.judging.judge(work)
    row = await run_in_threadpool(service.recorder.record, work, judged.result, judged.cached)
    if judged.cached:
        return Judgement(row.id, judged.result, cached=True)
    service.metrics.decisions.labels(work.policy.id, judged.result.decision.value).inc()
    service.metrics.count_bank_matches(judged.result)
    if judged.result.error is not None:
        raise error_for(judged.result.error, row.id)
    return Judgement(row.id, judged.result, cached=False)


def error_for(error: ErrorInfo, result_id: str) -> IcmError:
    """The service's error of a result without a judgement, naming its stored record."""
    message = f"{error.code.value}: {error.message}"
    if error.code is ErrorCode.timeout:
        return JudgeTimeout(message, result_id)
    if error.code is ErrorCode.model_output:
        return AnswerUnreadable(message, result_id)
    if error.code.model_failure:
        return JudgeFailed(message, result_id)
    return ImageRejected(error.code.value, error.message, result_id)
