"""Where results go: the rules of an output (:class:`OutputRules`: flags, refusing an output
that holds results, skip and retry on --resume), the same for both engines, and the JSONL result
file of a local run: one writer, appended one flushed line per image, read back for --resume."""

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
from icm.summary import RunSummary


class OutputExistsError(InputError):
    """The results file already holds results, and neither resume nor overwrite was asked for."""


class OutputRules:
    """The rules of a run's output, one set for the local engine and Ray: which flags go together,
    when an output that already holds results is refused, and with ``resume`` which images are
    skipped and which results are not written again.

    An output that holds results is continued (``resume``) or replaced (``overwrite``), never
    silently truncated; an empty or absent one is simply written. With ``resume``, images judged
    under the same policy version are skipped, and so are images whose file failed to decode and
    has not changed since (their error stands) unless ``retry_errors``; a retry that fails
    exactly as recorded is not written again.
    """

    def __init__(self, *, resume: bool = False, overwrite: bool = False, retry_errors: bool = False,
                 has_out: bool = True) -> None:
        if retry_errors and not resume:
            raise InputError("--retry-errors judges again the errors in the --out file; add --resume")
        if resume and overwrite:
            raise InputError("--resume continues the --out file and --overwrite replaces it: choose one")
        if resume and not has_out:
            raise InputError("--resume continues an --out file; add --out FILE.")
        self.resume = resume
        self.overwrite = overwrite
        self.retry_errors = retry_errors
        self.previous = PreviousResults()

    def refuse_existing(self, holding: str) -> None:
        """Raise :class:`OutputExistsError` for an output that holds results (``holding`` says
        which), unless this run continues or replaces it."""
        if not (self.resume or self.overwrite):
            raise OutputExistsError(
                f"{holding}; add --resume to continue it or --overwrite to replace it "
                "(resume=True or overwrite=True from Python)"
            )

    def load(self, files: Iterable[tuple[str, Iterable[str]]], policy: PolicyRef) -> None:
        """Read what the output already holds under ``policy`` (its files' lines, in order):
        with ``resume`` only; see :func:`read_previous`."""
        if not self.resume:
            return
        for where, lines in files:
            add_previous_lines(self.previous, lines, where, policy.id, policy.version)

    def skip(self, item: ImageItem, summary: RunSummary) -> bool:
        """Whether ``item`` is left alone (counted in ``summary``): judged already, or an error
        that would only repeat."""
        if item.key in self.previous.judged:
            summary.skipped += 1
            return True
        standing = None if self.retry_errors else self.previous.standing_error(item)
        if standing is not None:
            summary.unchanged_errors += 1
            summary.errors[standing.code.value] += 1
            return True
        return False

    def writes(self, result: ModerationResult) -> bool:
        """Whether ``result`` goes into the output (a repeat of a recorded error does not)."""
        return not self.previous.repeats(result)

    def retried(self, items: Iterable[ImageItem]) -> OutputRules:
        """These rules with only the recorded errors of ``items`` (the images judged again): what
        a worker needs to tell a repeat, without the whole history."""
        narrowed = OutputRules(resume=self.resume, retry_errors=self.retry_errors)
        keys = {item.key for item in items}
        narrowed.previous.errors = {k: v for k, v in self.previous.errors.items() if k in keys}
        return narrowed


class ResultSink:
    """Appends ModerationResults to a JSONL file, one flushed line each, and holds the file's
    one-writer lock (:mod:`icm.lock`) until it is closed.

    The file is looked at once, under the lock: one that holds results is refused unless the
    ``rules`` continue or replace it, and with ``resume`` the rules learn what it already says
    under ``policy`` (before anything is written). A run killed mid-write leaves at most one
    partial last line; resuming cuts it off, so the file stays valid JSONL.
    """

    def __init__(self, path: Path, policy: PolicyRef, rules: OutputRules | None = None, *,
                 resume: bool = False, overwrite: bool = False) -> None:
        """``resume`` and ``overwrite``: the rules, when no ``rules`` are given."""
        self.path = path
        rules = rules or OutputRules(resume=resume, overwrite=overwrite)
        self._stack = ExitStack()
        try:
            self._stack.enter_context(output_lock(path))
            if path.is_file() and path.stat().st_size > 0:
                rules.refuse_existing(f"{path} exists and holds results")
            if rules.resume and path.exists():
                with path.open(encoding="utf-8", errors="replace") as lines:
                    rules.load([(str(path), lines)], policy)
                _drop_partial_last_line(path)
            self.previous = rules.previous
            handle = path.open("a" if rules.resume else "w", encoding="utf-8")
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
