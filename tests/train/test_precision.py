"""The training precision is checked against the machine before anything loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from icm.cli.app import app
from icm.train.precision import Accelerator, PrecisionError, resolve_precision

CPU = Accelerator(cuda=False, bf16=False)
OLD_GPU = Accelerator(cuda=True, bf16=False)  # a T4 or V100
AMPERE = Accelerator(cuda=True, bf16=True)


def test_auto_picks_bf16_only_where_the_gpu_has_it() -> None:
    assert resolve_precision("auto", AMPERE) == "bf16"
    assert resolve_precision("auto", OLD_GPU) == "fp32"
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", AMPERE) == "bf16"
    assert resolve_precision("fp16", OLD_GPU) == "fp16"


@pytest.mark.parametrize(
    ("precision", "machine", "message"),
    [
        ("bf16", CPU, "precision bf16 needs a GPU with bfloat16 and this machine has no GPU"),
        ("bf16", OLD_GPU, "no bfloat16 (it needs Ampere or newer); set precision: auto (fp32 here) or fp16"),
        ("fp16", CPU, "precision fp16 needs a CUDA GPU"),
    ],
)
def test_a_precision_the_machine_lacks_is_refused(precision: str, machine: Accelerator, message: str) -> None:
    with pytest.raises(PrecisionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_precision(precision, machine)


def test_the_papers_bf16_recipe_on_a_cpu_machine_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine's hardware is the boundary: this test stands for a machine without bf16
    # whether or not the one running it has a GPU.
    monkeypatch.setattr(Accelerator, "detect", classmethod(lambda cls: CPU))
    (tmp_path / "model").mkdir()
    (tmp_path / "data").mkdir()
    config = tmp_path / "recipe.yaml"
    config.write_text(f"model: {tmp_path / 'model'}\ndata: {tmp_path / 'data'}\noutput: {tmp_path / 'out'}\n"
                      "method: lora\nprecision: bf16\n")
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: precision bf16 needs a GPU with bfloat16"), lines
    assert not (tmp_path / "out").exists()
