"""The training configuration: paper defaults, YAML round-trip, command-line overrides, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from icm.cli.app import app
from icm.train.config import ConfigError, LoraSettings, Method, MixSource, TrainConfig


def test_defaults_are_the_papers_recipe() -> None:
    config = TrainConfig()
    assert (config.method, config.lora.r, config.lora.alpha, config.lr, config.epochs) == (
        Method.lora, 128, 256, 2e-4, 1.0
    )
    assert TrainConfig(method="full").lr == 2e-5
    assert TrainConfig(method="qlora").lr == 2e-4
    assert TrainConfig(method="full", learning_rate=1e-5).lr == 1e-5


def test_yaml_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(
        model="models/llava",
        data=Path("data/icm"),
        output=Path("out/run1"),
        method="full",
        lora=LoraSettings(
            r=16, alpha=32, target_modules=["q_proj", "v_proj"], modules_to_save=["multi_modal_projector"]
        ),
        max_steps=100,
        mix=[MixSource(path=Path("general"), ratio=0.5)],
        trainer={"deepspeed": "ds_zero3.json", "report_to": ["wandb"]},
    )
    path = tmp_path / "train.yaml"
    path.write_text(config.to_yaml(), encoding="utf-8")
    assert TrainConfig.from_yaml(path) == config
    assert "ratio: 0.5" in path.read_text(encoding="utf-8")


def test_flags_override_the_file_and_unset_flags_do_not() -> None:
    config = TrainConfig(model="a", max_steps=10, batch_size=8)
    changed = config.with_overrides(model="b", max_steps=None, batch_size=2)
    assert (changed.model, changed.max_steps, changed.batch_size) == ("b", 10, 2)
    with pytest.raises(ConfigError, match="batch_size"):
        config.with_overrides(batch_size=0)


def test_unknown_and_invalid_fields_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("lora:\n  rank: 8\nprecision: fp8\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_yaml(path)
    assert "lora.rank" in str(caught.value) and "precision" in str(caught.value)
    path.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_yaml(path)


def test_mix_flag_parsing() -> None:
    assert MixSource.parse("sets/llava:0.25") == MixSource(path=Path("sets/llava"), ratio=0.25)
    assert MixSource.parse("C:/sets/llava:2").path == Path("C:/sets/llava")
    for bad in ("sets/llava", "sets/llava:many", "sets/llava:0", ":1"):
        with pytest.raises(ConfigError):
            MixSource.parse(bad)


def test_cli_reports_config_errors_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: -1\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2
    assert "epochs" in result.output
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "model" in result.output


def test_train_flag_help_is_the_config_field_description() -> None:
    """One text per setting, as TRL's configs do: a flag's help is its field's description (and
    the config's default, since the flags default to "not given")."""
    import typer

    train = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    flags = {param.name: param for param in train.params if param.param_type_name == "option"}
    fields = {"model": "model", "data": "data", "out": "output", "method": "method", "max_steps": "max_steps",
              "epochs": "epochs", "learning_rate": "learning_rate", "batch_size": "batch_size", "mix": "mix",
              "merge": "merge"}
    assert set(fields) == set(flags) - {"config", "resume", "json_out"}  # every other flag is a field
    for flag, name in fields.items():
        description = TrainConfig.model_fields[name].description
        assert description and flags[flag].help.startswith(description), flag
    assert flags["epochs"].help.endswith("Default: 1.0.") and flags["method"].help.endswith("Default: lora.")
    assert "DIR:RATIO" in flags["mix"].help
