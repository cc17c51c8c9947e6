"""Every command's --help on an 80-column terminal: flags read as flags, arguments by their name,
and the text is wrapped by the terminal's width, never by line breaks of the source."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from icm.cli.app import app

runner = CliRunner()
WIDTH = 80


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.output


def _description(shown: str) -> list[str]:
    """The lines between the usage line and the first panel (the command's docstring)."""
    lines = shown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Usage:")) + 1
    end = next((i for i, line in enumerate(lines) if line.startswith("╭")), len(lines))
    return [line.rstrip() for line in lines[start:end]]


def hard_breaks(lines: list[str], width: int = WIDTH) -> list[str]:
    """Lines that end where the next line's first word would still have fitted: a line break of
    the source inside a sentence, not one of the terminal's width. An example command (a line
    that starts with ``icm``) must fit on its line, or end in a backslash, the shell's own break."""
    found = []
    for line, following in zip(lines, lines[1:], strict=False):
        if not line.strip() or not following.strip():
            continue
        if line.strip().startswith("icm ") and not line.endswith("\\"):
            if following.strip().startswith("icm "):  # the next command of a list
                continue
            found.append(f"{line.strip()!r} goes on: {following.strip()!r}")
        elif not line.endswith("\\") and len(line) + 1 + len(following.split()[0]) < width - 1:
            found.append(f"{line.strip()!r} | {following.strip()!r}")
    return found


def test_every_command_is_checked() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"", "moderate", "serve", "serve keys create", "serve users list", "review export",
            "policy replay", "eval run"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "icm")
def test_help_fits_80_columns_and_shows_flags_as_flags(path: tuple[str, ...]) -> None:
    shown = _help(path)
    assert max(len(line) for line in shown.splitlines()) <= WIDTH
    assert not re.search(r"<bool>|<list\[", shown), shown
    assert hard_breaks(_description(shown)) == []


def test_moderate_help_shows_its_flags_and_arguments_plainly() -> None:
    shown = _help(("moderate",))
    flags = {line.split()[1]: line.split()[2] for line in shown.splitlines()
             if re.match(r"│ --(resume|quiet|help)\b", line)}
    assert flags == {"--resume": "Continue", "--quiet": "-q", "--help": "Show"}  # the help right after the flag
    assert re.search(r"│ \*\s+paths\.\.\.\s+Image files", shown)
    assert re.search(r"--workers\s+-w\s+<int range>", shown)  # an option with a value keeps its placeholder
    assert "Exit status: 0 every image was judged; 1 some images could not be judged" in " ".join(shown.split())


def test_a_hard_break_is_found() -> None:
    assert hard_breaks([" Exit status: 0 every image was judged; 1 some images (each", " has an error"]) != []
    assert hard_breaks([" " + "word " * 15 + "the last words of a full line ok", " wrapped"]) == []
    assert hard_breaks(["       icm moderate examples/images --policy", " examples/policies/x.yaml"]) != []
