"""MQA: accuracy of yes/no and multiple-choice answers about images against gold answers.

Gold questions come from a JSONL file (``{"id"?, "image", "type": "yesno"|"mc", "question",
"choices"?: [...], "answer"}``) or from the release's stage-B tables (``qa/`` and ``mc/``
folders of markdown tables; What/How questions are open-ended and not part of MQA).
Model answers are JSONL ``{"id", "answer"}`` or ``{"image", "question", "answer"}``.

Answers are normalised before comparison: ``"Yes."``, ``"yes, she is"`` -> ``yes``;
``"B."``, ``"B) Happy"``, ``"(b)"``, ``"Answer: B"`` or the text of choice B -> ``B``. An answer
that cannot be read is wrong (and counted as unparsed); a question without an answer is wrong
and counted as missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from icm.evaluate.records import EvalInputError
from icm.jsonl import JsonlError, read_jsonl

QuestionType = Literal["yesno", "mc"]
_LETTERS = "ABCDEFGH"
_YES = {"yes", "y", "true", "correct"}
_NO = {"no", "n", "false", "incorrect"}


@dataclass(frozen=True)
class Question:
    id: str
    image: str
    type: QuestionType
    question: str
    answer: str  # normalised gold: "yes" / "no" or a letter
    choices: tuple[str, ...] = ()
    category: str | None = None


def normalise_yes_no(answer: str) -> str | None:
    """``"Yes."``, ``"yes, it is"``, ``"**No**"`` -> ``yes`` / ``no``; anything else -> None."""
    words = re.findall(r"[a-z]+", answer.lower())
    if not words:
        return None
    if words[0] in _YES:
        return "yes"
    if words[0] in _NO:
        return "no"
    if words[:3] == ["the", "answer", "is"] and len(words) > 3:
        return normalise_yes_no(" ".join(words[3:]))
    return None


def normalise_choice(answer: str, choices: Iterable[str] = ()) -> str | None:
    """The letter an answer picks: ``"B."``, ``"B) text"``, ``"(b)"``, ``"Answer: B"``, or the
    text of a choice; None when no single letter can be read."""
    text = answer.strip()
    text = re.sub(r"^\W*(the\s+)?(correct\s+)?(answer|option|choice)\s*(is|:)?\s*", "", text,
                  flags=re.IGNORECASE)
    match = re.match(r"^[\s(\[*]*([A-Ha-h])\s*(?:[.):\]*,]|$|\s)", text)
    if match:
        return match.group(1).upper()
    wanted = _plain(text)
    if wanted:
        for letter, choice in zip(_LETTERS, choices, strict=False):
            if _plain(_strip_letter(choice)) == wanted:
                return letter
    return None


def _strip_letter(choice: str) -> str:
    return re.sub(r"^\s*[A-Ha-h]\s*[.)]\s*", "", choice)


def _plain(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def normalise(question: Question, answer: str) -> str | None:
    if question.type == "yesno":
        return normalise_yes_no(answer)
    return normalise_choice(answer, question.choices)


# -- reading gold questions ------------------------------------------------------------------


def load_questions(path: str | Path) -> list[Question]:
    """Gold questions from a JSONL file, or from a release folder holding ``qa/`` and ``mc/``."""
    path = Path(path)
    if path.is_dir():
        return load_release_questions(path)
    questions: list[Question] = []
    ids: set[str] = set()
    for number, row in _jsonl(path):
        where = f"{path}:{number}"
        missing = [k for k in ("image", "type", "question", "answer") if not row.get(k)]
        if missing:
            raise EvalInputError(f"{where}: missing {', '.join(missing)}")
        kind = str(row["type"]).lower().replace("/", "").replace("-", "").replace("_", "")
        if kind not in ("yesno", "mc", "multiplechoice"):
            raise EvalInputError(f"{where}: type must be 'yesno' or 'mc', not {row['type']!r}")
        qtype: QuestionType = "yesno" if kind == "yesno" else "mc"
        choices = tuple(str(c) for c in row.get("choices") or ())
        if qtype == "mc" and len(choices) < 2:
            raise EvalInputError(f"{where}: a multiple-choice question needs 'choices'")
        question = Question(
            id=str(row.get("id") or f"{row['image']}#{number}"),
            image=str(row["image"]),
            type=qtype,
            question=str(row["question"]),
            answer="",
            choices=choices,
            category=row.get("category"),
        )
        gold = normalise(question, str(row["answer"]))
        if gold is None:
            raise EvalInputError(f"{where}: cannot read the gold answer {row['answer']!r}")
        if question.id in ids:
            raise EvalInputError(f"{where}: duplicate question id {question.id!r}")
        ids.add(question.id)
        questions.append(_with_answer(question, gold))
    if not questions:
        raise EvalInputError(f"{path}: no questions")
    return questions


def _with_answer(question: Question, answer: str) -> Question:
    return Question(question.id, question.image, question.type, question.question, answer,
                    question.choices, question.category)


def _table_rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
            continue
        yield number, cells


def load_release_questions(folder: str | Path) -> list[Question]:
    """Yes/no questions from ``qa/*.txt`` and multiple-choice ones from ``mc/*.txt`` (the
    release's stage-B markdown tables); the image is the file name without ``.txt``."""
    from icm.evaluate.importers import category_of

    folder = Path(folder)
    qa_dir, mc_dir = folder / "qa", folder / "mc"
    if not qa_dir.is_dir() and not mc_dir.is_dir():
        raise EvalInputError(f"{folder}: expected a qa/ or mc/ folder of markdown tables")
    questions: list[Question] = []
    for path in sorted(qa_dir.glob("*.txt")) if qa_dir.is_dir() else []:
        image = path.name.removesuffix(".txt")
        for number, cells in _table_rows(path):
            if cells[0].lower().startswith("type"):
                continue  # header
            if len(cells) != 3:
                raise EvalInputError(f"{path}:{number}: expected 3 cells, got {len(cells)}")
            if cells[0].lower().replace(" ", "") != "yes/no":
                continue  # What / How: open questions, not scored by MQA
            gold = normalise_yes_no(cells[2])
            if gold is None:
                raise EvalInputError(f"{path}:{number}: cannot read the answer {cells[2]!r}")
            questions.append(Question(f"{image}#qa{number}", image, "yesno", cells[1], gold,
                                      category=_category(image, category_of)))
    for path in sorted(mc_dir.glob("*.txt")) if mc_dir.is_dir() else []:
        image = path.name.removesuffix(".txt")
        for number, cells in _table_rows(path):
            if cells[0].lower() == "question":
                continue
            # "| question | A. x | B. y | C. z | D. w | D. |": the choices take one cell each
            if len(cells) < 4:
                raise EvalInputError(f"{path}:{number}: expected question, choices and answer")
            choices = tuple(cells[1:-1])
            mc = Question(f"{image}#mc{number}", image, "mc", cells[0], "", choices,
                          _category(image, category_of))
            gold = normalise_choice(cells[-1], choices)
            if gold is None:
                raise EvalInputError(f"{path}:{number}: cannot read the answer {cells[-1]!r}")
            questions.append(_with_answer(mc, gold))
    return questions


def _category(image: str, category_of: Any) -> str | None:
    try:
        return str(category_of(image))
    except ValueError:
        return None


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        yield from read_jsonl(path)
    except JsonlError as exc:
        raise EvalInputError(str(exc)) from exc


def load_answers(path: str | Path) -> dict[str, str]:
    """Model answers keyed by question id, or by ``image + '\\n' + question`` without an id."""
    path = Path(path)
    answers: dict[str, str] = {}
    for number, row in _jsonl(path):
        if "answer" not in row or row["answer"] is None:
            raise EvalInputError(f"{path}:{number}: missing answer")
        if row.get("id"):
            key = str(row["id"])
        elif row.get("image") and row.get("question"):
            key = _question_key(str(row["image"]), str(row["question"]))
        else:
            raise EvalInputError(f"{path}:{number}: needs an id, or an image and a question")
        if key in answers:
            raise EvalInputError(f"{path}:{number}: a second answer to the same question")
        answers[key] = str(row["answer"])
    return answers


def _question_key(image: str, question: str) -> str:
    return image + "\n" + " ".join(question.split())


# -- scoring ---------------------------------------------------------------------------------


@dataclass
class Tally:
    total: int = 0
    correct: int = 0
    missing: int = 0
    unparsed: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "total": self.total, "correct": self.correct,
                "missing": self.missing, "unparsed": self.unparsed}


@dataclass
class MQAEvaluation:
    overall: Tally = field(default_factory=Tally)
    by_type: dict[str, Tally] = field(default_factory=dict)
    by_category: dict[str, Tally] = field(default_factory=dict)
    wrong: list[dict[str, str | None]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.overall.as_dict(),
            "by_type": {k: v.as_dict() for k, v in self.by_type.items()},
            "by_category": {k: v.as_dict() for k, v in sorted(self.by_category.items())},
        }


def evaluate_mqa(questions: list[Question], answers: dict[str, str]) -> MQAEvaluation:
    """Accuracy overall, per question type and per category; every question counts."""
    result = MQAEvaluation()
    for q in questions:
        given = answers.get(q.id)
        if given is None:
            given = answers.get(_question_key(q.image, q.question))
        predicted = normalise(q, given) if given is not None else None
        tallies = [result.overall, result.by_type.setdefault(q.type, Tally())]
        if q.category is not None:
            tallies.append(result.by_category.setdefault(q.category, Tally()))
        for tally in tallies:
            tally.total += 1
            tally.correct += predicted == q.answer
            tally.missing += given is None
            tally.unparsed += given is not None and predicted is None
        if predicted != q.answer:
            result.wrong.append({"id": q.id, "gold": q.answer, "answer": given})
    return result
