"""Looping text: the repetition a generating model falls into, measured one way for the data
engine's filters and for evaluation's reference metrics.

``rep-4`` is the share of a text's word 4-grams that repeat an earlier one (1 - unique / total).
A text is *degenerate* when rep-4 >= 0.3 or a run of 10+ words comes back verbatim: the looping
of the released explanations, which restate whole sentences ("The overall atmosphere of the image
is seductive and sensual, which ..." twice). In the release sample 6 of the 105 stage-A
explanations and 1 of the 19 judged ones do so; all the others repeat runs of at most 9 words.
"""

from __future__ import annotations

import re

DEGENERATE_REP4 = 0.3
DEGENERATE_SPAN = 10


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def repetition_rate(text: str, n: int = 4) -> float:
    """1 - unique n-grams / n-grams over the words of ``text``; 0 for texts shorter than n."""
    words = _words(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def longest_repeat(text: str) -> int:
    """The length in words of the longest word sequence that occurs twice in ``text``."""
    words = _words(text)
    longest = 0
    for n in range(1, len(words)):
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        if len(set(grams)) == len(grams):
            break  # no repeated n-gram means no repeated longer one either
        longest = n
    return longest


def is_degenerate(text: str) -> bool:
    """Whether the text loops: rep-4 >= 0.3, or a run of 10 or more words said twice."""
    return repetition_rate(text) >= DEGENERATE_REP4 or longest_repeat(text) >= DEGENERATE_SPAN
