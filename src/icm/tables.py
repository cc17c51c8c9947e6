"""Robust parsing of the markdown tables that LLMs write (question-answer and multiple-choice).

LLM-written tables are untidy: stray pipes inside a cell, missing cells, header rows repeated,
padding, answers written as "B.", "B) text", "(B)" or "Answer: B". The parsers here return
rows plus a list of rejected lines with their reason, never silently dropping one. With
``strict=False`` a malformed row of a known kind comes back as written, its ``problem`` set to the
reason a strict parse rejects it for (what an importer that keeps everything it reads needs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_SEPARATOR = re.compile(r"^:?-{2,}:?$")
_HEADER_WORDS = {"type of question", "type", "question", "questions", "answer", "answers", "choices", "options"}
_CHOICE = re.compile(r"(?:^|(?<=\s)|(?<=\|))\(?([A-Da-d])\s*[.):]\s*")
_ANSWER_PREFIX = re.compile(r"^\W*(the\s+)?(correct\s+)?(answer|option|choice)\s*(is|:)?\s*", re.I)
_LEADING_LETTER = re.compile(r"^[\s(\[*]*([A-Ha-h])\s*(?:[.):\]*,]|$|\s)")
_LETTERS = "ABCDEFGH"
_LABEL = re.compile(r"^\(?[A-Ha-h]\s*[-.):]\s*")
_YES = {"yes", "y", "true", "correct"}
_NO = {"no", "n", "false", "incorrect"}
_TYPES = {"yes/no": "yes_no", "yes or no": "yes_no", "yes-no": "yes_no", "yesno": "yes_no",
          "what": "what", "how": "how"}


@dataclass
class QARow:
    kind: str  # yes_no | what | how
    question: str
    answer: str
    line: int = 0  # 1-based line in the text it was read from
    problem: str | None = None  # why a strict parse rejects the row (only strict=False returns it)


@dataclass
class MCRow:
    question: str
    choices: dict[str, str]  # letter -> text, A-D
    answer: str  # a letter (as written when ``problem`` is set)
    line: int = 0
    problem: str | None = None


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


def read_yes_no(answer: str) -> str | None:
    """``"Yes."``, ``"yes, it is"``, ``"**No**"``, ``"The answer is no"`` -> ``yes`` / ``no``; else None."""
    words = re.findall(r"[a-z]+", answer.lower())
    if not words:
        return None
    if words[0] in _YES:
        return "yes"
    if words[0] in _NO:
        return "no"
    if words[:3] == ["the", "answer", "is"] and len(words) > 3:
        return read_yes_no(" ".join(words[3:]))
    return None


def read_choice(answer: str, choices: Iterable[str] = ()) -> str | None:
    """The letter an answer picks: ``"B."``, ``"B) text"``, ``"(b)"``, ``"Answer: B"``, or the text
    of one of ``choices`` (written with or without their letter); None when none can be read."""
    text = _ANSWER_PREFIX.sub("", answer.strip())
    match = _LEADING_LETTER.match(text)
    if match:
        return match.group(1).upper()
    wanted = _plain(text)
    if wanted:
        for letter, choice in zip(_LETTERS, choices, strict=False):
            if _plain(re.sub(r"^\s*[A-Ha-h]\s*[.)]\s*", "", choice)) == wanted:
                return letter
    return None


def _plain(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def normalise_yes_no(answer: str) -> str | None:
    """``Yes`` / ``No`` as a table row's answer, or None."""
    value = read_yes_no(answer)
    return value.capitalize() if value else None


def normalise_letter(answer: str) -> str | None:
    """A multiple-choice answer's letter, A-D only (the four-choice tables), or None."""
    letter = read_choice(answer)
    return letter if letter is not None and letter in "ABCD" else None


def _data_rows(text: str, parsed: Parsed) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, line, cells) of each data row; prose lines are recorded as rejected."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        cells = _cells(line)
        if cells is None:
            if line:
                parsed.rejected.append(("not a table row", line))
        elif not _is_structural(cells):
            yield number, line, cells


def parse_qa_table(text: str, *, strict: bool = True) -> Parsed:
    """Rows of ``Type of Question | Question | Answer``.

    A row whose type cannot be read is rejected in either mode: it is no question of any kind.
    """
    parsed = Parsed()
    for number, line, cells in _data_rows(text, parsed):
        kind = _TYPES.get(cells[0].lower().rstrip("?:. "))
        if kind is None:
            short = len(cells) < 3 or not cells[0] or not cells[-1]
            parsed.rejected.append(("missing cells" if short else "unknown question type", line))
            continue
        body, answer = (cells[1:-1], cells[-1]) if len(cells) >= 3 else (cells[1:], "")
        question = " | ".join(c for c in body if c).strip()  # a stray pipe inside the question
        problem = None
        if not question or not answer:
            problem = "missing cells"
        elif kind == "yes_no":
            normalised = normalise_yes_no(answer)
            if normalised is None:
                problem = "yes/no answer is neither yes nor no"
            else:
                answer = normalised + "."
        row = QARow(kind=kind, question=question, answer=answer, line=number)
        _add(parsed, parsed.qa, row, problem, line, strict)
    return parsed


def _add(parsed: Parsed, rows: list[Any], row: QARow | MCRow, problem: str | None, line: str, strict: bool) -> None:
    if problem is None:
        rows.append(row)
    elif strict:
        parsed.rejected.append((problem, line))
    else:
        row.problem = problem
        rows.append(row)


def parse_mc_table(text: str, *, strict: bool = True) -> Parsed:
    """Rows of ``Question | Choices | Answer`` with four choices A-D, in one cell or several."""
    parsed = Parsed()
    for number, line, cells in _data_rows(text, parsed):
        while cells and not cells[-1]:
            cells.pop()
        question = cells[0] if cells else ""
        choice_cells, answer_cell = (cells[1:-1], cells[-1]) if len(cells) >= 3 else (cells[1:], "")
        choices = _split_choices(" | ".join(choice_cells))
        letter = normalise_letter(answer_cell)
        problem = None
        if len(cells) < 3:
            problem = "missing cells"
        elif letter is None and len(choices) == 3:
            # The answer cell is really choice D with the answer missing.
            problem = "missing answer"
            choice_cells, answer_cell = cells[1:], ""
            choices = _split_choices(" | ".join(choice_cells))
        elif not question:
            problem = "missing cells"
        elif sorted(choices) != ["A", "B", "C", "D"]:
            problem = "not four choices A-D"
        elif letter is None:
            problem = "answer is not a letter A-D"
        if sorted(choices) != ["A", "B", "C", "D"] and len(choice_cells) > 1:
            # As written, one choice per cell, lettered by position ("A - x", a letter twice ...).
            choices = {key: _LABEL.sub("", cell) for key, cell in zip(_LETTERS, choice_cells, strict=False)}
        row = MCRow(question=question, choices=choices, answer=letter or answer_cell, line=number)
        _add(parsed, parsed.mc, row, problem, line, strict)
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
