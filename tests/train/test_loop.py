"""The three-command loop, offline: `icm data generate` (or a TRL-format JSONL) -> `icm train` -> `icm moderate`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from helpers import render_text, sample_image
from typer.testing import CliRunner

from icm.cli.app import app

from .test_train_sft import FAST


def test_generated_data_trains_a_model_that_moderates(tmp_path: Path, tiny_llava_dir: Path) -> None:
    images = tmp_path / "labelled"
    for label, name in (("upper_normal", "coffee"), ("whole_leg", "chelsea"), ("upper_normal", "astronaut")):
        (images / label).mkdir(parents=True, exist_ok=True)
        photo = sample_image(name)
        photo.thumbnail((96, 96))
        photo.save(images / label / f"{name}.png")
    (images / "sexy_imagetext").mkdir()
    render_text("SEXY", size=(160, 80), font_size=30).save(images / "sexy_imagetext" / "flyer.png")
    runner = CliRunner()

    data = tmp_path / "data"
    generated = runner.invoke(app, ["data", "generate", "--images", str(images), "--out", str(data),
                                    "--validation", "0.3", "--json"])
    assert generated.exit_code == 0, generated.output
    assert json.loads(generated.stdout)["samples"]["train"] > 0

    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(FAST))
    trained = runner.invoke(app, ["train", "--model", str(tiny_llava_dir), "--data", str(data), "--out",
                                  str(tmp_path / "run"), "--config", str(config), "--max-steps", "3", "--json"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["output"] == str(tmp_path / "run")

    moderated = runner.invoke(app, ["moderate", str(images / "whole_leg" / "chelsea.png"), "--policy", "icm-r1",
                                    "--backend", f"transformers:{tmp_path / 'run'}", "--explain", "none",
                                    "--format", "jsonl", "--quiet"])
    assert moderated.exit_code == 0, moderated.output
    record = json.loads(moderated.stdout.strip().splitlines()[0])
    assert record["error"] is None
    assert [v["rule_id"] for v in record["verdicts"]] == [
        "exposed-skin", "intimate-focus", "nudity", "suggestive-behaviour", "suggestive-text-symbols"
    ]
    assert all(0.0 <= v["probability"] <= 1.0 for v in record["verdicts"])


def test_a_trl_format_jsonl_trains_a_model_that_moderates(tmp_path: Path, tiny_llava_dir: Path) -> None:
    """Data a user wrote by hand in TRL's messages + images form: no meta, image paths relative to the file."""
    data = tmp_path / "my-data"
    (data / "photos").mkdir(parents=True)
    lines = []
    for name, answer in (("coffee", "No"), ("chelsea", "Yes"), ("astronaut", "No"), ("rocket", "No")):
        photo = sample_image(name)
        photo.thumbnail((96, 96))
        photo.save(data / "photos" / f"{name}.png")
        question = "Does the image show a cat? Answer Yes or No."
        lines.append({"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
                                   {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                      "images": [f"photos/{name}.png"]})
    lines.append({"messages": [{"role": "user", "content": "Answer Yes or No: is a rule a rule?"},
                               {"role": "assistant", "content": "Yes"}]})
    jsonl = data / "sft.jsonl"
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    runner = CliRunner()

    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(FAST))
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "--model", str(tiny_llava_dir), "--data", str(jsonl), "--out", str(run),
                                  "--config", str(config), "--max-steps", "3", "--json"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["train_samples"] == 5 and summary["validation_samples"] == 0
    card = (run / "README.md").read_text()
    assert hashlib.sha256(jsonl.read_bytes()).hexdigest() in card and str(jsonl) in card

    moderated = runner.invoke(app, ["moderate", str(data / "photos" / "chelsea.png"), "--policy", "icm-r1",
                                    "--backend", f"transformers:{run}", "--explain", "none",
                                    "--format", "jsonl", "--quiet"])
    assert moderated.exit_code == 0, moderated.output
    record = json.loads(moderated.stdout.strip().splitlines()[0])
    assert record["error"] is None and record["backend"]["models"]["adapter"] == str(run)
    assert len(record["verdicts"]) == 5 and all(0.0 <= v["probability"] <= 1.0 for v in record["verdicts"])
