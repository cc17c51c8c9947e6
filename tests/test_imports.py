"""`import icm` and `icm --help` stay light: heavy packages load only when the code that needs them
runs. One subprocess per check, so nothing another test imported counts."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Never imported by `import icm`, the library modules below, or any `--help`.
HEAVY = (
    "torch", "transformers", "trl", "peft", "datasets", "accelerate", "vllm", "ray", "onnxruntime", "cv2",
    "llama_cpp", "openai", "matplotlib", "sklearn", "scipy", "sentence_transformers", "rouge_score",
    "sacrebleu", "phonenumbers",
)
#: Not even these for `icm --help`: help text needs no image and no array.
HELP_ALSO = ("numpy", "PIL")

HELP = """
import sys
import typer
from typer.testing import CliRunner
from icm.cli.app import app

def commands(command, path):
    yield path
    for name, sub in getattr(command, "commands", {}).items():  # a group's sub-commands
        yield from commands(sub, [*path, name])

runner = CliRunner()
paths = list(commands(typer.main.get_command(app), []))
assert ["eval", "meq"] in paths and ["train"] in paths and ["data", "generate"] in paths
for path in paths:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, (path, result.output)
"""
LIBRARY = """
import sys
import icm, icm.cli.app, icm.cli.eval, icm.evaluate, icm.evaluate.verdicts, icm.evaluate.meq
import icm.evaluate.mqa, icm.evaluate.report, icm.train, icm.train.config, icm.policy, icm.sources
import icm.scale.ray, icm.datagen.pipeline
"""


@pytest.mark.parametrize(
    ("code", "forbidden"),
    [(HELP, HEAVY + HELP_ALSO), (LIBRARY, HEAVY)],
    ids=["every --help", "library modules"],
)
def test_imports_stay_light(code: str, forbidden: tuple[str, ...]) -> None:
    check = code + f"\nprint(sorted(m for m in {forbidden!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
