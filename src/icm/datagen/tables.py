"""Robust parsing of the markdown tables that LLMs write (question-answer and multiple-choice).

LLM-written tables are untidy: stray pipes inside a cell, missing cells, header rows repeated,
padding, answers written as "B.", "B) text", "(B)" or "Answer: B". The parsers here return
rows plus a list of rejected lines with their reason, never silently dropping one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_SEPARATOR = re.compile(r"^:?-{2,}:?$")
_HEADER_WORDS = {"type of question", "type", "question", "questions", "answer", "answers", "choices", "options"}
_CHOICE = re.compile(r"(?:^|(?<=\s)|(?<=\|))\(?([A-Da-d])\s*[.):]\s*")
_LETTER = re.compile(r"^\s*(?:answer\s*[:\-]?\s*)?\(?([A-Da-d])\b\s*[.):]?", re.I)
_YES_NO = re.compile(r"^\s*(yes|no)\b", re.I)
_TYPES = {"yes/no": "yes_no", "yes or no": "yes_no", "yes-no": "yes_no", "yesno": "yes_no",
          "what": "what", "how": "how"}


@dataclass
class QARow:
    kind: str  # yes_no | what | how
    question: str
    answer: str


@dataclass
class MCRow:
    question: str
    choices: dict[str, str]  # letter -> text, A-D
    answer: str  # a letter


@dataclass
class Parsed:
    qa: list[QARow] = field(default_factory=list)
    mc: list[MCRow] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (reason, line)


def _cells(line: str) -> list[str] | None:
    """The cells of a stripped table row, or None for a line that is not one."""
    text = line
    if "|" not in text:
        return None
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|"):
        text = text[:-1]
    return [c.strip() for c in text.split("|")]


def _is_structural(cells: list[str]) -> bool:
    """A separator row (--- | ---) or a header row (Question | Answer)."""
    non_empty = [c for c in cells if c]
    if not non_empty:
        return True
    if all(_SEPARATOR.match(c) for c in non_empty):
        return True
    return all(c.lower().strip("* ") in _HEADER_WORDS for c in non_empty)


def normalise_yes_no(answer: str) -> str | None:
    match = _YES_NO.match(answer)
    return match.group(1).capitalize() if match else None


def normalise_letter(answer: str) -> str | None:
    match = _LETTER.match(answer.strip().strip("*"))
    return match.group(1).upper() if match else None


def _data_rows(text: str, parsed: Parsed) -> Iterator[tuple[str, list[str]]]:
    """(line, cells) of each data row; prose lines are recorded as rejected, headers skipped."""
    for raw in text.splitlines():
        line = raw.strip()
        cells = _cells(line)
        if cells is None:
            if line:
                parsed.rejected.append(("not a table row", line))
        elif not _is_structural(cells):
            yield line, cells


def parse_qa_table(text: str) -> Parsed:
    """Rows of ``Type of Question | Question | Answer``."""
    parsed = Parsed()
    for line, cells in _data_rows(text, parsed):
        if len(cells) < 3 or not cells[0] or not cells[-1]:
            parsed.rejected.append(("missing cells", line))
            continue
        kind = _TYPES.get(cells[0].lower().rstrip("?:. "))
        if kind is None:
            parsed.rejected.append(("unknown question type", line))
            continue
        question = " | ".join(c for c in cells[1:-1] if c).strip()  # a stray pipe inside the question
        answer = cells[-1]
        if not question:
            parsed.rejected.append(("missing cells", line))
            continue
        if kind == "yes_no":
            normalised = normalise_yes_no(answer)
            if normalised is None:
                parsed.rejected.append(("yes/no answer is neither yes nor no", line))
                continue
            answer = normalised + "."
        parsed.qa.append(QARow(kind=kind, question=question, answer=answer))
    return parsed


def parse_mc_table(text: str) -> Parsed:
    """Rows of ``Question | Choices | Answer`` with four choices A-D, in one cell or several."""
    parsed = Parsed()
    for line, cells in _data_rows(text, parsed):
        while cells and not cells[-1]:
            cells.pop()
        if len(cells) < 3:
            parsed.rejected.append(("missing cells", line))
            continue
        question, answer_cell = cells[0], cells[-1]
        choices = _split_choices(" | ".join(cells[1:-1]))
        letter = normalise_letter(answer_cell)
        if letter is None and len(choices) == 3:
            # The answer cell is really choice D with the answer missing.
            parsed.rejected.append(("missing answer", line))
            continue
        if not question:
            parsed.rejected.append(("missing cells", line))
            continue
        if sorted(choices) != ["A", "B", "C", "D"]:
            parsed.rejected.append(("not four choices A-D", line))
            continue
        if letter is None:
            parsed.rejected.append(("answer is not a letter A-D", line))
            continue
        parsed.mc.append(MCRow(question=question, choices=choices, answer=letter))
    return parsed


def _split_choices(text: str) -> dict[str, str]:
    """"A. x B. y C. z D. w" (or "A) x | B) y ...") -> {"A": "x", ...}.

    Only the next expected letter starts a choice, so "a." inside a choice's text does not split it.
    """
    kept: list[re.Match[str]] = []
    for match in _CHOICE.finditer(text):
        if len(kept) < 4 and match.group(1).upper() == "ABCD"[len(kept)]:
            kept.append(match)
    choices = {}
    for i, match in enumerate(kept):
        end = kept[i + 1].start() if i + 1 < len(kept) else len(text)
        choices[match.group(1).upper()] = text[match.end() : end].strip(" |")
    return {k: v for k, v in choices.items() if v}
