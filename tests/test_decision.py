"""From rule verdicts to the image's decision and its statement of reasons."""

from __future__ import annotations

import pytest

from icm.decision import decide, error_statement, explain_decision
from icm.policy.load import parse_policy
from icm.policy.schema import Action
from icm.results import ErrorCode, ErrorInfo, Evidence, RuleVerdict, Verdict

POLICY = parse_policy("""
id: forum
version: 2
rules:
  - {id: nudity, text: No nudity., severity: high, action: block}
  - {id: gore, text: No gore., severity: medium, action: blur}
  - {id: spam, text: No spam., severity: low, action: review}
uncertainty: {action: age_gate, error_action: block}
""")


def _verdicts(**kinds: str) -> list[RuleVerdict]:
    return [RuleVerdict(rule_id=rule, verdict=Verdict(kind)) for rule, kind in kinds.items()]


@pytest.mark.parametrize(
    ("kinds", "decision"),
    [
        ({"nudity": "complies", "gore": "complies", "spam": "complies"}, Action.allow),
        ({"nudity": "complies", "gore": "violates", "spam": "violates"}, Action.blur),  # blur > review
        ({"nudity": "violates", "gore": "violates", "spam": "complies"}, Action.block),
        ({"nudity": "complies", "gore": "complies", "spam": "uncertain"}, Action.age_gate),  # the policy's
        ({"nudity": "uncertain", "gore": "complies", "spam": "violates"}, Action.age_gate),  # > review
        ({"nudity": "violates", "gore": "uncertain", "spam": "complies"}, Action.block),  # block > age_gate
        ({}, Action.allow),
    ],
)
def test_the_decision_is_the_strictest_action(kinds: dict[str, str], decision: Action) -> None:
    assert decide(POLICY, _verdicts(**kinds)) is decision


def test_statement_names_violated_rules_with_criteria_severity_action_and_probability() -> None:
    verdicts = [
        RuleVerdict(rule_id="nudity", verdict=Verdict.violates, probability=0.912,
                    evidence=[Evidence(criterion="breasts"), Evidence(criterion="buttocks"),
                              Evidence(criterion="breasts")]),
        RuleVerdict(rule_id="gore", verdict=Verdict.violates),
        RuleVerdict(rule_id="spam", verdict=Verdict.uncertain),
    ]
    text = explain_decision(POLICY, verdicts, decide(POLICY, verdicts))
    assert text == (
        "Blocked under forum v2: violates nudity (breasts, buttocks) [high, block, p=0.91]; "
        "gore [medium, blur]; could not assess spam (uncertainty means age_gate)."
    )


def test_statement_of_an_image_that_complies() -> None:
    verdicts = _verdicts(nudity="complies", gore="complies", spam="complies")
    assert explain_decision(POLICY, verdicts, Action.allow) == (
        "Allowed under forum v2: complies with all 3 rules.")


def test_an_image_that_was_not_judged_is_never_allowed() -> None:
    text = error_statement(POLICY, ErrorInfo(code=ErrorCode.not_found, message="no such file"))
    assert text == ("Not judged under forum v2: not_found: no such file. Blocked because an image "
                    "that was not judged is never allowed.")
