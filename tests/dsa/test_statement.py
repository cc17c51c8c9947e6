"""Statements of reasons: the model keeps the database's rules, every built-in policy's restricting
decisions make statements the database's rules accept, and random results never make an invalid one."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from dsa.cases import result_of
from dsa.standin import validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from icm.dsa import Case, NoStatement, PersonDecision, SourceType, Statement, StatementFacts, statement_for
from icm.policy import builtin_policy_names, load_policy
from icm.policy.schema import Action, Policy
from icm.results import ErrorCode, ErrorInfo, ModerationResult

JUDGED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def valid_statement() -> dict[str, Any]:
    return {
        "decision_visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"],
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "incompatible_content_ground": "Terms, section 3", "incompatible_content_explanation": "Nudity.",
        "content_type": ["CONTENT_TYPE_IMAGE"], "category": "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
        "content_date": "2026-11-30", "application_date": "2026-11-30", "decision_facts": "Facts.",
        "source_type": "SOURCE_VOLUNTARY", "automated_detection": "Yes",
        "automated_decision": "AUTOMATED_DECISION_FULLY", "puid": "res_0123abc",
    }


def test_the_model_accepts_what_the_database_accepts() -> None:
    payload = valid_statement()
    assert validate(payload) == {}
    assert Statement.model_validate(payload).payload() == payload


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT"}, "category"),  # gone on 2025-07-01
        ({"category_specification": ["KEYWORD_DANGEROUS_TOYS"]}, "category_specification"),  # gone too
        ({"puid": "res 1"}, "puid"),
        ({"puid": "x" * 501}, "puid"),
        ({"content_date": "2026-11-3"}, "content_date"),
        ({"content_date": "1999-12-31"}, "content_date"),
        ({"application_date": "2019-12-31"}, "application_date"),
        ({"application_date": "2026-02-30"}, "application_date"),
        ({"decision_facts": "x" * 5001}, "decision_facts"),
        ({"decision_facts": ""}, "decision_facts"),
        ({"territorial_scope": ["US"]}, "territorial_scope"),
        ({"content_language": "XX"}, "content_language"),
        ({"automated_detection": "yes"}, "automated_detection"),
        ({"decision_visibility": ["DECISION_VISIBILITY_OTHER"]}, "decision_visibility_other"),
        ({"decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT"}, "illegal_content_legal_ground"),
        ({"incompatible_content_explanation": "x" * 2001}, "incompatible_content_explanation"),
        ({"content_type": ["CONTENT_TYPE_OTHER"]}, "content_type_other"),
        ({"decision_visibility": None}, "decision_visibility"),
        ({"end_date_visibility_restriction": "2026-11-29"}, "end_date_visibility_restriction"),
        ({"end_date_account_restriction": "2038-01-02"}, "end_date_account_restriction"),
    ],
)
def test_the_model_refuses_what_the_database_refuses(change: dict[str, Any], field: str) -> None:
    payload = {**valid_statement(), **change}
    assert field in validate(payload)
    with pytest.raises(ValidationError):
        Statement.model_validate(payload)


def test_the_model_also_refuses_fields_that_do_not_apply() -> None:
    """The database drops them silently; a statement made by icm never carries one."""
    with pytest.raises(ValidationError, match="applies only when"):
        Statement.model_validate({**valid_statement(), "illegal_content_legal_ground": "Art. 1"})
    with pytest.raises(ValidationError, match="source_identity does not apply"):
        Statement.model_validate({**valid_statement(), "source_identity": "a notifier"})


def restricting_cases(policy: Policy) -> list[set[str]]:
    restricting = [r.id for r in policy.rules if r.action in (Action.blur, Action.age_gate, Action.block)]
    return [{rule_id} for rule_id in restricting] + [set(restricting)]


@pytest.mark.parametrize("name", ["general", "icm-r1", "icm-r2", "icm-r3", "icm-r4"])
def test_every_builtin_restricting_decision_makes_a_valid_statement(name: str) -> None:
    assert name in builtin_policy_names()
    policy = load_policy(name)
    assert all(rule.dsa is not None for rule in policy.rules), "every built-in rule is mapped"
    for violated in restricting_cases(policy):
        result = result_of(policy, violated)
        statement = statement_for(result, policy, Case(puid="res_" + "a" * 32, judged_at=JUDGED))
        payload = statement.payload()
        assert validate(payload) == {}, (violated, payload)
        strictest = max((policy.rule(r) for r in violated), key=lambda r: r.action.rank)
        assert payload["decision_visibility"][0] == {
            Action.block: "DECISION_VISIBILITY_CONTENT_REMOVED",
            Action.age_gate: "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
            Action.blur: "DECISION_VISIBILITY_CONTENT_LABELLED",
        }[strictest.action]
        assert payload["content_type"] == ["CONTENT_TYPE_IMAGE"]
        assert payload["automated_decision"] == "AUTOMATED_DECISION_FULLY"
        assert payload["automated_detection"] == "Yes"
        assert payload["source_type"] == "SOURCE_VOLUNTARY"
        assert payload["application_date"] == payload["content_date"] == "2026-11-30"
        assert payload["puid"] == "res_" + "a" * 32


def test_the_strictest_rule_gives_the_category_and_the_others_are_additional() -> None:
    policy = load_policy("general")
    result = result_of(policy, {"graphic-violence", "self-harm", "hate"})
    payload = statement_for(result, policy, Case(puid="res_1", judged_at=JUDGED)).payload()
    # self-harm: block + critical beats hate (block + high) and graphic-violence (blur)
    assert payload["category"] == "STATEMENT_CATEGORY_SELF_HARM"
    assert payload["category_addition"] == [
        "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH", "STATEMENT_CATEGORY_VIOLENCE",
    ]
    assert payload["category_specification"] == ["KEYWORD_SELF_MUTILATION", "KEYWORD_SUICIDE", "KEYWORD_HATE_SPEECH",
                                                 "KEYWORD_OTHER"]
    assert payload["category_specification_other"] == "Graphic violence, gore or severe injuries"
    ground = payload["incompatible_content_ground"]
    assert ground.startswith(f"policy general v{policy.version}, rule self-harm: No depiction")
    assert "rule self-harm" in payload["incompatible_content_explanation"].lower()
    assert payload["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]


def test_blur_is_labelled_with_its_words_and_age_gate_is_age_restricted() -> None:
    policy = load_policy("general")
    blurred = statement_for(result_of(policy, {"graphic-violence"}), policy, Case(puid="p1", judged_at=JUDGED))
    assert blurred.decision_visibility == ["DECISION_VISIBILITY_CONTENT_LABELLED", "DECISION_VISIBILITY_OTHER"]
    assert blurred.decision_visibility_other and "blurred" in blurred.decision_visibility_other
    gated = statement_for(result_of(policy, {"suggestive"}), policy, Case(puid="p2", judged_at=JUDGED))
    assert gated.decision_visibility == ["DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED"]


def test_allow_review_and_errors_make_no_statement() -> None:
    policy = load_policy("general")
    case = Case(puid="p", judged_at=JUDGED)
    with pytest.raises(NoStatement, match="allow"):
        statement_for(result_of(policy, set()), policy, case)
    with pytest.raises(NoStatement, match="once a person decides"):
        statement_for(result_of(policy, set(), uncertain={"weapons"}), policy, case)
    with pytest.raises(NoStatement, match="once a person decides"):
        statement_for(result_of(policy, {"weapons"}), policy, case)  # weapons' action is review
    failed = result_of(policy, set()).model_copy(update={
        "decision": Action.review, "verdicts": [], "error": ErrorInfo(code=ErrorCode.truncated, message="cut"),
    })
    with pytest.raises(NoStatement, match="not judged"):
        statement_for(failed, policy, case)


def test_who_decided_and_where_the_case_came_from() -> None:
    policy = load_policy("general")
    queued = result_of(policy, {"weapons"})  # review: waits for a person
    person = PersonDecision(action=Action.block, violated=("weapons",), reason_rule="weapons", at=JUDGED)
    confirmed = statement_for(queued, policy, Case(puid="p", judged_at=JUDGED, person=person))
    assert confirmed.automated_decision == "AUTOMATED_DECISION_PARTIALLY"
    assert confirmed.automated_detection == "Yes"
    assert confirmed.category == "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS"
    assert "changed it from review to block" in confirmed.decision_facts

    facts = StatementFacts(source_identity="Hotline e.V.", territorial_scope=["DE", "AT"], account_type="private",
                           content_language="de", uploaded=date(2026, 11, 1))
    notice = Case(puid="p", judged_at=JUDGED, person=person, source=SourceType.trusted_flagger, facts=facts)
    from_notice = statement_for(queued, policy, notice).payload()
    assert from_notice["automated_decision"] == "AUTOMATED_DECISION_NOT_AUTOMATED"
    assert from_notice["automated_detection"] == "No"
    assert from_notice["source_type"] == "SOURCE_TRUSTED_FLAGGER"
    assert from_notice["source_identity"] == "Hotline e.V."
    assert from_notice["territorial_scope"] == ["DE", "AT"]
    assert from_notice["account_type"] == "ACCOUNT_TYPE_PRIVATE"
    assert from_notice["content_language"] == "DE"
    assert from_notice["content_date"] == "2026-11-01"
    assert validate(from_notice) == {}

    voluntary = statement_for(queued, policy, Case(puid="p", judged_at=JUDGED, person=person, facts=facts))
    assert voluntary.source_identity is None  # never sent with SOURCE_VOLUNTARY


def test_a_rule_without_a_mapping_is_a_violation_of_the_terms() -> None:
    policy = Policy.model_validate({"id": "mine", "rules": [{"id": "no-cats", "text": "No cats.", "action": "block"}]})
    statement = statement_for(result_of(policy, {"no-cats"}), policy, Case(puid="p", judged_at=JUDGED))
    assert statement.category == "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"
    assert statement.incompatible_content_ground == "policy mine v1, rule no-cats: No cats."


def test_an_illegal_ground_carries_the_law_and_why() -> None:
    policy = Policy.model_validate({"id": "mine", "rules": [{
        "id": "terror", "text": "No terrorist propaganda.", "action": "block",
        "dsa": {"ground": "illegal", "category": "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
                "keywords": ["KEYWORD_TERRORIST_CONTENT"], "legal_ground": "Regulation (EU) 2021/784",
                "explanation": "Terrorist content online is illegal under the TCO Regulation.",
                "reference_url": "https://eur-lex.europa.eu/eli/reg/2021/784/oj"},
    }]})
    payload = statement_for(result_of(policy, {"terror"}), policy, Case(puid="p", judged_at=JUDGED)).payload()
    assert payload["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT"
    assert payload["illegal_content_legal_ground"] == "Regulation (EU) 2021/784"
    assert "incompatible_content_ground" not in payload
    assert payload["decision_ground_reference_url"] == "https://eur-lex.europa.eu/eli/reg/2021/784/oj"
    assert validate(payload) == {}


def test_the_hook_for_evidence_with_its_own_category() -> None:
    from icm.policy.dsa import DsaMapping

    policy = load_policy("general")
    own = DsaMapping(category="STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
                     keywords=["KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"])
    case = Case(puid="p", judged_at=JUDGED, mappings={"sexual-nudity": own})
    statement = statement_for(result_of(policy, {"sexual-nudity"}), policy, case)
    assert statement.category == "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"


# -- property-based: any result, any person, any source -------------------------------------------

POLICIES = {name: load_policy(name) for name in ["general", "icm-r1", "icm-r2", "icm-r3", "icm-r4"]}
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=3000)


@st.composite
def cases(draw: st.DrawFn) -> tuple[ModerationResult, Policy, Case]:
    policy = POLICIES[draw(st.sampled_from(sorted(POLICIES)))]
    ids = [r.id for r in policy.rules]
    violated = set(draw(st.lists(st.sampled_from(ids), unique=True)))
    uncertain = set(draw(st.lists(st.sampled_from(ids), unique=True))) - violated
    result = result_of(policy, violated, uncertain)
    # explanations of any length and alphabet (a model's words): the limits must still hold
    verdicts = [v.model_copy(update={"explanation": draw(_TEXT)}) for v in result.verdicts]
    result = result.model_copy(update={"verdicts": verdicts, "explanation": draw(_TEXT)})
    person = None
    if draw(st.booleans()):
        person = PersonDecision(
            action=draw(st.sampled_from(list(Action))),
            violated=tuple(draw(st.lists(st.sampled_from(ids), unique=True))),
            reason_rule=draw(st.none() | st.sampled_from(ids)),
            at=draw(st.datetimes(datetime(2020, 1, 1), datetime(2037, 12, 31), timezones=st.just(UTC))),
            appeal=draw(st.none() | st.just("apl_1")),
        )
    facts = StatementFacts(
        territorial_scope=draw(st.none() | st.lists(st.sampled_from(["EU", "EEA", "DE", "NO", "FR"]), min_size=1)),
        account_type=draw(st.none() | st.sampled_from(["business", "private"])),
        source_identity=draw(st.none() | st.text(min_size=1, max_size=500)),
        uploaded=draw(st.none() | st.dates(date(2000, 1, 1), date(2037, 12, 31))),
    )
    judged = draw(st.datetimes(datetime(2020, 1, 1), datetime(2037, 12, 31), timezones=st.just(UTC)))
    puid = draw(st.from_regex(r"\A[a-zA-Z0-9_-]{1,60}\Z"))
    return result, policy, Case(puid=puid, judged_at=judged, source=draw(st.sampled_from(list(SourceType))),
                                facts=facts, person=person)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_any_result_makes_a_valid_statement_or_says_why_not(drawn: tuple[ModerationResult, Policy, Case]) -> None:
    result, policy, case = drawn
    action = case.person.action if case.person is not None else result.decision
    try:
        statement = statement_for(result, policy, case)
    except NoStatement as why:
        assert action in (Action.allow, Action.review) or not (result.violated or (case.person and (
            case.person.violated or case.person.reason_rule))), str(why)
        return
    assert action in (Action.blur, Action.age_gate, Action.block)
    payload = statement.payload()
    assert validate(payload) == {}, payload
    assert Statement.model_validate(payload) == statement
    expected = ("AUTOMATED_DECISION_FULLY" if case.person is None else
                "AUTOMATED_DECISION_NOT_AUTOMATED" if case.source.notice else "AUTOMATED_DECISION_PARTIALLY")
    assert payload["automated_decision"] == expected


def test_a_statement_never_quotes_the_text_found_in_the_image() -> None:
    """The database must hold no personal data (Article 24(5)): the explanation names the rule and
    the criteria the evidence met, never the model's words or the text read in the image."""
    from icm.results import Evidence

    policy = load_policy("general")
    result = result_of(policy, {"spam-contact"})
    verdicts = [v.model_copy(update={
        "explanation": 'Phone "+1 555-123-4567" and "write to jane.doe@example.com"',
        "evidence": [Evidence(criterion="contact-details", signal="text:phone", score=1.0, text="+1 555-123-4567")],
    }) if v.rule_id == "spam-contact" else v for v in result.verdicts]
    payload = statement_for(result.model_copy(update={"verdicts": verdicts}), policy,
                            Case(puid="res_1", judged_at=JUDGED)).payload()
    text = json.dumps(payload)
    assert "555" not in text and "jane.doe" not in text
    described = next(c.description for c in policy.rule("spam-contact").criteria if c.id == "contact-details")
    assert described.rstrip(".") in payload["incompatible_content_explanation"]
    assert payload["incompatible_content_explanation"].startswith("Rule spam-contact (No spam")
