"""Choice questions on the tiny VLM (icm.backends.choices): labels, the renormalised label
probabilities, and one prefill shared with the rule questions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from icm.backends.choices import (
    ChoiceLabels,
    ChoiceQuestion,
    answer_with_choices,
    choice_labels,
    choice_prompt,
    label_probabilities,
)
from icm.backends.scoring import ScoringError
from icm.backends.transformers import TransformersBackend
from icm.media import load_image
from icm.policy.load import load_policy


@pytest.fixture(scope="module")
def backend(tiny_llava_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_llava_dir), explain="none")


def test_labels_are_the_values_where_each_is_one_token_else_letters(backend: TransformersBackend) -> None:
    tokenizer = backend.processor.tokenizer
    values = choice_labels(tokenizer, ["Yes", "No", "true"])
    assert values.labels == ("Yes", "No", "true") and not values.letters
    assert values.ids == tuple((tokenizer.convert_tokens_to_ids(w),) for w in ("Yes", "No", "true"))
    letters = choice_labels(tokenizer, ["Yes", "a kitten"])  # one value is no single token: letters for all
    assert letters.labels == ("A", "B") and letters.letters
    with pytest.raises(ScoringError, match="at most 26"):
        choice_labels(tokenizer, [f"option {i}" for i in range(27)])


def test_label_probabilities_pool_spellings_and_renormalise() -> None:
    labels = ChoiceLabels(labels=("A", "B"), ids=((0, 1), (2,)))
    logits = [1.0, 1.0, 0.0, 5.0]  # token 3 is no label: it does not count
    p = label_probabilities(logits, labels)
    e = torch.tensor([1.0, 1.0, 0.0]).exp()
    assert p == pytest.approx([float((e[0] + e[1]) / e.sum()), float(e[2] / e.sum())])
    assert all(math.isnan(x) for x in label_probabilities([float("nan"), 0.0, 0.0, 0.0], labels))


def test_choices_and_rules_over_one_prefill_equal_their_own_forwards(
    backend: TransformersBackend, astronaut: Path
) -> None:
    policy = load_policy("icm-r1")
    image = load_image(astronaut)
    questions = [ChoiceQuestion("Is there a cat?", ("Yes", "No"), ("", "")),
                 ChoiceQuestion("How risky?", ("low", "medium", "high"), ("", "", ""))]
    forwards: list[int] = []
    hook = backend.model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        verdicts, answers = answer_with_choices(backend, image, policy, questions)
    finally:
        hook.remove()
    assert len(forwards) == 2  # the shared prefix, then every rule's and question's suffix in one pass
    assert [v.probability for v in verdicts] == pytest.approx(
        [v.probability for v in backend.judge(image, policy)], abs=1e-4)
    for question, answer in zip(questions, answers, strict=True):
        labels = choice_labels(backend.processor.tokenizer, question.values)
        encoded = backend._encode(backend._see(image), [("user", choice_prompt(policy, question, labels))])
        with torch.inference_mode():
            logits = backend.model(**encoded).logits[0, -1].float()
        expected = torch.softmax(logits[[i for (i,) in labels.ids]], dim=0).tolist()
        assert answer == pytest.approx(expected, abs=1e-4)
        assert sum(answer) == pytest.approx(1.0, abs=1e-6)
