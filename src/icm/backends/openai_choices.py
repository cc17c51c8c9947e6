"""Choice and score questions through the ``openai`` backend, where its server offers OpenAI's
Decisions API: the rules' predicates and the questions go in one decisions request, as asked, and
the server's own label probabilities come back (in the order of the question's choices/levels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from icm.backends.base import BackendError
from icm.backends.choices import ChoiceQuestion
from icm.errors import ModelError
from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.results import RuleVerdict

if TYPE_CHECKING:
    from icm.backends.openai_compat import OpenAIBackend


def forwards_choices(backend: OpenAIBackend) -> bool:
    """Whether the backend's server is known to offer decisions (``scoring: decisions``, or
    learnt from an earlier request under ``auto``)."""
    return backend._decisions() is True


def _probabilities(question: ChoiceQuestion, answer: Any) -> list[float]:
    """The server's probabilities in the question's order (NaN: a refusal, or not answered)."""
    nan = [float("nan")] * len(question.values)
    kind = getattr(answer, "type", None)
    if kind not in ("choice", "score") or not getattr(answer, "probabilities", None):
        return nan
    asked = question.asked or {}
    if kind == "choice":
        keys = [c.get("value") for c in asked.get("choices", [])]
        found = {(type(p.value), p.value): float(p.probability) for p in answer.probabilities}
        return [found.get((type(k), k), float("nan")) for k in keys] if keys else nan
    by_label = {p.label: float(p.probability) for p in answer.probabilities}
    return [by_label.get(level.get("label"), float("nan")) for level in asked.get("levels", [])] or nan


def decide_with_choices(
    backend: OpenAIBackend, image: DecodedImage, policy: Policy, questions: Sequence[ChoiceQuestion]
) -> tuple[list[RuleVerdict], list[list[float]]]:
    """The rules' verdicts and each question's probabilities from one decisions request."""
    seen = backend._see(image)
    facts = backend._facts(image, policy) if backend._facts is not None else []
    content: list[dict[str, Any]] = [{"type": "input_image", "image_url": url} for url in seen]
    content.append({"type": "input_text", "text": backend.prompts.decision_input(policy, facts)})
    predicates = [
        {"type": "predicate", "name": rule.id, "instructions": statement}
        for rule, statement in zip(policy.rules, backend.prompts.predicates(policy), strict=True)
    ]
    asked = predicates + [dict(q.asked or {}) for q in questions]
    try:
        answers = backend.ask_decisions(content, asked)
    except ModelError as exc:
        raise BackendError(f"the decisions request to {backend.model} failed: {exc}") from exc
    verdicts = backend.verdicts_of(policy, answers[: len(predicates)])
    return verdicts, [_probabilities(q, a) for q, a in zip(questions, answers[len(predicates):], strict=True)]
