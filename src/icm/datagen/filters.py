"""Quality filters for generated text: prior leaks, looping text (:mod:`icm.repetition`), length, bad
questions.

Each check returns a rejection reason (a short, stable string counted in reports) or None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from icm.repetition import is_degenerate
from icm.tables import MCRow, QARow

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_LEAKS = re.compile(
    r"prior (?:information|knowledge|description)|based on the (?:given|provided|above) (?:information|description)"
    r"|it is known that|explicit description|according to the (?:information|description|hint)"
    r"|as (?:mentioned|stated|described) (?:above|before|in the prompt)|the (?:given|provided) (?:hint|context)",
    re.I,
)
_UNANSWERABLE = re.compile(
    r"\b(?:not (?:mentioned|specified|stated|clear|provided|visible)|cannot be (?:determined|known|inferred)"
    r"|unknown|no information|unclear|n/?a)\b",
    re.I,
)
MIN_WORDS = 15
MAX_WORDS = 600


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def remove_prior_leaks(text: str) -> tuple[str, int]:
    """Drop sentences that reveal the prior given to the model; returns the text and how many went."""
    kept, dropped = [], 0
    for sentence in sentences(text):
        if _LEAKS.search(sentence):
            dropped += 1
        else:
            kept.append(sentence)
    return " ".join(kept), dropped


def explanation_problem(pieces: str | Sequence[str]) -> str | None:
    """Why an explanation is rejected, or None. ``pieces`` are the parts a model wrote one by one
    (description, implicit content, each rule's conclusion): looping is looked for within each, as
    conclusions written per rule share their wording by design; the length counts them all."""
    parts = [pieces] if isinstance(pieces, str) else list(pieces)
    words = sum(len(re.findall(r"\w+", part)) for part in parts)
    if words == 0:
        return "empty explanation"
    if any(is_degenerate(part) for part in parts):
        return "degenerate repetition"
    if words < MIN_WORDS:
        return "explanation too short"
    if words > MAX_WORDS:
        return "explanation too long"
    return None


def _norm(question: str) -> str:
    return re.sub(r"\W+", " ", question.lower()).strip()


def qa_problems(rows: list[QARow]) -> tuple[list[QARow], list[str]]:
    """Keep good question-answer rows; return them and the reasons of the rejected ones."""
    kept, reasons, seen = [], [], set()
    for row in rows:
        key = _norm(row.question)
        if key in seen:
            reasons.append("duplicate question")
        elif row.kind != "yes_no" and (not row.answer.strip() or _UNANSWERABLE.search(row.answer)):
            reasons.append("unanswerable question")
        elif is_degenerate(row.answer):
            reasons.append("degenerate repetition")
        else:
            seen.add(key)
            kept.append(row)
    return kept, reasons


def mc_problems(rows: list[MCRow]) -> tuple[list[MCRow], list[str]]:
    kept, reasons, seen = [], [], set()
    for row in rows:
        key = _norm(row.question)
        if key in seen:
            reasons.append("duplicate question")
        elif len({_norm(c) for c in row.choices.values()}) < 4:
            reasons.append("duplicate choices")
        else:
            seen.add(key)
            kept.append(row)
    return kept, reasons


_STOP = frozenset(
    "the a an and or of to in on at is are was were be been it its this that these those with for as by "
    "from into there their they them he she his her him we you your i not no yes image picture photo".split()
)


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2 and w not in _STOP}


def answerable(answer: str, source: str, share: float = 0.5) -> bool:
    """Whether most of an answer's content words occur in the text the questions were written from."""
    words = content_words(answer)
    if not words:
        return False
    return len(words & content_words(source)) / len(words) >= share
