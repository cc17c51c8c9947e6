"""What a moderation model is asked, built once for the training data and for inference.

A fine-tuned model must be asked in the words it was trained on. The data engine writes its
verdict and explanation samples with these functions, and every model backend (transformers,
openai, vllm) asks with them, so the prompt of a training sample is the prompt ``icm moderate``
sends for the same image and rule; :func:`chat_turn` is the one shape of a turn (the images
first, then the text) in the chat-template message form both sides format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from icm.explanation import explanation_schema
from icm.policy.schema import Policy, Rule
from icm.prompts import render

VERDICT = "verdict"
VERDICT_WITH_SIGNALS = "verdict_with_signals"
EXPLAIN = "explain"


def verdict_template(with_signals: bool = False) -> str:
    """The template name of the per-rule Yes/No question, with or without detector facts."""
    return VERDICT_WITH_SIGNALS if with_signals else VERDICT


def verdict_prompt(policy: Policy, rule: Rule, facts: Sequence[str] = (), *, with_signals: bool = False) -> str:
    """The Yes/No question for one rule (the policy's text up to the rule is shared by its rules)."""
    return render(verdict_template(with_signals), policy=policy, rule=rule, facts=list(facts))


def verdict_prompts(policy: Policy, facts: Sequence[str] = (), *, with_signals: bool = False) -> list[str]:
    """One question per rule, in the policy's order."""
    return [verdict_prompt(policy, rule, facts, with_signals=with_signals) for rule in policy.rules]


def explain_prompt(policy: Policy, rules: Sequence[Rule], facts: Sequence[str] = ()) -> str:
    """The request for one JSON explanation (:class:`~icm.explanation.ImageExplanation`) of the
    image under ``rules``, with the answer's JSON Schema."""
    schema = json.dumps(explanation_schema(), separators=(",", ":"))
    return render(EXPLAIN, policy=policy, rules=list(rules), facts=list(facts), schema=schema)


def chat_turn(role: str, text: str, images: int = 0) -> dict[str, Any]:
    """One message as chat templates take it: one image part per image, then the text."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(images)]
    content.append({"type": "text", "text": text})
    return {"role": role, "content": content}


def chat_turns(turns: Sequence[tuple[str, str]], images: int = 0) -> list[dict[str, Any]]:
    """A conversation of (role, text) turns; the images go with the first turn."""
    return [chat_turn(role, text, images if i == 0 else 0) for i, (role, text) in enumerate(turns)]
