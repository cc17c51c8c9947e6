"""Two runs on one output: the second is refused with exit status 2 and told who is writing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import render_text, sample_image
from typer.testing import CliRunner

from icm.cli.app import app

CODE = "from icm.cli.app import main; main()"
HOLD = """
import sys
from icm.lock import output_lock
with output_lock(sys.argv[1]):
    print("holding", flush=True)
    sys.stdin.read()
"""


def test_a_second_moderate_run_on_the_same_out_exits_2(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):
        (sample_image("coffee") if i % 2 else render_text(f"call 0161 496 {1000 + i}")).save(
            images / f"{i:02d}.png")
    paths = sorted(str(p) for p in images.iterdir())
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-c", CODE, "moderate", "-p", "general", "-o", str(out), "-q", "--resume", "-w", "1"]
    # The first run reads its paths from stdin, so it stays in the middle of its run until told
    # (one worker: it looks 4 images ahead).
    first = subprocess.Popen([*command, "-f", "jsonl", "-"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert first.stdin is not None and first.stdout is not None
    first.stdin.write("\n".join(paths[:4]) + "\n")  # the first result comes once 4 are queued
    first.stdin.flush()
    assert json.loads(first.stdout.readline())["image"] == paths[0]  # it is writing --out

    second = subprocess.run([*command, str(images)], capture_output=True, text=True, timeout=300)
    assert second.returncode == 2, second.stderr
    assert f"is being written by another run (process {first.pid} on " in second.stderr
    assert "Traceback" not in second.stderr

    _, stderr = first.communicate("\n".join(paths[4:]) + "\n", timeout=300)  # and end of input
    assert first.returncode == 0, stderr
    again = subprocess.run([*command, str(images)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["image"] for r in rows) == paths  # one line per image, none judged twice


def test_data_generate_on_an_output_folder_in_use_exits_2(tmp_path: Path) -> None:
    (tmp_path / "labelled" / "upper_normal").mkdir(parents=True)
    sample_image("coffee").save(tmp_path / "labelled" / "upper_normal" / "coffee.jpg")
    out = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    try:
        result = CliRunner().invoke(app, ["data", "generate", "--images", str(tmp_path / "labelled"),
                                          "--out", str(out), "--resume", "--limit", "1"])
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert result.exit_code == 2, result.output
    assert f"is being written by another run (process {holder.pid} on " in result.stderr
    assert not (out / "train.jsonl").exists()  # nothing was written under the other run
