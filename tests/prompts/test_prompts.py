"""Snapshot tests: every prompt template rendered, compared with tests/prompts/snapshots/.

After a deliberate wording change, add a new template version (NAME.v2.jinja) and refresh the
snapshots with ICM_UPDATE_SNAPSHOTS=1 pytest tests/prompts/test_prompts.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from icm.backends.model import PromptSet
from icm.explanation import explanation_schema
from icm.policy.load import load_policy
from icm.prompts import PromptError, available, render, template_id

SNAPSHOTS = Path(__file__).parent / "snapshots"
FACTS = [
    "The person wears a strapless or midriff-baring outfit, showing shoulders or belly "
    "(detected: nudenet:BELLY_EXPOSED 0.81)."
]
DRAFT_SCHEMA = '{"type":"object","properties":{"criteria":{"type":"array"}},"required":["criteria"]}'


def _rendered() -> dict[str, str]:
    policy = load_policy("icm-r1")
    general = load_policy("general")  # its first rule has exceptions
    rule = policy.rules[0]
    schema = json.dumps(explanation_schema(), separators=(",", ":"))
    return {
        "verdict.v1": render("verdict", 1, policy=policy, rule=rule),
        "verdict_with_signals.v1": render("verdict_with_signals", 1, policy=policy, rule=rule,
                                          facts=FACTS),
        "verdict_with_signals.v1.no-facts": render("verdict_with_signals", 1, policy=policy,
                                                   rule=rule, facts=[]),
        "explain.v1": render("explain", 1, policy=policy, rules=policy.rules[:2], facts=FACTS,
                             schema=schema),
        "reask.v1": render("reask", 1, error="no entry in 'rules' for rule ids ['nudity']"),
        "judge_reask.v1": render("judge_reask", 1, error="no JSON object and no score for fluency"),
        "judge.v1": render(
            "judge", 1, rule=rule.text, reference="The woman's shoulders are bare.",
            candidate="The image shows bare shoulders, so it violates the rule.",
        ),
        "decision_input.v1": render("decision_input", 1, policy=policy, facts=FACTS),
        "decision_input.v1.no-signals": render("decision_input", 1, policy=policy, facts=None),
        "predicate.v1": render("predicate", 1, rule=general.rules[0]),
        "decompose.v1": render("decompose", 1, policy=general, rule=general.rules[0], schema=DRAFT_SCHEMA),
        "describe.v1": render(
            "describe", 1, policy=policy, rules=policy.rules[:2], schema=schema,
            labels={policy.rules[0].id: True, policy.rules[1].id: False}, prior=FACTS[0],
            note="the conclusion of exposed-skin does not say why",
        ),
        "describe.v1.no-note": render(
            "describe", 1, policy=policy, rules=policy.rules[:1], schema=schema,
            labels={policy.rules[0].id: False}, prior="The image shows a landscape.", note="",
        ),
        "qa.v1": render(
            "qa", 1, explanation="A woman in a red dress stands on a beach at sunset.",
            counts={"yes_no": 3, "what": 2, "how": 1, "multiple_choice": 2},
        ),
        "instruction.v1": render("instruction", 1, policy=policy, pick=3),
        "conclusion.v1": render("conclusion", 1, policy=policy, violated=policy.rules[:2]),
        "conclusion.v1.complies": render("conclusion", 1, policy=policy, violated=[]),
        "mc.v1": render("mc", 1, question="What is the woman doing with her mouth?",
                        choices={"C": "Whispering", "A": "Smiling", "D": "Biting a finger", "B": "Kissing"}),
        "choice.v1": render("choice", 1, policy=policy, question="How risky is the image?",
                            options=[("A", "low"), ("B", "some risk"), ("C", "high")], letters=True),
        "choice.v1.values": render("choice", 1, policy=policy, question="Is there a cat?",
                                   options=[("Yes", ""), ("No", ""), ("true", "a cat and a dog")], letters=False),
    }


@pytest.mark.parametrize("name", sorted(_rendered()))
def test_snapshot(name: str) -> None:
    text = _rendered()[name] + "\n"
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("ICM_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; see the module docstring"


def test_every_template_has_a_snapshot() -> None:
    shown = {".".join(name.split(".")[:2]) for name in _rendered()}
    shipped = {f"{name}.v{v}" for name, versions in available().items() for v in versions}
    assert shipped - shown == set()


def test_every_template_the_backends_use_has_a_snapshot() -> None:
    used = set(PromptSet(with_signals=True).ids.split(",")) | set(PromptSet(False).ids.split(","))
    used |= set(PromptSet(False).decision_ids.split(","))
    assert used <= {n.removesuffix(".no-facts") for n in _rendered()}
    assert used <= {f"{name}.v{v}" for name, versions in available().items() for v in versions}


def test_verdict_prompts_share_the_text_up_to_the_rule() -> None:
    policy = load_policy("icm-r1")
    prompts = PromptSet(with_signals=True).verdict_prompts(policy, FACTS)
    prefix = os.path.commonprefix(prompts)
    assert "Judge the image against one rule of this policy.\n\nRule: " in prefix
    assert FACTS[0] in prefix


def test_choice_questions_share_the_policy_text_with_the_verdict_questions() -> None:
    policy = load_policy("general")
    verdict = PromptSet(with_signals=False).verdict_prompts(policy, [])[0]
    choice = render("choice", policy=policy, question="Where?", options=[("A", "in"), ("B", "out")], letters=True)
    prefix = os.path.commonprefix([verdict, choice])
    assert prefix.startswith('You are a content moderator for the platform policy "')
    assert policy.description and policy.description.strip() in prefix


def test_versions_and_errors() -> None:
    assert template_id("verdict") == "verdict.v1"
    with pytest.raises(PromptError, match="no prompt template"):
        template_id("nonexistent")
    with pytest.raises(PromptError, match="versions"):
        template_id("verdict", 9)
    with pytest.raises(Exception, match="facts"):  # StrictUndefined: a missing input is an error
        render("verdict_with_signals", policy=load_policy("icm-r1"), rule=None)
