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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from icm.evaluate.records import EvalInputError, read_text
from icm.jsonl import read_jsonl
from icm.policy.categories import category_from_filename
from icm.tables import Parsed, parse_mc_table, parse_qa_table, read_choice, read_yes_no

QuestionType = Literal["yesno", "mc"]


@dataclass(frozen=True)
class Question:
    id: str
    image: str
    type: QuestionType
    question: str
    answer: str  # normalised gold: "yes" / "no" or a letter
    choices: tuple[str, ...] = ()
    category: str | None = None


#: The answer readers the data engine's table parsers use, shared so gold and model answers are
#: read the same way everywhere.
normalise_yes_no = read_yes_no
normalise_choice = read_choice


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
    for number, row in read_jsonl(path, error=EvalInputError):
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


def load_release_questions(folder: str | Path) -> list[Question]:
    """Yes/no questions from ``qa/*.txt`` and multiple-choice ones from ``mc/*.txt`` (the
    release's stage-B markdown tables, read by the data engine's parsers); the image is the file
    name without ``.txt``. A malformed row is an error naming file and line, never skipped."""
    folder = Path(folder)
    qa_dir, mc_dir = folder / "qa", folder / "mc"
    if not qa_dir.is_dir() and not mc_dir.is_dir():
        raise EvalInputError(f"{folder}: expected a qa/ or mc/ folder of markdown tables")
    questions: list[Question] = []
    for path in sorted(qa_dir.glob("*.txt")) if qa_dir.is_dir() else []:
        image = path.name.removesuffix(".txt")
        parsed = parse_qa_table(read_text(path))
        _refuse_bad_rows(path, parsed)
        for row in parsed.qa:
            if row.kind != "yes_no":
                continue  # What / How: open questions, not scored by MQA
            gold = read_yes_no(row.answer)
            assert gold is not None  # the parser keeps only yes/no rows it can read
            questions.append(Question(f"{image}#qa{row.line}", image, "yesno", row.question, gold,
                                      category=category_from_filename(image)))
    for path in sorted(mc_dir.glob("*.txt")) if mc_dir.is_dir() else []:
        image = path.name.removesuffix(".txt")
        parsed = parse_mc_table(read_text(path))
        _refuse_bad_rows(path, parsed)
        for mc in parsed.mc:
            choices = tuple(f"{letter}. {text}" for letter, text in sorted(mc.choices.items()))
            questions.append(Question(f"{image}#mc{mc.line}", image, "mc", mc.question, mc.answer, choices,
                                      category_from_filename(image)))
    return questions


def _refuse_bad_rows(path: Path, parsed: Parsed) -> None:
    """Gold data must be whole: a row the parser rejected is an error (prose around tables is not)."""
    bad = [(reason, line) for reason, line in parsed.rejected if reason != "not a table row"]
    if bad:
        reason, line = bad[0]
        raise EvalInputError(f"{path}: {reason}: {line!r}")


def load_answers(path: str | Path) -> dict[str, str]:
    """Model answers keyed by question id, or by ``image + '\\n' + question`` without an id."""
    path = Path(path)
    answers: dict[str, str] = {}
    for number, row in read_jsonl(path, error=EvalInputError):
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
