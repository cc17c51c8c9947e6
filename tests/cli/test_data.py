"""`icm data generate`'s options are GenerateConfig's fields: the same defaults, help and bounds."""

from __future__ import annotations

from typing import Any

import typer.main
from typer.testing import CliRunner

from icm.cli.app import app
from icm.datagen.config import GenerateConfig


def _generate() -> Any:
    return typer.main.get_command(app).commands["data"].commands["generate"]


def test_generate_options_take_help_and_defaults_from_the_config() -> None:
    options = {p.name: p for p in _generate().params if p.param_type_name == "option"}
    fields = {name: f for name, f in GenerateConfig.model_fields.items() if name != "qa_counts"}  # no flag
    assert set(fields) <= set(options)
    for name, field in fields.items():
        assert field.description and options[name].help == field.description, name
        if not field.is_required():
            assert options[name].default == field.default, name
    assert (options["validation"].min, options["validation"].max) == (0.0, 0.9)
    assert (options["concurrency"].min, options["limit"].min) == (1, 1)


def test_generate_help_shows_the_field_descriptions() -> None:
    result = CliRunner().invoke(app, ["data", "generate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("concurrency", "relax", "mllm"):
        assert GenerateConfig.model_fields[name].description in result.output
    assert "--no-relax" in result.output


def test_a_value_out_of_the_config_bounds_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["data", "generate", "--images", ".", "--out", "o", "--validation", "0.95"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "--validation" in result.output and "0.9" in result.output
