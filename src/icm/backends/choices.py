"""Choice and score questions (OpenAI's Decisions API) answered by a local VLM from next-token
probabilities, the way multiple-choice questions are scored: one forward over the image and the
question, the logits of the choice labels' first tokens renormalised over the labels.

A label is the choice's value itself where every value has a single-token spelling of its own,
else a letter (``A``, ``B`` ...). A score question is a choice over its levels. The questions of
one image share the image prefix with its rule (predicate) questions: one prefill, the suffixes
packed over its KV cache (:func:`icm.backends.packing.score_questions`).
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from icm.backends.model import rules_to_explain, verdict_from_probability
from icm.backends.scoring import ScoringError, two_way_probability
from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.prompts import render
from icm.results import RuleVerdict

if TYPE_CHECKING:
    from icm.backends.transformers import TransformersBackend

#: Letters label the choices when their values are not single tokens: at most this many choices.
LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class ChoiceQuestion:
    """One question: its instructions and the options, each a value (as text) and what it says."""

    instructions: str
    values: tuple[str, ...]
    descriptions: tuple[str, ...]
    #: the question as a decisions request asked it, for a backend that forwards it (openai)
    asked: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ChoiceLabels:
    """What the model answers with for each option, and the token ids that start that answer."""

    labels: tuple[str, ...]
    ids: tuple[tuple[int, ...], ...]

    @property
    def letters(self) -> bool:
        return self.labels == tuple(LETTERS[: len(self.labels)])


def _single_tokens(tokenizer: Any, labels: Sequence[str]) -> tuple[tuple[int, ...], ...] | None:
    """Each label's single-token spellings (bare and after a space), ids no two labels share;
    None where a label has none left."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    found: list[list[int]] = []
    for label in labels:
        ids = []
        for spelling in (label, " " + label):
            encoded = tokenizer.encode(spelling, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] != unknown and encoded[0] not in ids:
                ids.append(int(encoded[0]))
        found.append(ids)
    counts: dict[int, int] = {}
    for ids in found:
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
    distinct = tuple(tuple(i for i in ids if counts[i] == 1) for ids in found)
    return distinct if all(distinct) else None


def choice_labels(tokenizer: Any, values: Sequence[str]) -> ChoiceLabels:
    """The values themselves where each is one token of its own, else letters; a
    :class:`ScoringError` where neither can be scored (more choices than letters)."""
    ids = _single_tokens(tokenizer, values)
    if ids is not None:
        return ChoiceLabels(labels=tuple(values), ids=ids)
    if len(values) > len(LETTERS):
        raise ScoringError(f"{len(values)} choices whose values are not single tokens: at most {len(LETTERS)}")
    letters = tuple(LETTERS[: len(values)])
    ids = _single_tokens(tokenizer, letters)
    if ids is None:
        raise ScoringError("the letters A, B ... are not single tokens of their own in this tokenizer")
    return ChoiceLabels(labels=letters, ids=ids)


def choice_prompt(policy: Policy, question: ChoiceQuestion, labels: ChoiceLabels) -> str:
    """The question's text (``choice`` template), its first lines those of the rule questions."""
    if labels.letters:
        texts = [d or v for v, d in zip(question.values, question.descriptions, strict=True)]
    else:  # the value is the label: its description (if any) says what it means
        texts = list(question.descriptions)
    return render("choice", policy=policy, question=question.instructions,
                  options=list(zip(labels.labels, texts, strict=True)), letters=labels.letters)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values)) if math.isfinite(top) else top


def label_probabilities(logits: Sequence[float], labels: ChoiceLabels) -> list[float]:
    """p(label) for each label from one row of next-token logits (indexed by token id): each
    label's spellings pooled, renormalised over the labels (NaN where the logits are not finite)."""
    pooled = [_logsumexp([float(logits[i]) for i in ids]) for ids in labels.ids]
    if not all(math.isfinite(p) for p in pooled):
        return [float("nan")] * len(pooled)
    norm = _logsumexp(pooled)
    return [math.exp(p - norm) for p in pooled]


def answer_with_choices(
    backend: TransformersBackend, image: DecodedImage, policy: Policy, questions: Sequence[ChoiceQuestion]
) -> tuple[list[RuleVerdict], list[list[float]]]:
    """The policy's rule verdicts and each choice question's label probabilities for one image,
    all questions over one prefill of the image and the shared text. A question whose labels
    cannot be scored (:func:`choice_labels`) is not asked: its probabilities are NaN (a refusal)."""
    import torch

    from icm.backends.packing import Questions, score_questions

    tokenizer = backend.processor.tokenizer
    labels: list[ChoiceLabels] = []
    asked: list[int] = []  # the questions asked, by index
    for i, question in enumerate(questions):
        try:
            labels.append(choice_labels(tokenizer, question.values))
            asked.append(i)
        except ScoringError:
            continue
    seen = backend._see(image)
    facts = backend._facts(image, policy) if backend._facts is not None else []
    rule_prompts = backend._questions(policy, facts)
    prompts = rule_prompts + [choice_prompt(policy, questions[i], lab) for i, lab in zip(asked, labels, strict=True)]
    n_rules = len(rule_prompts)
    answer = backend.answer

    def read(_image: int, k: int, logits: torch.Tensor) -> Any:
        row = logits.float().tolist()
        if k >= n_rules:
            return label_probabilities(row, labels[k - n_rules])
        try:
            return two_way_probability([row[i] for i in answer.yes_ids], [row[i] for i in answer.no_ids])
        except ValueError:
            return float("nan")

    with backend._lock, torch.inference_mode():
        encoded = backend._encode_questions(seen, prompts)
        if isinstance(encoded, Questions):
            scored = score_questions(backend.model, [encoded], answer, rule_batch=backend.options.rule_batch,
                                     pad_token_id=backend.pad_token_id, read=read)[0]
        else:  # no shared prefix (share_prefix off): each question its own forward
            scored = [read(0, k, backend.model(**e, logits_to_keep=1).logits[0, -1]) for k, e in enumerate(encoded)]
    verdicts = [verdict_from_probability(rule.id, p, backend.options.threshold)
                for rule, p in zip(policy.rules, scored[:n_rules], strict=True)]
    rules = rules_to_explain(backend.options.explain, policy, verdicts)
    if rules:
        backend._explain(seen, backend.prompts.explain_prompt(policy, rules, facts), rules, verdicts)
    answers = [[float("nan")] * len(q.values) for q in questions]
    for i, probabilities in zip(asked, scored[n_rules:], strict=True):
        answers[i] = list(probabilities)
    return verdicts, answers


def score_of(probabilities: Sequence[float]) -> float:
    """A score question's answer: the probability-weighted level (levels numbered 0, 1 ...)."""
    return sum(level * p for level, p in enumerate(probabilities))
