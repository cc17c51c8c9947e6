"""``icm moderate --engine ray`` as a user runs it, in its own process, starting Ray itself: Ray's
start-up and execution lines stay out of the way unless ``--verbose`` asks for them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import sample_image

ICM = [sys.executable, "-c", "from icm.cli.app import main; main()"]
# a line Ray's Python loggers write: "2026-12-02 13:56:25,774<TAB>INFO worker.py:2038 -- ..."
RAY_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+\s+(DEBUG|INFO|WARNING) \S+\.py:\d+ -- ", re.MULTILINE)


def _run(folder: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ICM, "moderate", str(folder), "--engine", "ray", "--out", str(out), "-q", *flags],
                          capture_output=True, text=True, timeout=600, check=False)


def test_ray_is_quiet_unless_asked(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    sample_image("coffee").resize((160, 120)).save(folder / "coffee.jpg")
    sample_image("chelsea").resize((160, 120)).save(folder / "cat.png")

    quiet = _run(folder, tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert not RAY_LINE.findall(quiet.stderr), quiet.stderr
    assert "Started a local Ray instance" not in quiet.stderr and "Execution plan" not in quiet.stderr

    verbose = _run(folder, tmp_path / "verbose", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "Started a local Ray instance" in verbose.stderr and RAY_LINE.findall(verbose.stderr)
