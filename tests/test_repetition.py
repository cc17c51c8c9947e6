"""Looping text: one definition for the data engine's filters and evaluation's metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from icm.datagen.filters import explanation_problem, qa_problems
from icm.repetition import is_degenerate, longest_repeat, repetition_rate
from icm.tables import QARow

RELEASE = Path(__file__).parent / "fixtures" / "icm_release"


def test_repetition_by_hand() -> None:
    # words a b c d a b c d: 4-grams abcd bcda cdab dabc abcd -> 5, of which 4 unique: 1 - 4/5
    assert repetition_rate("a b c d a b c d") == pytest.approx(0.2)
    assert repetition_rate("too short") == 0.0
    assert longest_repeat("a b c d a b c d") == 4
    looping = ("The overall atmosphere is calm and serene, with the man in a quiet park. " * 2)
    assert longest_repeat(looping) == 14 and is_degenerate(looping)
    assert not is_degenerate("A man stands in a park. He wears a black jacket and looks calm.")


def test_the_data_engine_rejects_what_evaluation_calls_looping() -> None:
    # The release explanation whose conclusion comes back verbatim (a 22-word run twice): the
    # filter and the MEQ metrics agree that it loops.
    text = (RELEASE / "raw" / "reason" / "upper_shoulders_and_belly_202207201106172067_v2.JPEG.txt").read_text()
    assert longest_repeat(text) == 22 and is_degenerate(text)
    assert explanation_problem(text) == "degenerate repetition"
    fine = ("The woman wears a light summer dress that leaves her shoulders and part of her belly bare; "
            "she stands on a beach at sunset and smiles at the camera.")
    assert not is_degenerate(fine) and explanation_problem(fine) is None


@pytest.mark.parametrize("answer", ["It is red. It is red. It is red.", "red red red red red red red red"])
def test_looping_answers_are_rejected(answer: str) -> None:
    kept, reasons = qa_problems([QARow("what", "What colour is the dress?", answer)])
    assert kept == [] and reasons == ["degenerate repetition"]


def test_conclusions_written_per_rule_may_share_their_wording() -> None:
    description = "A woman in a long red dress stands on a beach at sunset and smiles at the camera."
    conclusions = [f"The image complies with rule {rule}: none of its criteria is shown."
                   for rule in ("exposed-skin", "intimate-focus", "nudity", "suggestive-behaviour")]
    assert is_degenerate(" ".join(conclusions))  # as one text it would read as looping
    assert explanation_problem([description, "Nothing suggestive.", *conclusions]) is None
    looping = description + " " + description
    assert explanation_problem([looping, "Nothing suggestive.", *conclusions]) == "degenerate repetition"
