"""`icm train` on a tiny random LLaVA: loss falls, the adapter saves, reloads and moderates; resume; merge; full."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from icm.backends.transformers import TransformersBackend
from icm.cli.app import app
from icm.media import load_image
from icm.policy.load import load_policy
from icm.train.config import TrainConfig

from .conftest import PHOTOS, TAUGHT_NO, TAUGHT_YES

#: Small and fast: the tiny model learns the Yes/No lesson within two dozen steps at this rate. A
#: random model's logits are near uniform and its final norm caps how far adapters on the layers
#: alone can move them, so the output head is trained in full beside the adapter.
FAST = {
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "modules_to_save": ["lm_head"]},
    "learning_rate": 1e-2,
    "batch_size": 4,
    "gradient_accumulation": 1,
    "warmup_ratio": 0.0,
    "scheduler": "constant",
    "save_steps": 12,
    "eval_steps": 12,
    "gradient_checkpointing": False,
}


def run_train(tmp_path: Path, model: Path, data: Path, out: Path, *flags: str, **config: Any) -> dict[str, Any]:
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump({**FAST, **config}), encoding="utf-8")
    args = ["train", "--model", str(model), "--data", str(data), "--out", str(out), "--config", str(path)]
    result = CliRunner().invoke(app, [*args, *flags, "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, "stdout carries the summary line only"
    summary: dict[str, Any] = json.loads(lines[0])
    return summary


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_llava_dir: Path, verdict_dataset: Path) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("trained")
    return run_train(tmp, tiny_llava_dir, verdict_dataset, tmp / "out", "--max-steps", "24")


def test_loss_falls_on_training_and_validation_data(trained: dict[str, Any]) -> None:
    assert trained["steps"] == 24
    assert trained["train_samples"] == 12 and trained["validation_samples"] == 4
    assert len(trained["losses"]) == 24
    assert trained["final_loss"] < 0.7 * trained["initial_loss"]
    assert trained["final_eval_loss"] < 0.7 * trained["initial_eval_loss"]


def test_output_is_an_adapter_with_a_model_card(
    trained: dict[str, Any], tiny_llava_dir: Path, verdict_dataset: Path
) -> None:
    out = Path(trained["output"])
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_llava_dir.resolve())
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16
    card = (out / "README.md").read_text()
    train_hash = __import__("hashlib").sha256((verdict_dataset / "train.jsonl").read_bytes()).hexdigest()
    for expected in (str(tiny_llava_dir.resolve()), train_hash, "icm-r1 v1 (12 samples)", "learning_rate: 0.01",
                     f"transformers:{out}", '"format": "icm-dataset/1"'):
        assert expected in card
    rerun = TrainConfig.from_yaml(out / "train_config.yaml")
    assert rerun.lora.r == 8 and rerun.model == str(tiny_llava_dir) and rerun.max_steps == 24
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-24"]


def p_violates(backend: TransformersBackend, image: Path) -> dict[str, float]:
    verdicts = backend.judge(load_image(image), load_policy("icm-r1"))
    return {v.rule_id: float(v.probability or 0.0) for v in verdicts}


def test_the_adapter_moderates_and_has_learned_the_lesson(
    trained: dict[str, Any], tiny_llava_dir: Path, verdict_dataset: Path
) -> None:
    out = trained["output"]
    unseen = verdict_dataset / "images" / f"{PHOTOS[-1]}.png"  # a validation image
    result = CliRunner().invoke(
        app, ["moderate", str(unseen), "--policy", "icm-r1", "--backend", f"transformers:{out}",
              "--explain", "none", "--format", "jsonl", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[0])
    assert record["error"] is None and record["backend"]["models"]["adapter"] == out
    after = {v["rule_id"]: v["probability"] for v in record["verdicts"]}
    before = p_violates(TransformersBackend(str(tiny_llava_dir), explain="none"), unseen)
    # Two dozen steps move the answers the taught way on an image it never saw; the rule text
    # alone tells the two questions apart.
    # Most answers in the data are No (every rule but TAUGHT_YES), so every rule's p(violates)
    # falls; what the lesson teaches is the difference the rule text makes.
    assert after[TAUGHT_NO] < before[TAUGHT_NO]
    assert after[TAUGHT_YES] - after[TAUGHT_NO] > before[TAUGHT_YES] - before[TAUGHT_NO] + 0.02


def test_resume_continues_from_the_newest_checkpoint(
    tmp_path: Path, tiny_llava_dir: Path, verdict_dataset: Path
) -> None:
    out = tmp_path / "run"
    first = run_train(tmp_path, tiny_llava_dir, verdict_dataset, out, "--max-steps", "4", save_steps=2)
    assert first["steps"] == 4
    again = CliRunner().invoke(app, ["train", "--model", str(tiny_llava_dir), "--data", str(verdict_dataset),
                                     "--out", str(out), "--max-steps", "6"])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = run_train(tmp_path, tiny_llava_dir, verdict_dataset, out, "--max-steps", "6", "--resume", save_steps=2)
    assert resumed["steps"] == 6
    assert resumed["resumed_from"] == str(out / "checkpoint-4")
    assert resumed["losses"][:4] == first["losses"]  # the history of the first run is kept
    assert resumed["initial_loss"] == first["initial_loss"]
    nothing = CliRunner().invoke(app, ["train", "--model", str(tiny_llava_dir), "--data", str(verdict_dataset),
                                       "--out", str(tmp_path / "empty"), "--resume"])
    assert nothing.exit_code == 2 and "nothing to resume" in nothing.output


def test_merge_folds_the_adapter_in(tmp_path: Path, tiny_llava_dir: Path, verdict_dataset: Path) -> None:
    summary = run_train(tmp_path, tiny_llava_dir, verdict_dataset, tmp_path / "merged", "--max-steps", "3", "--merge")
    out = Path(summary["output"])
    assert summary["merged"] is True
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    assert (out / "adapter" / "adapter_config.json").exists()
    image = verdict_dataset / "images" / f"{PHOTOS[0]}.png"
    merged = TransformersBackend(str(out), explain="none")
    assert merged.adapter_path is None
    from_adapter = TransformersBackend(str(out / "adapter"), explain="none")
    assert p_violates(merged, image) == pytest.approx(p_violates(from_adapter, image), abs=1e-4)


def test_full_fine_tuning_keeps_the_vision_tower_frozen(
    tmp_path: Path, tiny_llava_dir: Path, verdict_dataset: Path
) -> None:
    from transformers import LlavaForConditionalGeneration

    summary = run_train(tmp_path, tiny_llava_dir, verdict_dataset, tmp_path / "full", "--max-steps", "2",
                        "--method", "full", "--lr", "1e-2")
    assert summary["method"] == "full"
    base = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).state_dict()
    tuned = LlavaForConditionalGeneration.from_pretrained(summary["output"]).state_dict()
    vision = [k for k in base if ".vision_tower." in k]
    language = [k for k in base if ".language_model." in k and k.endswith("q_proj.weight")]
    assert vision and language
    assert all(torch.equal(base[k], tuned[k]) for k in vision)
    assert all(not torch.equal(base[k], tuned[k]) for k in language)
