"""Choice and score questions of a decisions request, judged in the request's own job: the served
backend, where it can answer them (:func:`icm.backends.choices.answer_with_choices`), answers the
job's rules and its choice questions over one prefill; the label probabilities go back on the job."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from icm.backends.base import Backend, Judged, judge_each
from icm.backends.choices import ChoiceQuestion, answer_with_choices, score_of
from icm.errors import InputError
from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.results import RuleVerdict
from icm.serve.protocol import (
    ChoiceAnswer,
    ChoiceProbability,
    DecisionQuestion,
    ScoreAnswer,
    ScoreProbability,
)


def answers_choices(backend: Backend | None) -> bool:
    """Whether the backend answers choice questions: a local VLM through transformers, or the
    openai backend where its server offers decisions. Never imports a backend's module (torch)
    where it is not loaded already."""
    local = sys.modules.get("icm.backends.transformers")
    if local is not None and isinstance(backend, local.TransformersBackend):
        return True
    remote = sys.modules.get("icm.backends.openai_compat")
    if remote is not None and isinstance(backend, remote.OpenAIBackend):
        from icm.backends.openai_choices import forwards_choices

        return forwards_choices(backend)
    return False


class ChoosingBackend:
    """The served backend for one job with choice questions: ``judge`` answers the rules and the
    questions together and keeps the questions' probabilities in ``answers``."""

    def __init__(self, backend: Any, questions: Sequence[ChoiceQuestion]) -> None:
        self._backend = backend
        self.questions = list(questions)
        self.answers: list[list[float]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def judge(self, image: DecodedImage, policy: Policy) -> list[RuleVerdict]:
        remote = sys.modules.get("icm.backends.openai_compat")
        if remote is not None and isinstance(self._backend, remote.OpenAIBackend):
            from icm.backends.openai_choices import decide_with_choices

            verdicts, self.answers = decide_with_choices(self._backend, image, policy, self.questions)
        else:
            verdicts, self.answers = answer_with_choices(self._backend, image, policy, self.questions)
        return verdicts

    def judge_batch(self, images: Sequence[DecodedImage], policy: Policy) -> list[Judged]:
        return judge_each(self.judge, images, policy)

    def close(self) -> None:  # the served backend outlives the job
        pass


def _text(value: str | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else value


def choice_question(question: DecisionQuestion) -> ChoiceQuestion:
    """A choice question over its choices, a score question over its levels (a :class:`InputError`
    where one has none)."""
    if isinstance(question.instructions, str):
        text = question.instructions
    else:
        text = " ".join(str(p.get("text", "")) for p in question.instructions if p.get("type") == "input_text")
    asked = question.model_dump(exclude_none=True)
    if question.type == "choice" and question.choices:
        return ChoiceQuestion(text, tuple(_text(c.value) for c in question.choices),
                              tuple(c.description or "" for c in question.choices), asked)
    if question.type == "score" and question.levels:
        return ChoiceQuestion(text, tuple(level.label for level in question.levels),
                              tuple(level.description or "" for level in question.levels), asked)
    raise InputError(f"the {question.type} question {question.name or 'unnamed'} has no "
                     f"{'choices' if question.type == 'choice' else 'levels'}")


def choice_answer(question: DecisionQuestion, probabilities: Sequence[float]) -> ChoiceAnswer | ScoreAnswer | None:
    """The answer from the labels' probabilities (None where they are not finite: a refusal)."""
    if not probabilities or not all(math.isfinite(p) for p in probabilities):
        return None
    best = max(range(len(probabilities)), key=lambda i: probabilities[i])
    confidence = probabilities[best]
    if question.type == "score":
        levels = question.levels or []
        return ScoreAnswer(
            name=question.name, score=score_of(probabilities), confidence=confidence,
            probabilities=[ScoreProbability(label=level.label, value=i, probability=p)
                           for i, (level, p) in enumerate(zip(levels, probabilities, strict=True))],
        )
    choices = question.choices or []
    return ChoiceAnswer(
        name=question.name, choice=choices[best].value, confidence=confidence,
        probabilities=[ChoiceProbability(value=c.value, probability=p)
                       for c, p in zip(choices, probabilities, strict=True)],
    )
