"""Draft criteria for rules that have none, with a text LLM, for a human to review.

The draft is written to a new file (never over the original); each drafted criterion is marked
with a comment-free ``drafted: true`` flag in the report, and rules that already have criteria are
left exactly as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from icm.llm import parse_json_as
from icm.policy.load import dump_policy, load_policy
from icm.policy.schema import Criterion, Policy, slugify
from icm.prompts import render

if TYPE_CHECKING:
    from icm.llm import ChatModel


class DraftCriterion(BaseModel):
    id: str = Field(max_length=40)
    description: str = Field(max_length=200)


class DraftCriteria(BaseModel):
    criteria: list[DraftCriterion] = Field(min_length=1, max_length=6)


@dataclass
class DecomposeReport:
    drafted: dict[str, list[str]] = field(default_factory=dict)  # rule id -> criterion ids
    failed: dict[str, str] = field(default_factory=dict)  # rule id -> why
    kept: list[str] = field(default_factory=list)  # rules that already had criteria
    tokens: int = 0


def _schema() -> dict[str, Any]:
    text = {"type": "string", "minLength": 10, "maxLength": 160}
    item = {"type": "object", "properties": {"id": {"type": "string", "minLength": 2, "maxLength": 40},
                                             "description": text},
            "required": ["id", "description"]}
    return {"type": "object", "properties": {"criteria": {"type": "array", "minItems": 1, "maxItems": 6,
                                                          "items": item}}, "required": ["criteria"]}


def draft_criteria(policy: Policy, model: ChatModel) -> tuple[Policy, DecomposeReport]:
    """A new policy whose criterion-less rules carry drafted criteria (version bumped by one)."""
    report = DecomposeReport()
    schema = _schema()
    rules = []
    for rule in policy.rules:
        if rule.criteria:
            report.kept.append(rule.id)
            rules.append(rule)
            continue
        generation = model.complete(render("decompose", policy=policy, rule=rule, schema=schema), schema=schema)
        report.tokens += generation.tokens
        try:
            draft = parse_json_as(generation.text, DraftCriteria)
        except ValueError as exc:
            report.failed[rule.id] = f"unreadable answer: {str(exc).splitlines()[0]}"
            rules.append(rule)
            continue
        criteria: list[Criterion] = []
        for item in draft.criteria:
            slug = slugify(item.id, default="criterion", max_length=40)
            if slug in {c.id for c in criteria} or len(item.description.strip()) < 3:
                continue
            criteria.append(Criterion(id=slug, description=item.description.strip()))
        if not criteria:
            report.failed[rule.id] = "no usable criteria in the answer"
            rules.append(rule)
            continue
        report.drafted[rule.id] = [c.id for c in criteria]
        rules.append(rule.model_copy(update={"criteria": criteria}))
    return policy.model_copy(update={"rules": rules, "version": policy.version + 1}), report


def decompose_file(source: str | Path, model: ChatModel, out: Path | None = None) -> tuple[Path, DecomposeReport]:
    """Draft criteria for a policy file; the result goes to ``out`` (default NAME.draft.yaml)."""
    policy = load_policy(source)
    target = out or Path(f"{Path(str(source)).stem}.draft.yaml")
    if target.exists():
        raise FileExistsError(f"{target} exists; choose another --out (drafts never overwrite a file)")
    drafted, report = draft_criteria(policy, model)
    header = (f"# Draft of {policy.id} v{policy.version} -> v{drafted.version}: criteria drafted by a model for "
              f"rules {sorted(report.drafted)}.\n# Review every drafted criterion before use.\n")
    target.write_text(dump_policy(drafted, header), "utf-8")
    load_policy(target)  # the draft must itself be a valid policy
    return target, report
