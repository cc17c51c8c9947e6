"""Every command that reads the service's store finds it by one rule: --db, else ICM_DB, else
sqlite:///icm-serve.db (the store `icm serve` opens by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from icm.cli.app import app
from icm.cli.store import DB_HELP

runner = CliRunner()
PASSWORD = "correct horse battery\n"


def _with_db(command: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    found = {" ".join(path): p for p in command.params if p.name == "db"}
    for name, sub in getattr(command, "commands", {}).items():
        found.update(_with_db(sub, (*path, name)))
    return found


def test_every_db_option_is_the_same_option() -> None:
    options = _with_db(typer.main.get_command(app))
    assert set(options) >= {"serve", "serve migrate", "serve keys create", "serve keys list", "serve keys revoke",
                            "serve purge", "serve users create", "serve users password", "serve users list",
                            "review export", "policy replay"}
    for name, option in options.items():
        assert (option.opts, option.required, option.default, option.help) == (["--db"], False, None, DB_HELP), name


@pytest.mark.parametrize("from_env", [True, False], ids=["ICM_DB", "default"])
def test_review_and_replay_read_the_store_the_serve_commands_wrote(
    from_env: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ICM_DB", raising=False)
    env = {"ICM_DB": f"sqlite:///{tmp_path / 'elsewhere.db'}"} if from_env else {}
    made = runner.invoke(app, ["serve", "users", "create", "alice", "--password-stdin"], input=PASSWORD, env=env)
    assert made.exit_code == 0, made.output
    store = tmp_path / ("elsewhere.db" if from_env else "icm-serve.db")
    assert store.is_file() and [p.name for p in tmp_path.iterdir()] == [store.name]
    listed = runner.invoke(app, ["serve", "users", "list"], env=env)
    assert "alice" in listed.output

    exported = runner.invoke(app, ["review", "export", "--out", "reviewed"], env=env)
    assert exported.exit_code == 0, exported.output
    assert "wrote 0 labels of 0 images" in exported.output
    replayed = runner.invoke(app, ["policy", "replay", "--policy", "general", "--json"], env=env)
    assert replayed.exit_code == 0, replayed.output
    assert '"judged": 0' in replayed.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([store.name, "reviewed"])  # no second store


def test_a_flag_wins_over_icm_db(tmp_path: Path) -> None:
    given = f"sqlite:///{tmp_path / 'given.db'}"
    made = runner.invoke(app, ["serve", "users", "create", "alice", "--password-stdin", "--db", given],
                         input=PASSWORD, env={"ICM_DB": f"sqlite:///{tmp_path / 'env.db'}"})
    assert made.exit_code == 0, made.output
    assert (tmp_path / "given.db").is_file() and not (tmp_path / "env.db").exists()
