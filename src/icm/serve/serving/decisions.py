"""``POST /v1/decisions``' work: OpenAI's Decisions API over a policy. A question named after a
rule of the policy is that rule; any other question becomes an ad-hoc rule from its instructions
(a model backend judges it; the local engine answers it with a refusal, as it cannot). Every
question shares one image, so a model backend reuses the image prefix for all of them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.concurrency import run_in_threadpool

from icm.errors import InputError
from icm.policy.schema import Action, Criterion, Policy, Rule, Severity
from icm.results import Verdict
from icm.serve.choosing import answers_choices, choice_answer, choice_question
from icm.serve.errors import TextNotSupported
from icm.serve.protocol import (
    ChoiceAnswer,
    DecisionQuestion,
    DecisionResponse,
    DecisionsRequest,
    PredicateAnswer,
    RefusalAnswer,
    ScoreAnswer,
    StoredModeration,
)
from icm.serve.service import Service
from icm.serve.serving.jobs import Asker, job, judge
from icm.serve.serving.moderations import verdict_score


async def decide(service: Service, asker: Asker, body: DecisionsRequest) -> DecisionResponse:
    """Each predicate answer's ``probability`` is p(violates); a choice or score answer comes from
    the choice labels' next-token probabilities where the backend is a local VLM; an uncertain
    verdict, or a question the backend cannot judge (the local engine: choice and score), is a
    refusal."""
    data, name = await service.image(the_image(body.input))
    policy = await run_in_threadpool(service.catalog.resolve, body.model)
    choosing = answers_choices(service.judging.backend) and any(q.type != "predicate" for q in body.questions)
    asked, rule_of, key = question_policy(policy, body.questions, choices=choosing)
    work = job(data, name, asked, key, asker, fresh=choosing)
    if choosing:  # judged with the rules in one prefill, never from the cache
        work.choices = tuple(choice_question(q) for q in body.questions if q.type != "predicate")
    judgement = await judge(service, work)
    verdicts = {v.rule_id: v for v in judgement.result.verdicts}
    answers: list[PredicateAnswer | ChoiceAnswer | ScoreAnswer | RefusalAnswer] = []
    chosen = iter(work.choice_answers or [])
    for question, rule_id in zip(body.questions, rule_of, strict=True):
        if question.type != "predicate":
            answer = choice_answer(question, next(chosen, [])) if choosing else None
            answers.append(answer or RefusalAnswer(name=question.name))
            continue
        verdict = verdicts.get(rule_id) if rule_id is not None else None
        if verdict is None or verdict.verdict is Verdict.uncertain:
            answers.append(RefusalAnswer(name=question.name))
        else:
            answers.append(PredicateAnswer(name=question.name, probability=verdict_score(verdict)))
    return DecisionResponse(
        answers=answers,
        model=f"{policy.id}@{policy.version}",
        icm=StoredModeration(id=judgement.id, **judgement.result.model_dump()),
    )


def the_image(messages: str | list[dict[str, Any]]) -> str:
    """The one input_image of the input's messages."""
    if isinstance(messages, str):
        raise TextNotSupported("icm judges images: send a user message with one input_image part")
    urls = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            urls += [p.get("image_url") for p in content if isinstance(p, dict) and p.get("type") == "input_image"]
    if not urls:
        raise TextNotSupported("icm judges images: the input has no input_image part")
    if len(urls) > 1:
        raise InputError(f"one image per decision, not {len(urls)}")
    if not isinstance(urls[0], str):
        raise InputError("input_image.image_url must be a string (a data URL)")
    return urls[0]


def instructions(question: DecisionQuestion) -> str:
    if isinstance(question.instructions, str):
        return question.instructions
    return " ".join(str(p.get("text", "")) for p in question.instructions if p.get("type") == "input_text")


def question_policy(
    policy: Policy, questions: list[DecisionQuestion], choices: bool = False
) -> tuple[Policy, list[str | None], str]:
    """A policy of the questions: the named rules of ``policy`` and ad-hoc rules for the others.
    Returns it, the rule id each question is judged by (None: not judged), and the store's key.
    With ``choices`` (the backend answers choice questions) a request of choice questions alone
    is judged with the whole policy."""
    known = {rule.id: rule for rule in policy.rules}
    rules: dict[str, Rule] = {}
    rule_of: list[str | None] = []
    for index, question in enumerate(questions):
        if question.type != "predicate":
            rule_of.append(None)  # choice and score questions: not a rule (icm.serve.choosing)
        elif question.name in known:
            rules[question.name] = known[question.name]
            rule_of.append(question.name)
        else:
            text = instructions(question).strip()
            if len(text) < 3:
                raise InputError(f"question {index + 1} ({question.name or 'unnamed'}) has no instructions")
            rule_id = f"question-{index + 1}"
            while rule_id in known:
                rule_id += "-q"
            rules[rule_id] = Rule(
                id=rule_id, text=text, severity=Severity.medium, action=Action.review,
                criteria=[Criterion(id="asked", description=text)],
            )
            rule_of.append(rule_id)
    asked = [r for r in rules.values() if r.id not in known]
    key = ",".join(r for r in rules if r in known)
    if asked:
        digest = hashlib.sha256(json.dumps([r.text for r in asked]).encode()).hexdigest()[:16]
        key += f"|adhoc:{digest}"
    if not rules and choices:
        return policy, rule_of, ",".join(r.id for r in policy.rules)
    if not rules:
        raise InputError("no predicate question: icm answers predicate questions about the image")
    return policy.model_copy(update={"rules": list(rules.values())}), rule_of, key
