"""Terminal output: data and user text reach rich as :class:`~rich.text.Text`, never as markup.

Rich reads ``[word]`` in a plain string as a style tag: a file name ``cat [draft].jpg``, a
reason ``[medium, block, p=1.00]`` or an install hint ``pip install 'icm-assistant[vllm]'`` would
lose its bracketed part, and a rule text with ``[/see FAQ]`` raises ``MarkupError``. The
renderers of :mod:`icm.cli` are pure functions that return rich renderables built with the
helpers here; styles are attached only to words of their own ("error:", "valid", a decision).
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text


def text(value: object, style: str = "") -> Text:
    """``value`` as plain text (never parsed as markup), in ``style``."""
    return value if isinstance(value, Text) else Text(str(value), style=style)


def labelled(label: str, style: str, message: object) -> Text:
    """A styled label, then the message verbatim: ``error: ...``, ``valid FILE: ...``."""
    return Text.assemble((label, style), " ", text(message))


def error(message: object) -> Text:
    """The one-line form of an error message: ``error:`` in red, then the message verbatim."""
    return labelled("error:", "red", message)


def table(*headers: object, title: object = None, **options: Any) -> Table:
    """A table whose title and headers are plain text (a run name or a path may hold brackets)."""
    grid = Table(title=None if title is None else text(title), **options)
    for header in headers:
        grid.add_column(text(header))
    return grid


def add_row(grid: Table, *cells: object) -> None:
    """Add a row; a cell that is not already :class:`Text` is shown as plain text."""
    grid.add_row(*(text(cell) for cell in cells))
