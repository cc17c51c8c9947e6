"""Reading JSON Lines files with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from icm.errors import IcmError, InputError


class JsonlError(InputError):
    """A file that cannot be read, or a line that is not a JSON object."""


def read_jsonl(
    path: str | Path, *, error: type[IcmError] = JsonlError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; the first bad line raises ``error``.

    ``error`` lets a reader of one kind of file (labels, predictions, a manifest) raise its own
    class with the same message, instead of catching and re-raising.
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        yield from iter_jsonl(handle, str(path), error=error)


def iter_jsonl(
    lines: Iterable[str], where: str, *, error: type[IcmError] = JsonlError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """:func:`read_jsonl` over lines already open (``where`` names them in errors)."""
    try:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{where}:{number}: not valid JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise error(f"{where}:{number}: expected a JSON object")
            yield number, row
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text: {exc.reason}") from exc
