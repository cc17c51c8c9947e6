"""`icm policy decompose`: a real small LLM drafts criteria into a new, valid, reviewable file."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from icm.cli.app import app
from icm.policy import load_policy

POLICY = """\
id: forum
version: 2
rules:
  - id: no-weapons
    text: No images of firearms or knives being brandished.
  - id: no-contact
    text: No phone numbers.
    criteria:
      - {id: phone, description: A phone number is visible., signals: ["text:phone"]}
"""


def test_decompose_writes_a_new_valid_draft_and_never_overwrites(tmp_path: Path) -> None:
    source = tmp_path / "forum.yaml"
    source.write_text(POLICY)
    draft = tmp_path / "forum.draft.yaml"
    args = ["policy", "decompose", str(source), "--llm", "llama-cpp:smollm2", "--out", str(draft)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert source.read_text() == POLICY  # the original is untouched
    drafted = load_policy(draft)
    assert drafted.version == 3
    weapons = drafted.rule("no-weapons")
    assert 1 <= len(weapons.criteria) <= 6 and all(c.description for c in weapons.criteria)
    assert drafted.rule("no-contact") == load_policy(source).rule("no-contact")  # kept exactly
    assert "Review every drafted criterion" in draft.read_text()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "never overwrite" in again.output
