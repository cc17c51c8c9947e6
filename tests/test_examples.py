"""The examples stay runnable: their policies load, their files exist, the API script runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from icm.cli.app import app
from icm.policy import load_policy
from icm.policy.categories import load_label_map

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_example_policies_load() -> None:
    for path in sorted((EXAMPLES / "policies").glob("*.yaml")):
        assert load_policy(path).rules, path


def test_labels_manifest_and_label_map_point_at_real_images() -> None:
    general = load_policy("general")
    for line in (EXAMPLES / "labels.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert (EXAMPLES / row["image"]).is_file() and general.rule(row["rule_id"])
    label_map = load_label_map(EXAMPLES / "label-map.yaml")
    criteria = {c.id for r in general.rules for c in r.criteria}
    with (EXAMPLES / "data-manifest.csv").open() as handle:
        for row in csv.DictReader(handle):
            assert (EXAMPLES / row["image"]).is_file()
            assert set(label_map[row["label"]]) <= criteria


def test_python_api_example_runs(tmp_path: Path) -> None:
    (tmp_path / "results.jsonl").write_text('{"written by": "icm moderate --out"}\n')
    done = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "scam-flyer.png: block" in done.stdout
    assert len((tmp_path / "kids-results.jsonl").read_text().splitlines()) == 4
    again = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py")], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "kids-results.jsonl").read_text().splitlines()) == 4  # continued
    assert (tmp_path / "results.jsonl").read_text() == '{"written by": "icm moderate --out"}\n'


def test_mqa_answers_example_writes_a_file_that_eval_mqa_scores(tmp_path: Path) -> None:
    """The README's recipe for an answers file, on a tiny random LLaVA built here (no weights)."""
    from backends.tiny_vlm import save_tiny_llava

    model = save_tiny_llava(tmp_path / "tiny-llava")
    questions = tmp_path / "gold.jsonl"
    questions.write_text(
        json.dumps({"id": "q1", "image": "astronaut.jpg", "type": "yesno", "question": "Is a person shown?",
                    "answer": "yes"}) + "\n"
        + json.dumps({"id": "q2", "image": "coffee.jpg", "type": "mc", "question": "What is shown?",
                      "choices": ["A. a cup", "B. a cat"], "answer": "A"}) + "\n"
    )
    answers = tmp_path / "answers.jsonl"
    options = tmp_path / "options.yaml"
    options.write_text("max_new_tokens: 4\n")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "mqa_answers.py"), "--questions", str(questions),
         "--images", str(EXAMPLES / "images"), "--backend", f"transformers:{model}",
         "--backend-options", str(options), "--out", str(answers)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q1", "q2"] and all(isinstance(r["answer"], str) for r in rows)
    scored = CliRunner().invoke(app, ["eval", "mqa", "-q", str(questions), "-a", str(answers), "--json"])
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert report["total"] == 2 and report["missing"] == 0  # every question has its answer
