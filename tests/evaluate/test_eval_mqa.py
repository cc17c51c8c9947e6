"""MQA: answer normalisation, the release's Q-A tables as gold, accuracy counts by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from icm.cli.app import app
from icm.evaluate.mqa import (
    evaluate_mqa,
    load_answers,
    load_questions,
    load_release_questions,
    normalise_choice,
    normalise_yes_no,
)
from icm.evaluate.records import EvalInputError

runner = CliRunner()
CHOICES = ("A. Neutral", "B. Happy", "C. Sad", "D. Aroused")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("Yes.", "yes"), ("yes, she is", "yes"), ("**No**", "no"), ("NO", "no"),
     ("The answer is yes.", "yes"), ("Maybe", None), ("", None), ("Not sure", None)],
)
def test_yes_no_normalisation(answer: str, expected: str | None) -> None:
    assert normalise_yes_no(answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("B.", "B"), ("B) Happy", "B"), ("(b)", "B"), ("Answer: B", "B"), ("The answer is D.", "D"),
     ("D", "D"), ("happy", "B"), ("Sad.", "C"), ("E. none", "E"), ("Because", None),
     ("I think so", None)],
)
def test_choice_normalisation(answer: str, expected: str | None) -> None:
    assert normalise_choice(answer, CHOICES) == expected


def test_release_tables(release: Path) -> None:
    questions = load_release_questions(release / "raw")
    yes_no = [q for q in questions if q.type == "yesno"]
    mc = [q for q in questions if q.type == "mc"]
    # counted with grep over raw/qa and raw/mc: 680 "Yes/No" rows (610 "Yes.", 70 "No."),
    # 511 multiple-choice rows (answers A. 128, B. 252, C. 105, D. 26); What/How rows left out
    assert len(yes_no) == 680 and sum(q.answer == "yes" for q in yes_no) == 610
    assert len(mc) == 511
    assert {a: sum(q.answer == a for q in mc) for a in "ABCD"} == {"A": 128, "B": 252, "C": 105,
                                                                    "D": 26}
    first = next(q for q in mc if q.image == "bite_finger_20231122110742_1537.JPEG")
    assert first.choices == CHOICES and first.answer == "D" and first.category == "bite_finger"


def test_constant_answers_score_the_class_share(release: Path, tmp_path: Path) -> None:
    questions = load_release_questions(release / "raw")
    # always "Yes." and always "B) ..." -> yes/no 610/680, mc 252/511, all 862/1191
    answers = {q.id: ("Yes." if q.type == "yesno" else "B) whatever") for q in questions}
    result = evaluate_mqa(questions, answers)
    assert result.by_type["yesno"].accuracy == pytest.approx(610 / 680)
    assert result.by_type["mc"].accuracy == pytest.approx(252 / 511)
    assert result.overall.accuracy == pytest.approx(862 / 1191)
    assert result.overall.missing == 0 and result.overall.unparsed == 0


def test_missing_and_unparsed_answers_count_as_wrong(write_jsonl) -> None:
    gold = write_jsonl("gold.jsonl", [
        {"id": "q1", "image": "a.jpg", "type": "yes/no", "question": "Is she smiling?",
         "answer": "No."},
        {"id": "q2", "image": "a.jpg", "type": "mc", "question": "Mood?", "choices": list(CHOICES),
         "answer": "C."},
        {"id": "q3", "image": "b.jpg", "type": "yesno", "question": "Kissing?", "answer": "yes"},
        {"image": "b.jpg", "type": "mc", "question": "Where?", "choices": ["A. bed", "B. park"],
         "answer": "B"},
    ])
    answers = write_jsonl("answers.jsonl", [
        {"id": "q1", "answer": "no, she is not"},             # right
        {"id": "q2", "answer": "I cannot tell"},               # unparsed -> wrong
        {"image": "b.jpg", "question": "Where?", "answer": "park"},  # right, by image+question
        # q3 has no answer -> missing, wrong
    ])
    result = evaluate_mqa(load_questions(gold), load_answers(answers))
    # 2 right of 4
    assert (result.overall.correct, result.overall.total) == (2, 4)
    assert result.overall.missing == 1 and result.overall.unparsed == 1
    assert result.by_type["yesno"].accuracy == pytest.approx(1 / 2)
    assert result.by_type["mc"].accuracy == pytest.approx(1 / 2)

    out = runner.invoke(app, ["eval", "mqa", "-q", str(gold), "-a", str(answers), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["accuracy"] == pytest.approx(0.5)


def test_bad_gold_and_answers_name_the_line(write_jsonl) -> None:
    gold = write_jsonl("gold.jsonl", [
        {"id": "q1", "image": "a", "type": "mc", "question": "?", "answer": "B"},
    ])
    with pytest.raises(EvalInputError, match="gold.jsonl:1: a multiple-choice question needs"):
        load_questions(gold)
    gold = write_jsonl("gold2.jsonl", [
        {"id": "q1", "image": "a", "type": "yesno", "question": "?", "answer": "perhaps"},
    ])
    with pytest.raises(EvalInputError, match="gold2.jsonl:1: cannot read the gold answer"):
        load_questions(gold)
    answers = write_jsonl("a.jsonl", [{"id": "q1", "answer": "yes"}, {"answer": "no"}])
    with pytest.raises(EvalInputError, match="a.jsonl:2: needs an id, or an image and a question"):
        load_answers(answers)
