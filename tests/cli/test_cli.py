"""The icm command line, through typer's runner: formats, exit codes, policy and schema commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import render_text, sample_image
from typer.testing import CliRunner

from icm.cli.app import app

runner = CliRunner()
POLICY = """\
id: cli-test
version: 1
rules:
  - id: phone
    text: No phone numbers.
    action: block
    criteria:
      - {id: phone, description: A phone number is visible., signals: ["text:phone"]}
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    sample_image("coffee").save(folder / "coffee.jpg")
    render_text("call +44 161 496 0000").save(folder / "phone.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (folder / "policy.yaml").write_text(POLICY)
    return folder


def test_jsonl_output_exit_status_and_out_file(images: Path) -> None:
    out = images / "r.jsonl"
    args = ["moderate", str(images), "-p", str(images / "policy.yaml"), "-f", "jsonl", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # one image could not be judged
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {Path(r["image"]).name: r["decision"] for r in rows} == {
        "broken.jpg": "review", "coffee.jpg": "allow", "phone.png": "block"
    }
    assert len(out.read_text().splitlines()) == 3

    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output  # never silently overwritten
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 1  # the broken file still has no judgement
    assert len(out.read_text().splitlines()) == 3  # unchanged since it failed: left alone
    retried = runner.invoke(app, [*args, "--resume", "--retry-errors"])
    assert retried.exit_code == 1  # judged again, and fails again
    assert [json.loads(line)["image"] for line in retried.stdout.splitlines()] == [
        str(images / "broken.jpg")]
    assert len(out.read_text().splitlines()) == 3  # the same failure is not written twice


def test_fail_on_gate_and_table_output(images: Path) -> None:
    args = ["moderate", str(images / "phone.png"), str(images / "coffee.jpg"),
            "-p", str(images / "policy.yaml")]
    table = runner.invoke(app, [*args, "-f", "table"])
    assert table.exit_code == 0, table.output
    assert "block" in table.output and "phone" in table.output and "summary" in table.output
    assert runner.invoke(app, [*args, "-f", "jsonl", "--fail-on", "block"]).exit_code == 3
    assert runner.invoke(app, [*args, "-f", "json", "--fail-on", "block"]).exit_code == 3
    only_coffee = ["moderate", str(images / "coffee.jpg"), "-p", str(images / "policy.yaml")]
    assert runner.invoke(app, [*only_coffee, "-f", "json", "--fail-on", "review"]).exit_code == 0


def test_bad_policy_and_backend_exit_2(images: Path) -> None:
    bad = images / "bad.yaml"
    bad.write_text(POLICY.replace("action: block", "action: nuke"))
    result = runner.invoke(app, ["moderate", str(images), "-p", str(bad)])
    assert result.exit_code == 2 and "bad.yaml:6" in result.output
    result = runner.invoke(app, ["moderate", str(images), "-b", "nonsense"])
    assert result.exit_code == 2 and "unknown backend 'nonsense'" in result.output


def test_policy_commands(images: Path) -> None:
    listed = runner.invoke(app, ["policy", "list"])
    assert listed.exit_code == 0 and "icm-r1" in listed.output and "general" in listed.output
    shown = runner.invoke(app, ["policy", "show", "icm-r2"])
    assert shown.exit_code == 0 and "intimate-focus" in shown.output
    as_yaml = runner.invoke(app, ["policy", "show", "icm-r4", "--yaml"])
    assert "nudenet:FEMALE_BREAST_EXPOSED>=0.5" in as_yaml.output
    ok = runner.invoke(app, ["policy", "validate", str(images / "policy.yaml")])
    assert ok.exit_code == 0 and "valid" in ok.output
    (images / "dup.yaml").write_text(POLICY + POLICY[POLICY.index("  - id: phone"):])
    bad = runner.invoke(app, ["policy", "validate", str(images / "dup.yaml")])
    assert bad.exit_code == 2 and "duplicate rule id: 'phone'" in bad.output


def test_schema_command_prints_the_result_schema() -> None:
    result = runner.invoke(app, ["schema", "result"])
    schema = json.loads(result.stdout)
    assert schema["title"] == "ModerationResult"
    assert {"image", "decision", "verdicts", "error"} <= set(schema["properties"])


def test_backend_options_from_a_yaml_file(images: Path, tmp_path: Path) -> None:
    options = tmp_path / "local.yaml"
    options.write_text("detectors: [nudenet]  # no OCR: text signals cannot be assessed\n")
    args = ["moderate", str(images / "phone.png"), "-p", str(images / "policy.yaml"), "-f", "jsonl", "-q"]
    result = runner.invoke(app, [*args, "--backend-options", str(options)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["backend"]["models"] == {}  # nudenet alone: the policy needs only OCR
    assert record["verdicts"][0]["verdict"] == "uncertain"  # never complies unassessed
    options.write_text("detector: [nudenet]\n")
    typo = runner.invoke(app, [*args, "--backend-options", str(options)])
    assert typo.exit_code == 2 and "cannot take these arguments" in typo.output
    options.write_text("- a list\n")
    assert "a YAML mapping" in runner.invoke(app, [*args, "--backend-options", str(options)]).output
