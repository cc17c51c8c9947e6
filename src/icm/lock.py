"""One writer per output: an exclusive lock that a run holds on its results file or dataset folder.

The lock is ``fcntl.flock`` on a sidecar file (``results.jsonl.lock`` beside ``results.jsonl``,
``data/r1.lock`` beside ``data/r1/``) that names its holder: process id, host, start time and
command. The kernel releases a flock when its process ends, however it ends, so a run that was
killed never blocks the next one; the next holder simply writes its own name over the old one.
A run that finishes removes the sidecar.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from icm.errors import InputError


class OutputLockedError(InputError):
    """Another run is writing the same output (results file or dataset folder)."""

    code = "output_locked"
    http_status = 409

    def __init__(self, target: Path, holder: dict[str, Any]) -> None:
        self.target = target
        #: what the other run wrote into the lock file: pid, host, started, command
        self.holder = holder
        super().__init__(f"{target} is being written by another run ({_describe(holder)}); "
                         "wait for it to finish or stop it, then start again")


def lock_path(target: Path) -> Path:
    """The sidecar lock file of a results file or a dataset folder."""
    return target.with_name(target.name + ".lock")


@contextmanager
def output_lock(target: str | Path) -> Iterator[Path]:
    """Hold the one-writer lock on ``target`` for the ``with`` block, or raise OutputLockedError
    at once (never wait: two runs on one output are a mistake to report, not to queue)."""
    target = Path(target)
    path = lock_path(target.resolve())  # one lock for every name of the same output
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(target, path)
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield path
    finally:
        # Remove the file before releasing the lock: a run that opened it meanwhile sees, once it
        # holds the lock, that the path no longer leads to its file, and starts over (_acquire).
        with suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _acquire(target: Path, path: Path) -> int:
    import fcntl  # POSIX; imported here so that `import icm` does not need it

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputLockedError(target, holder) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)  # the previous holder removed this file as we opened it: take the new one


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
        holder = json.loads(text)
    except (OSError, ValueError):
        return {}  # the holder has just taken the lock and not yet written its name
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "its process did not sign the lock file yet"
    text = f"process {holder['pid']} on {holder.get('host') or 'an unknown host'}"
    if holder.get("started"):
        text += f", started {holder['started']}"
    if holder.get("command"):
        text += f": {holder['command']}"
    return text
