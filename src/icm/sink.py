"""The JSONL result file: append one line per image, flushed, and read back for --resume."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from icm.errors import InputError
from icm.results import ModerationResult


class ResultSink:
    """Appends ModerationResults to a JSONL file, one flushed line each.

    A run killed mid-write leaves at most one partial last line; opening the file again cuts it
    off, so the file stays valid JSONL.
    """

    def __init__(self, path: Path, append: bool) -> None:
        self.path = path
        if append and path.exists():
            _drop_partial_last_line(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = path.open("a" if append else "w", encoding="utf-8")

    def write(self, result: ModerationResult) -> None:
        self._handle.write(result.to_json() + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ResultSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ResultFileError(InputError):
    """The file to resume is not a results file (another JSONL, a labels file ...)."""


def judged_keys(path: Path, policy_id: str, policy_version: int) -> set[str]:
    """Images already judged (without error) under this policy version, according to the file.

    A complete line that is not a result means the file is not ours: resuming would append to
    someone else's file, so that is an error. Only a partial last line (a killed run) is skipped.
    """
    done: set[str] = set()
    if not path.exists():
        return done
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not (isinstance(row, dict) and "image" in row and "policy" in row):
                if not line.endswith("\n"):
                    continue  # the partial last line of a killed run, cut off before appending
                raise ResultFileError(
                    f"{path}:{number}: not a moderation result; --resume continues a file "
                    "written by --out"
                )
            policy = row.get("policy") or {}
            if (
                row.get("error") is None
                and policy.get("id") == policy_id
                and policy.get("version") == policy_version
                and isinstance(row.get("image"), str)
            ):
                done.add(row["image"])
    return done


def _drop_partial_last_line(path: Path) -> None:
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        # Walk back to the previous newline and cut there.
        position = size - 1
        chunk = 4096
        while position > 0:
            start = max(0, position - chunk)
            handle.seek(start)
            block = handle.read(position - start)
            index = block.rfind(b"\n")
            if index >= 0:
                handle.truncate(start + index + 1)
                return
            position = start
        handle.truncate(0)
