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
