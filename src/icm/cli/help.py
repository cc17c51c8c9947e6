"""How ``--help`` reads: a flag as a flag, an argument by its name, text wrapped by the terminal.

typer 0.29's rich help prints a Python type beside every parameter: ``--resume <bool>`` reads as
if the flag took a value, and ``paths... <list[str]>`` is a type annotation, not a usage. Options
that take a value keep their placeholder (``--policy <str>``, ``--workers <int range>``, the
choices of an enum); one given once per value shows the type of one value. It also keeps the
docstring's own line breaks after the first paragraph, so a sentence broke where the source line
ended. The root command applies :func:`plain_help` to the whole command tree once, when typer
builds it, so every command (and every test through ``CliRunner``) reads the same.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption


class _Flag(TyperOption):
    """An option that takes no value: nothing beside its name."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class _Repeated(TyperOption):
    """An option given once per value (``--policy A --policy B``): the type of one value."""

    def display_type_rich(self, ctx: Any) -> str | None:
        shown = super().display_type_rich(ctx)
        return None if shown is None else re.sub(r"^<list\[(.*)\]>$", r"<\1>", shown)


class _Argument(TyperArgument):
    """A positional argument: its name (``paths...`` when it takes several) says what to give."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def unwrapped(help_text: str) -> str:
    """``help_text`` with the line breaks inside each paragraph made spaces, for the terminal to
    wrap; an indented line (an example command) and a ``\\b`` paragraph keep their lines."""
    text, cut, rest = inspect.cleandoc(help_text).partition("\f")
    paragraphs = []
    for paragraph in text.split("\n\n"):
        if not paragraph.startswith("\b"):
            paragraph = re.sub(r"\n(?=\S)", " ", paragraph)
        paragraphs.append(paragraph)
    return "\n\n".join(paragraphs) + cut + rest


def plain_help(command: Any) -> None:
    """Apply the above to ``command`` and to every sub-command."""
    from typer._click import Context

    if command.help:
        command.help = unwrapped(command.help)
    params = list(command.params)
    help_option = command.get_help_option(Context(command))  # made once and kept by the command
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if type(param) is TyperOption and param.is_flag:
            param.__class__ = _Flag
        elif type(param) is TyperOption and param.multiple:
            param.__class__ = _Repeated
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            plain_help(sub)
