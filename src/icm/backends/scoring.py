"""Verdicts from the first answer token: Yes/No token ids, two-way probabilities, text fallback.

The paper's classifier: ask "does the image violate the rule?", read the logits of the first
generated token for the answer words, and take p(violates) = softmax over the two. A word may be
one token in several spellings ("Yes" and " Yes" in byte-level BPE); the probability mass of every
single-token spelling counts, combined with log-sum-exp. Framework-free: backends hand in floats.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from icm.backends.base import BackendError


class ScoringError(BackendError):
    """The tokenizer cannot score the answer words (a word is not one token, or the two collide)."""


@dataclass(frozen=True)
class AnswerTokens:
    """The token ids that start a Yes answer and a No answer."""

    yes_word: str
    no_word: str
    yes_ids: tuple[int, ...]
    no_ids: tuple[int, ...]

    @property
    def all_ids(self) -> tuple[int, ...]:
        return self.yes_ids + self.no_ids


def _spellings(word: str) -> list[str]:
    # The answer follows the generation prompt, which may or may not end in a space or newline,
    # so the leading-space spelling is as likely as the bare one.
    return [word, " " + word]


def resolve_answer_tokens(
    encode: Callable[[str], Sequence[int]],
    yes: str = "Yes",
    no: str = "No",
    *,
    unknown_id: int | None = None,
) -> AnswerTokens:
    """Token ids for each single-token spelling of ``yes`` and ``no``; a clear error otherwise.

    ``encode`` turns text into token ids without special tokens (e.g. a tokenizer's ``encode`` with
    ``add_special_tokens=False``). A spelling that encodes to ``unknown_id`` (a word-level or
    WordPiece vocabulary without it) is no answer token, and an id both words have is dropped from
    both: it cannot tell them apart. Fails only when a word has no distinct single-token spelling
    left.
    """
    candidates: dict[str, list[int]] = {}
    tried: dict[str, list[str]] = {}
    for word in (yes, no):
        ids: list[int] = []
        tried[word] = []
        for spelling in _spellings(word):
            encoded = list(encode(spelling))
            unknown = len(encoded) == 1 and encoded[0] == unknown_id
            tried[word].append(f"{spelling!r} -> {encoded}{' (the unknown token)' if unknown else ''}")
            if len(encoded) == 1 and not unknown and encoded[0] not in ids:
                ids.append(encoded[0])
        candidates[word] = ids
    shared = set(candidates[yes]) & set(candidates[no])
    resolved: dict[str, tuple[int, ...]] = {}
    for word in (yes, no):
        resolved[word] = tuple(i for i in candidates[word] if i not in shared)
        if resolved[word]:
            continue
        if candidates[word]:
            raise ScoringError(
                f"answer words {yes!r} and {no!r} share token ids {sorted(shared)}: {word!r} has no "
                f"distinct single-token spelling left ({'; '.join(tried[word])})"
            )
        raise ScoringError(
            f"the answer word {word!r} is not a single token in this tokenizer "
            f"({'; '.join(tried[word])}); choose answer words that are, e.g. yes={yes!r}/no={no!r} "
            "spelled as the model's vocabulary has them"
        )
    return AnswerTokens(yes_word=yes, no_word=no, yes_ids=resolved[yes], no_ids=resolved[no])


def answer_tokens_for(tokenizer: Any, yes: str = "Yes", no: str = "No") -> AnswerTokens:
    """:func:`resolve_answer_tokens` for a Hugging Face tokenizer (transformers, vLLM): its
    ``encode`` without special tokens, and its unknown token never counted as an answer."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    return resolve_answer_tokens(
        lambda text: tokenizer.encode(text, add_special_tokens=False), yes, no,
        unknown_id=unknown if isinstance(unknown, int) else None,
    )


def _logsumexp(values: Iterable[float]) -> float:
    values = list(values)
    top = max(values)
    if math.isinf(top):
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def two_way_probability(yes_logits: Sequence[float], no_logits: Sequence[float]) -> float:
    """p(Yes) from the logits (or log-probabilities) of the Yes spellings and the No spellings.

    Raises ValueError on non-finite input (a NaN from an overflowing half-precision forward pass
    must not become a verdict).
    """
    if not yes_logits or not no_logits:
        raise ValueError("need at least one Yes and one No logit")
    if not all(math.isfinite(v) or v == -math.inf for v in (*yes_logits, *no_logits)):
        raise ValueError(f"non-finite answer logits: yes={list(yes_logits)}, no={list(no_logits)}")
    yes, no = _logsumexp(yes_logits), _logsumexp(no_logits)
    if yes == no == -math.inf:
        raise ValueError("both answer words have zero probability")
    # softmax over the two: 1 / (1 + exp(no - yes)), written to avoid overflow
    diff = no - yes
    if diff > 0:
        e = math.exp(-diff)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(diff))


def probability_from_top_logprobs(
    top: Mapping[str, float], yes: str = "Yes", no: str = "No"
) -> float | None:
    """p(Yes) from a server's top log-probabilities of the first token (token text -> logprob).

    Spellings match after stripping whitespace, case-sensitively first and then ignoring case.
    When only one word is among the top tokens, the other's log-probability is bounded by the
    smallest one listed, and that bound is used (the estimate leans towards the absent word).
    None when neither word is listed: the caller falls back to the answer text.
    """
    if not top:
        return None

    def logprobs_of(word: str) -> list[float]:
        exact = [lp for token, lp in top.items() if token.strip() == word]
        return exact or [lp for token, lp in top.items() if token.strip().lower() == word.lower()]

    return _bounded(logprobs_of(yes), logprobs_of(no), min(top.values()))


def probability_from_token_logprobs(
    top: Mapping[int, float], answer: AnswerTokens
) -> float | None:
    """p(Yes) from the top log-probabilities of the first token, keyed by token id (vLLM)."""
    if not top:
        return None
    yes_lps = [top[i] for i in answer.yes_ids if i in top]
    no_lps = [top[i] for i in answer.no_ids if i in top]
    return _bounded(yes_lps, no_lps, min(top.values()))


def _bounded(yes_lps: list[float], no_lps: list[float], floor: float) -> float | None:
    # A word missing from the top-k has at most the smallest listed log-probability.
    if not yes_lps and not no_lps:
        return None
    return two_way_probability(yes_lps or [floor], no_lps or [floor])


_FIRST_WORD = re.compile(r"[A-Za-z]+")


def parse_yes_no(text: str, yes: str = "Yes", no: str = "No") -> bool | None:
    """True for a Yes answer, False for No, None for anything else (refusals, garbage, empty)."""
    match = _FIRST_WORD.search(text)
    if match is None or match.start() > 3:  # a real answer starts with the word
        return None
    word = match.group(0).lower()
    if word == yes.lower():
        return True
    if word == no.lower():
        return False
    return None


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all the sequences share."""
    shortest = min(len(s) for s in sequences)
    for i in range(shortest):
        token = sequences[0][i]
        if any(s[i] != token for s in sequences[1:]):
            return i
    return shortest
