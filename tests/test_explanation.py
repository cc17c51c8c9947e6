"""The explanation schema: parsing a model's answer and saying why one cannot be used."""

from __future__ import annotations

import pytest
from helpers import explanation_json

from icm.explanation import ExplanationError, ImageExplanation, explanation_schema, parse_explanation
from icm.policy.load import load_policy

POLICY = load_policy("icm-r1")
RULES = POLICY.rules[:2]


def test_parse_a_fenced_answer() -> None:
    parsed = parse_explanation("```json\n" + explanation_json() + "\n```", RULES)
    assert parsed.rules[0].criteria_met == ["shoulders-belly"]


def test_chatter_with_braces_after_the_answer_is_ignored() -> None:
    parsed = parse_explanation(explanation_json() + "\nHope this helps {as always}.", RULES)
    assert parsed.description == "A woman in a strapless dress."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I cannot help with that.", "no JSON object"),
        ('{"description": "x"', "no JSON object"),  # truncated
        (explanation_json(rules=[]), "no entry in 'rules'"),
        (explanation_json(description=5), "description"),
        (explanation_json(rules=[{"rule_id": "exposed-skin", "criteria_met": ["wings"], "violates": True,
                        "conclusion": "c"},
                       {"rule_id": "intimate-focus", "criteria_met": [], "violates": False,
                        "conclusion": "c"}]), "no criteria \\['wings'\\]"),
    ],
)
def test_invalid_answers_say_why(text: str, message: str) -> None:
    with pytest.raises(ExplanationError, match=message):
        parse_explanation(text, RULES)


def test_the_schema_is_the_models() -> None:
    schema = explanation_schema()
    assert schema == ImageExplanation.model_json_schema()
    assert schema["additionalProperties"] is False and set(schema["required"]) == {
        "description", "implicit_content", "rules"}
