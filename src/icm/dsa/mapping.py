"""From a moderation result (and the person who decided, if one did) to its statement of reasons.

The restriction comes from the decision, the ground and the category from the violated rules'
``dsa`` mappings (the strictest rule's category first, the others as additional categories), the
automation fields from who decided and where the case came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from icm.errors import IcmError
from icm.policy.dsa import UNMAPPED, DsaMapping
from icm.policy.dsa_vocabulary import COUNTRIES, EEA, EU
from icm.policy.schema import Action, Policy, Rule
from icm.results import ModerationResult

from .statement import Statement

_SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}

_VISIBILITY: dict[Action, list[str]] = {
    Action.block: ["DECISION_VISIBILITY_CONTENT_REMOVED"],
    Action.age_gate: ["DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED"],
    Action.blur: ["DECISION_VISIBILITY_CONTENT_LABELLED", "DECISION_VISIBILITY_OTHER"],
}
#: what ``blur`` does, in the words of decision_visibility_other
BLUR_TEXT = "The image is shown blurred behind a content warning until the viewer chooses to see it."


class NoStatement(IcmError):
    """The result calls for no statement of reasons (yet); the message says why."""

    http_status = 404
    code = "no_statement"


class SourceType(StrEnum):
    """Where a case came from (the request's ``source``)."""

    voluntary = "voluntary"
    article_16 = "article_16"
    trusted_flagger = "trusted_flagger"
    other_notification = "other_notification"

    @property
    def database_key(self) -> str:
        return {
            "voluntary": "SOURCE_VOLUNTARY",
            "article_16": "SOURCE_ARTICLE_16",
            "trusted_flagger": "SOURCE_TRUSTED_FLAGGER",
            "other_notification": "SOURCE_TYPE_OTHER_NOTIFICATION",
        }[self.value]

    @property
    def notice(self) -> bool:
        """Someone else pointed the platform at the content (not its own initiative)."""
        return self is not SourceType.voluntary


def territories(value: Sequence[str] | str | None) -> list[str] | None:
    """``EU``, ``EEA`` or country codes (EU/EEA) -> the codes; None stays None."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    codes: list[str] = []
    for name in names:
        name = name.strip().upper()
        expanded = {"EU": list(EU), "EEA": list(EEA)}.get(name, [name])
        codes += [code for code in expanded if code not in codes]
    unknown = [code for code in codes if code not in COUNTRIES]
    if unknown:
        raise ValueError(f"not EU/EEA country codes: {', '.join(unknown)}; allowed: EU, EEA, {', '.join(COUNTRIES)}")
    return codes


class StatementFacts(BaseModel):
    """What a platform knows about a case beyond the image: the territory the decision applies to,
    the uploader's account type, the content's language and when it was uploaded. A request may
    give them (``dsa`` on ``/v1/moderate``); the service settings fill in the rest."""

    model_config = ConfigDict(extra="forbid")

    territorial_scope: list[str] | None = Field(
        None, description="EU/EEA country codes, or EU or EEA, where the restriction applies."
    )
    account_type: Literal["business", "private"] | None = Field(None, description="The uploader's account type.")
    content_language: str | None = Field(
        None, pattern=r"^[A-Za-z]{2}$", description="ISO 639-1 code of the content's language (text in the image)."
    )
    uploaded: date | None = Field(None, description="When the content was uploaded (default: when it was judged).")
    source_identity: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        None, description="Who sent the notice (with a source other than voluntary); no personal data."
    )

    @model_validator(mode="after")
    def _codes(self) -> StatementFacts:
        if self.territorial_scope is not None:
            self.territorial_scope = territories(self.territorial_scope)
        if self.content_language is not None:
            self.content_language = self.content_language.upper()
        return self

    def over(self, defaults: StatementFacts) -> StatementFacts:
        """These facts, with ``defaults`` where these say nothing."""
        mine = self.model_dump(exclude_none=True)
        return StatementFacts.model_validate({**defaults.model_dump(exclude_none=True), **mine})


@dataclass(frozen=True)
class PersonDecision:
    """What a person decided: the action, the rules they found violated, the rule the decision
    rests on, and when. ``appeal`` names the appeal it answered, if it answered one."""

    action: Action
    violated: tuple[str, ...]
    reason_rule: str | None
    at: datetime
    previous: Action | None = None
    appeal: str | None = None


@dataclass(frozen=True)
class Case:
    """Everything a statement is made from besides the result and its policy."""

    puid: str
    judged_at: datetime
    source: SourceType = SourceType.voluntary
    facts: StatementFacts = field(default_factory=StatementFacts)
    person: PersonDecision | None = None
    #: Mappings that take precedence over the rules' own, by rule id. The hook for evidence that
    #: carries its own category (a hash-bank entry that names one); empty until such evidence exists.
    mappings: Mapping[str, DsaMapping] = field(default_factory=dict)


def statement_for(result: ModerationResult, policy: Policy | None, case: Case) -> Statement:
    """The statement of reasons of a restricting decision; :class:`NoStatement` says why there is
    none (allowed, waiting for a person, not judged, no violated rule). Raises pydantic's
    ValidationError when the parts do not make a valid statement (a content date before 2000 ...)."""
    person = case.person
    action = person.action if person is not None else result.decision
    if person is None and result.error is not None:
        raise NoStatement(f"the image was not judged ({result.error.code}): a statement follows once a "
                          "person decides")
    if action is Action.allow:
        raise NoStatement("the decision is allow: nothing was restricted, so there is no statement")
    if action is Action.review:
        raise NoStatement("the decision is review: a statement follows once a person decides")
    rules = _violated_rules(result, policy, person)
    if not rules:
        raise NoStatement(f"the decision {action} names no violated rule to state as its ground")
    mappings = [case.mappings.get(rule_id) or (rule.dsa if rule is not None else None) or UNMAPPED
                for rule_id, rule in rules]
    main, (main_id, main_rule) = mappings[0], rules[0]
    where = f"policy {result.policy.id} v{result.policy.version}"

    ground: dict[str, object]
    if main.ground == "illegal":
        ground = {
            "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT",
            "illegal_content_legal_ground": main.legal_ground,
            "illegal_content_explanation": main.explanation,
        }
    else:
        rule_text = f": {main_rule.text}" if main_rule is not None else ""
        ground = {
            "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
            "incompatible_content_ground": main.contractual_ground or _cut(f"{where}, rule {main_id}{rule_text}", 500),
            "incompatible_content_explanation": main.explanation or _explanation(result, rules),
        }
        if main.also_illegal is not None:
            ground["incompatible_content_illegal"] = "Yes" if main.also_illegal else "No"

    categories = list(dict.fromkeys(m.category for m in mappings[1:] if m.category != main.category))
    keywords = list(dict.fromkeys(k for m in mappings for k in m.keywords))
    keyword_other = "; ".join(dict.fromkeys(m.keyword_other for m in mappings if m.keyword_other))
    facts = case.facts
    notice = case.source.notice
    if person is None:
        automation = "AUTOMATED_DECISION_FULLY"
    else:
        automation = "AUTOMATED_DECISION_NOT_AUTOMATED" if notice else "AUTOMATED_DECISION_PARTIALLY"
    uploaded = facts.uploaded or case.judged_at.date()
    decided = person.at if person is not None else case.judged_at
    visibility = _VISIBILITY[action]
    return Statement.model_validate({
        "decision_visibility": visibility,
        "decision_visibility_other": BLUR_TEXT if "DECISION_VISIBILITY_OTHER" in visibility else None,
        **ground,
        "decision_ground_reference_url": main.reference_url,
        "category": main.category,
        "category_addition": categories or None,
        "category_specification": keywords or None,
        "category_specification_other": _cut(keyword_other, 500) or None,
        "content_type": ["CONTENT_TYPE_IMAGE"],
        "territorial_scope": facts.territorial_scope,
        "account_type": f"ACCOUNT_TYPE_{facts.account_type.upper()}" if facts.account_type else None,
        "content_language": facts.content_language,
        "content_date": uploaded.isoformat(),
        "application_date": decided.date().isoformat(),
        "decision_facts": _facts(result, action, person, notice, where),
        "source_type": case.source.database_key,
        "source_identity": facts.source_identity if notice else None,
        "automated_detection": "No" if notice else "Yes",
        "automated_decision": automation,
        "puid": case.puid,
    })


def _violated_rules(result: ModerationResult, policy: Policy | None,
                    person: PersonDecision | None) -> list[tuple[str, Rule | None]]:
    """The violated rules, strictest first (the rule a person named first of all)."""
    if person is not None:
        ids = list(person.violated) or ([person.reason_rule] if person.reason_rule else [])
        ids = ids or [v.rule_id for v in result.violated]
    else:
        ids = [v.rule_id for v in result.violated]
    known = {rule.id: rule for rule in policy.rules} if policy is not None else {}
    rules = [(rule_id, known.get(rule_id)) for rule_id in dict.fromkeys(ids)]

    def strictness(item: tuple[str, Rule | None]) -> tuple[int, int, int]:
        rule_id, rule = item
        named = 1 if person is not None and rule_id == person.reason_rule else 0
        if rule is None:
            return named, -1, -1
        return named, rule.action.rank, _SEVERITY_RANK[rule.severity.value]

    return sorted(rules, key=strictness, reverse=True)


def _explanation(result: ModerationResult, rules: list[tuple[str, Rule | None]]) -> str:
    """Why the content is incompatible: each violated rule and the descriptions of its criteria the
    evidence met. Never the model's own words nor the text read in the image: those may quote
    personal data (a phone number, a name), which a statement must not carry (Article 24(5))."""
    evidence = {v.rule_id: v.evidence for v in result.verdicts}
    parts = []
    for rule_id, rule in rules:
        head = f"Rule {rule_id}" + (f" ({rule.text.strip().rstrip('.')})" if rule is not None else "")
        described = {c.id: c.description.strip().rstrip(".") for c in rule.criteria} if rule is not None else {}
        met = [described.get(c, c) for c in dict.fromkeys(e.criterion for e in evidence.get(rule_id, []))]
        parts.append(f"{head} is violated" + (f": {'; '.join(met)}." if met else "."))
    return _cut(" ".join(parts), 2000)


def _facts(result: ModerationResult, action: Action, person: PersonDecision | None, notice: bool, where: str) -> str:
    """The facts and circumstances: how the case came in, what the model found, what a person decided."""
    parts = ["A notice pointed at this image." if notice else "The image was checked on the platform's own initiative."]
    if result.error is None:
        parts.append(f"Automated assessment under {where}: {result.explanation}".strip())
    if person is not None:
        found = ", ".join(person.violated) or "no rule"
        if person.appeal is not None:
            before = f" from {person.previous}" if person.previous is not None else ""
            parts.append(f"On appeal, a person reviewed the decision and changed it{before} to {action} "
                         f"(rules found violated: {found}).")
        else:
            verb = "confirmed the decision" if action is result.decision else f"changed it from {result.decision} to"
            parts.append(f"A person reviewed the image and {verb} {action} (rules found violated: {found}).")
    return _cut(" ".join(parts), 5000)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
