"""A run interrupted with Ctrl-C (SIGINT) keeps every result it wrote; --resume finishes the rest."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import render_text

CODE = "from icm.cli.app import main; main()"


def test_interrupted_run_keeps_its_results_and_resume_finishes(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(30):
        render_text(f"call 0161 496 {1000 + i}").save(images / f"{i:02d}.png")
    out = tmp_path / "results.jsonl"
    args = [sys.executable, "-c", CODE, "moderate", str(images), "-p", "general", "-o", str(out), "-q"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "add --resume to go on" in stderr and "Traceback" not in stderr
    lines = out.read_text().splitlines()
    assert 3 <= len(lines) < 30
    assert all(json.loads(line)["error"] is None for line in lines)  # whole lines only

    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted({Path(r["image"]).name for r in rows}) == [f"{i:02d}.png" for i in range(30)]
    assert len(rows) == 30  # nothing judged twice
