"""The explanation schema: the JSON a model writes about an image under a policy's rules.

One wire format for the model backends (``--explain``), the data engine's explain stage and the
training targets built from it. Its JSON Schema is what constrained decoding uses.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from icm.errors import ModelOutputError
from icm.llm import parse_json_as
from icm.policy.schema import Rule


class RuleExplanation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_id: str = Field(description="the id of the rule")
    criteria_met: list[str] = Field(description="ids of the rule's criteria that hold")
    violates: bool = Field(description="whether the image violates the rule")
    conclusion: str = Field(min_length=1, description="why, citing what is seen")


class ImageExplanation(BaseModel):
    """The JSON answer to the explain prompt; its JSON Schema is what constrained decoding uses."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(description="what the image shows, objectively")
    implicit_content: str = Field(description="the implied meaning or atmosphere")
    rules: list[RuleExplanation]


def explanation_schema() -> dict[str, Any]:
    return ImageExplanation.model_json_schema()


class ExplanationError(ModelOutputError):
    """A model answer that is not a valid explanation for the rules asked about."""


def check_explanation(explanation: ImageExplanation, rules: list[Rule]) -> None:
    """Refuse an explanation that misses a rule asked about or names criteria the rule lacks."""
    by_id = {r.rule_id: r for r in explanation.rules}
    missing = [r.id for r in rules if r.id not in by_id]
    if missing:
        raise ExplanationError(f"no entry in 'rules' for rule ids {missing}")
    for rule in rules:
        known = {c.id for c in rule.criteria}
        unknown = sorted(set(by_id[rule.id].criteria_met) - known)
        if unknown:
            raise ExplanationError(f"rule {rule.id} has no criteria {unknown}; its criteria are {sorted(known)}")


def parse_explanation(text: str, rules: list[Rule]) -> ImageExplanation:
    """Validate a model's JSON answer for ``rules``; the error message is written for the re-ask."""
    parsed = parse_json_as(text, ImageExplanation, error=ExplanationError)
    check_explanation(parsed, rules)
    return parsed
