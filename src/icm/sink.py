"""The JSONL result file: one writer, never overwritten by accident, appended one flushed line
per image, and read back for --resume."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from icm.errors import InputError
from icm.lock import output_lock
from icm.media import file_stamp
from icm.results import ErrorInfo, ModerationResult, PolicyRef
from icm.sources import ImageItem


class OutputExistsError(InputError):
    """The results file already holds results, and neither resume nor overwrite was asked for."""


def check_output(
    path: Path | None, *, resume: bool, overwrite: bool, retry_errors: bool = False
) -> None:
    """The one rule for where results go, for the CLI and the Python API alike: a file that
    already holds results is continued (``resume``) or replaced (``overwrite``), never silently
    truncated; an empty or absent file is simply written."""
    if retry_errors and not resume:
        raise InputError("--retry-errors judges again the errors in the --out file; add --resume")
    if resume and overwrite:
        raise InputError("--resume continues the --out file and --overwrite replaces it: choose one")
    if path is None:
        if resume:
            raise InputError("--resume continues an --out file; add --out FILE.")
        return
    if not (resume or overwrite) and path.is_file() and path.stat().st_size > 0:
        raise OutputExistsError(
            f"{path} exists and holds results; add --resume to continue it or --overwrite to "
            "replace it (resume=True or overwrite=True from Python)"
        )


class ResultSink:
    """Appends ModerationResults to a JSONL file, one flushed line each, and holds the file's
    one-writer lock (:mod:`icm.lock`) until it is closed.

    With ``resume``, ``previous`` holds what the file already says under ``policy`` (read under
    the lock, before anything is written). A run killed mid-write leaves at most one partial last
    line; resuming cuts it off, so the file stays valid JSONL.
    """

    def __init__(
        self, path: Path, policy: PolicyRef, *, resume: bool = False, overwrite: bool = False
    ) -> None:
        self.path = path
        self._stack = ExitStack()
        try:
            self._stack.enter_context(output_lock(path))
            check_output(path, resume=resume, overwrite=overwrite)  # again, now that no one else writes
            self.previous = (read_previous(path, policy.id, policy.version) if resume
                             else PreviousResults())
            if resume and path.exists():
                _drop_partial_last_line(path)
            handle = path.open("a" if resume else "w", encoding="utf-8")
        except BaseException:
            self._stack.close()
            raise
        self._handle = self._stack.enter_context(handle)

    def write(self, result: ModerationResult) -> None:
        self._handle.write(result.to_json() + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._stack.close()  # the file first, then the lock

    def __enter__(self) -> ResultSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ResultFileError(InputError):
    """The file to resume is not a results file (another JSONL, a labels file ...)."""


@dataclass
class PreviousResults:
    """What earlier runs wrote for one policy version: the images judged, and the latest error of
    each image never judged. A later line for an image replaces an earlier one."""

    judged: set[str] = field(default_factory=set)
    errors: dict[str, ErrorInfo] = field(default_factory=dict)

    def standing_error(self, item: ImageItem) -> ErrorInfo | None:
        """The recorded error of an image that would fail the same way again: its file failed to
        decode (a permanent error) and has the same size and modification time now as then.
        Every other error (a timeout, a backend failure, a missing file, a file that changed, a
        line written before errors recorded the file) is worth another try."""
        error = self.errors.get(item.key)
        if error is None or not error.code.permanent or error.file is None:
            return None
        if item.data is not None or item.path is None:
            return None
        return error if file_stamp(item.path) == error.file else None

    def repeats(self, result: ModerationResult) -> bool:
        """A retry that failed exactly as the file already says: another line would only be a
        duplicate."""
        return result.error is not None and self.errors.get(result.image) == result.error


def read_previous(path: Path, policy_id: str, policy_version: int) -> PreviousResults:
    """The results already in ``path`` under this policy version (nothing if it does not exist).

    A complete line that is not a result means the file is not ours: resuming would append to
    someone else's file, so that is an error. Only a partial last line (a killed run) is skipped.
    """
    previous = PreviousResults()
    if not path.exists():
        return previous
    with path.open(encoding="utf-8", errors="replace") as handle:
        add_previous_lines(previous, handle, str(path), policy_id, policy_version)
    return previous


def add_previous_lines(
    previous: PreviousResults, lines: Iterable[str], where: str, policy_id: str, policy_version: int
) -> None:
    """Add the results in ``lines`` (one file's, in order; ``where`` names it in errors) under this
    policy version to ``previous``; see :func:`read_previous`."""
    for number, line in enumerate(lines, start=1):
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
                f"{where}:{number}: not a moderation result; --resume continues a file "
                "written by --out"
            )
        policy = row.get("policy") or {}
        image = row.get("image")
        if not (policy.get("id") == policy_id and policy.get("version") == policy_version
                and isinstance(image, str)):
            continue
        error = row.get("error")
        if error is None:
            previous.judged.add(image)
            previous.errors.pop(image, None)
        elif image not in previous.judged:
            try:
                previous.errors[image] = ErrorInfo.model_validate(error)
            except ValueError:  # an error this version cannot read: retry the image
                previous.errors.pop(image, None)


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
