"""Markdown table parsing: untidy LLM output, and the release's real tables."""

from __future__ import annotations

from conftest import ICM_RELEASE

from icm.tables import normalise_letter, normalise_yes_no, parse_mc_table, parse_qa_table

MESSY_QA = """\
Here are the questions:
| Type of Question | Question | Answer |
|---|:---:|---|
|Yes/No|Is she smiling?|yes, she is|
| What | What does the sign say | pipe | inside? | "OPEN" |
| How | How is the light? |   |
| Why | Why is it there? | Because. |
| Yes/No | Is it raining? | Maybe. |
| Type of Question | Question | Answer |
| yes or no | Is there a dog? | No. |
"""

MESSY_MC = """\
| Question | Choices | Answer |
| --- | --- | --- |
| What colour is the car? |A. Red |B. Blue |C. Green |D. Black |B. |
| Where is she? | A) a.m. beach B) park C) street D) home | Answer: a |
| What is he holding? |A) cup |B) pen |C) phone |D. |
| Which season? | A. spring B. summer | C |
| How many people? |A. one |B. two |C. three |D. four |(C) three |
| What is it? |A. x |B. y |C. z |D. w |E |
"""


def test_messy_qa_table() -> None:
    parsed = parse_qa_table(MESSY_QA)
    assert [(r.kind, r.question, r.answer) for r in parsed.qa] == [
        ("yes_no", "Is she smiling?", "Yes."),
        ("what", "What does the sign say | pipe | inside?", '"OPEN"'),
        ("yes_no", "Is there a dog?", "No."),
    ]
    reasons = [reason for reason, _ in parsed.rejected]
    assert reasons == [
        "not a table row",  # "Here are the questions:"
        "missing cells",  # the How row has an empty answer
        "unknown question type",  # Why
        "yes/no answer is neither yes nor no",  # Maybe.
    ]


def test_messy_mc_table() -> None:
    parsed = parse_mc_table(MESSY_MC)
    assert [(r.question, r.answer) for r in parsed.mc] == [
        ("What colour is the car?", "B"),
        ("Where is she?", "A"),
        ("How many people?", "C"),
    ]
    assert parsed.mc[1].choices == {"A": "a.m. beach", "B": "park", "C": "street", "D": "home"}
    assert [reason for reason, _ in parsed.rejected] == [
        "not four choices A-D",  # "D." is read as the answer: only three choices are left
        "not four choices A-D",
        "answer is not a letter A-D",
    ]


def test_answer_normalisation() -> None:
    assert [normalise_letter(a) for a in ["B.", "B) text", "(b)", "Answer: D", "**C**", "E", "Both"]] == [
        "B", "B", "B", "D", "C", None, None
    ]
    assert [normalise_yes_no(a) for a in ["Yes.", "no, it is not", "YES", "Perhaps"]] == ["Yes", "No", "Yes", None]


def test_release_tables_parse_without_losing_a_row() -> None:
    # Counted by hand with grep over the fixture files:
    #   grep -h '^| Yes/No' raw/qa/* | wc -l  -> 680;  '^| What' -> 238;  '^| How' -> 240
    #   data rows in raw/mc/* (lines starting '| ' minus 105 headers, minus 105 '| ---' lines) -> 511
    qa = [parse_qa_table(p.read_text()) for p in sorted((ICM_RELEASE / "raw" / "qa").glob("*.txt"))]
    mc = [parse_mc_table(p.read_text()) for p in sorted((ICM_RELEASE / "raw" / "mc").glob("*.txt"))]
    kinds = [row.kind for p in qa for row in p.qa]
    assert (kinds.count("yes_no"), kinds.count("what"), kinds.count("how")) == (680, 238, 240)
    assert sum(len(p.mc) for p in mc) == 511
    assert not any(p.rejected for p in qa + mc)


def test_a_lenient_parse_returns_malformed_rows_as_written_with_their_problem() -> None:
    qa = parse_qa_table(MESSY_QA, strict=False)
    assert [(r.kind, r.question, r.answer, r.problem) for r in qa.qa] == [
        ("yes_no", "Is she smiling?", "Yes.", None),
        ("what", "What does the sign say | pipe | inside?", '"OPEN"', None),
        ("how", "How is the light?", "", "missing cells"),
        ("yes_no", "Is it raining?", "Maybe.", "yes/no answer is neither yes nor no"),
        ("yes_no", "Is there a dog?", "No.", None),
    ]
    # Lines that hold no question of a known kind are rejected either way.
    assert [reason for reason, _ in qa.rejected] == ["not a table row", "unknown question type"]
    mc = parse_mc_table(MESSY_MC, strict=False)
    assert [(r.question, r.answer, r.problem) for r in mc.mc] == [
        ("What colour is the car?", "B", None),
        ("Where is she?", "A", None),
        ("What is he holding?", "D", "not four choices A-D"),
        ("Which season?", "C", "not four choices A-D"),
        ("How many people?", "C", None),
        ("What is it?", "E", "answer is not a letter A-D"),
    ]
    assert mc.mc[2].choices == {"A": "cup", "B": "pen", "C": "phone"}
    assert mc.mc[3].choices == {"A": "spring", "B": "summer"}
    assert not mc.rejected
    # A strict parse of the same text keeps exactly the rows without a problem.
    strict = parse_mc_table(MESSY_MC)
    assert [r.question for r in strict.mc] == [r.question for r in mc.mc if r.problem is None]


def test_choices_lettered_by_position_when_their_labels_are_not_a_to_d() -> None:
    row = "| Focus? |A - Her face |B - Her legs |C - A book |D - A couch |B. |"
    assert parse_mc_table(row).mc == []
    [lenient] = parse_mc_table(row, strict=False).mc
    assert lenient.choices == {"A": "Her face", "B": "Her legs", "C": "A book", "D": "A couch"}
    assert (lenient.answer, lenient.problem) == ("B", "not four choices A-D")
    twice = parse_mc_table("| Mood? |A) Tense |B) Calm |B) Shy |D) Bold |B. |", strict=False).mc[0]
    assert twice.choices == {"A": "Tense", "B": "Calm", "C": "Shy", "D": "Bold"}
