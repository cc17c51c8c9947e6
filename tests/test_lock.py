"""One writer per output: the lock is held across processes, names its holder, and dies with it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from icm.errors import InputError
from icm.lock import OutputLockedError, lock_path, output_lock

HOLD = """
import sys, time
from icm.lock import output_lock
with output_lock(sys.argv[1]):
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes stdin, or kills the process
"""


def _holder(target: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "holding\n"
    return process


def test_a_second_process_is_refused_and_told_who_holds_the_output(tmp_path: Path) -> None:
    target = tmp_path / "results.jsonl"
    holder = _holder(target)
    try:
        with pytest.raises(OutputLockedError) as refused, output_lock(target):
            pass
        message = str(refused.value)
        assert f"process {holder.pid} on {socket.gethostname()}" in message
        assert str(target) in message and "wait for it to finish or stop it" in message
        assert refused.value.holder["pid"] == holder.pid
        assert isinstance(refused.value, InputError) and refused.value.exit_code == 2
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    assert not lock_path(target).exists()  # a run that ends removes its lock file
    with output_lock(target) as path:  # and the output is free again
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_killed_holder_does_not_block_the_next_run(tmp_path: Path) -> None:
    target = tmp_path / "dataset"
    holder = _holder(target)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    stale = json.loads(lock_path(target).read_text())
    assert stale["pid"] == holder.pid  # the killed run could not clean up after itself ...
    with output_lock(target) as path:  # ... but the kernel released its lock
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(OutputLockedError, match=f"process {os.getpid()}"), output_lock(target):
            pass  # a second writer inside one process is refused too


def test_every_name_of_one_output_shares_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "out")
    with output_lock(Path("results.jsonl")), pytest.raises(OutputLockedError):
        with output_lock(tmp_path / "out" / ".." / "out" / "results.jsonl"):
            pass
