"""The explanation schema: parsing a model's answer and saying why one cannot be used."""

from __future__ import annotations

import json

import pytest

from icm.explanation import ExplanationError, ImageExplanation, explanation_schema, parse_explanation
from icm.policy.load import load_policy

POLICY = load_policy("icm-r1")
RULES = POLICY.rules[:2]


def answer(**override: object) -> str:
    body = {
        "description": "A woman in a strapless dress.",
        "implicit_content": "A formal portrait.",
        "rules": [
            {"rule_id": "exposed-skin", "criteria_met": ["shoulders-belly"], "violates": True,
             "conclusion": "Her shoulders are bare."},
            {"rule_id": "intimate-focus", "criteria_met": [], "violates": False,
             "conclusion": "Nothing is in close-up."},
        ],
    }
    body.update(override)
    return json.dumps(body)


def test_parse_a_fenced_answer() -> None:
    parsed = parse_explanation("```json\n" + answer() + "\n```", RULES)
    assert parsed.rules[0].criteria_met == ["shoulders-belly"]


def test_chatter_with_braces_after_the_answer_is_ignored() -> None:
    parsed = parse_explanation(answer() + "\nHope this helps {as always}.", RULES)
    assert parsed.description == "A woman in a strapless dress."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I cannot help with that.", "no JSON object"),
        ('{"description": "x"', "no JSON object"),  # truncated
        (answer(rules=[]), "no entry in 'rules'"),
        (answer(description=5), "description"),
        (answer(rules=[{"rule_id": "exposed-skin", "criteria_met": ["wings"], "violates": True,
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
