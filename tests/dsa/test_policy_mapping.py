"""The ``dsa`` field of a rule: checked by ``icm policy validate`` with the allowed values in the
error, shown by ``icm schema policy``; the statement's schema by ``icm schema dsa``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from icm.cli.app import app

runner = CliRunner()

POLICY = """\
id: mapped
rules:
  - id: nudity
    text: No nudity.
    action: block
    dsa: {category: %s, keywords: [%s]%s}
"""


def _validate(tmp_path: Path, category: str, keyword: str, extra: str = "") -> tuple[int, str]:
    file = tmp_path / "p.yaml"
    file.write_text(POLICY % (category, keyword, extra))
    result = runner.invoke(app, ["policy", "validate", str(file)])
    return result.exit_code, result.output


def test_a_valid_mapping_validates(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", "KEYWORD_NUDITY")
    assert code == 0, output
    assert "valid" in output


def test_an_unknown_category_or_keyword_is_refused_with_the_allowed_values(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, "STATEMENT_CATEGORY_PORNOGRAPHY_OR_SEXUALIZED_CONTENT", "KEYWORD_NUDITY")
    assert code == 2
    assert "rules[0].dsa.category" in output
    assert "STATEMENT_CATEGORY_PROTECTION_OF_MINORS" in output  # an allowed value, named in the error
    code, output = _validate(tmp_path, "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", "KEYWORD_NAKED")
    assert code == 2
    assert "rules[0].dsa.keywords[0]" in output and "KEYWORD_ADULT_SEXUAL_MATERIAL" in output


def test_illegal_needs_a_legal_ground_and_an_explanation(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", "KEYWORD_NUDITY", ", ground: illegal")
    assert code == 2
    assert "ground 'illegal' needs legal_ground and explanation" in output
    code, output = _validate(tmp_path, "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", "KEYWORD_NUDITY",
                             ", ground: illegal, legal_ground: 'Art. 1', explanation: 'Because.'")
    assert code == 0, output
    code, output = _validate(tmp_path, "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", "KEYWORD_NUDITY",
                             ", ground: lawful")
    assert code == 2 and "'incompatible' or 'illegal'" in output


def test_the_schemas_show_the_mapping_and_the_statement() -> None:
    policy = json.loads(runner.invoke(app, ["schema", "policy"]).stdout)
    rule = policy["$defs"]["Rule"]["properties"]
    assert "dsa" in rule
    mapping = policy["$defs"]["DsaMapping"]["properties"]
    assert "STATEMENT_CATEGORY_SELF_HARM" in mapping["category"]["enum"]
    statement = json.loads(runner.invoke(app, ["schema", "dsa"]).stdout)
    assert statement["title"] == "Statement"
    assert {"decision_ground", "category", "puid", "content_date", "automated_decision"} <= set(statement["required"])
    assert "KEYWORD_NUDITY" in statement["properties"]["category_specification"]["anyOf"][0]["items"]["enum"]
