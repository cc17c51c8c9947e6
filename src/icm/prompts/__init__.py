"""Versioned prompt templates: ``prompts/NAME.vN.jinja``, rendered with Jinja.

A template is named by its stem and version (``verdict.v1``); ``load_template("verdict")`` picks
the newest version. Backends record the template ids they used, so a result can be traced to the
exact wording that produced it.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

import jinja2

from icm.errors import IcmError

_FILE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[0-9]+)\.jinja$")


class PromptError(IcmError, LookupError):
    """A template that does not exist."""


@cache
def available() -> dict[str, list[int]]:
    """Template name -> its versions, oldest first (the package's files, listed once)."""
    found: dict[str, list[int]] = {}
    for entry in files(__name__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.setdefault(match["name"], []).append(int(match["version"]))
    return {name: sorted(versions) for name, versions in sorted(found.items())}


def template_id(name: str, version: int | None = None) -> str:
    """``verdict`` -> ``verdict.v1`` (the newest version unless one is given)."""
    versions = available().get(name)
    if not versions:
        raise PromptError(f"no prompt template {name!r}; known: {', '.join(available())}")
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise PromptError(f"prompt template {name!r} has versions {versions}, not {version}")
    return f"{name}.v{version}"


@cache
def _environment() -> jinja2.Environment:
    # StrictUndefined: a missing variable is a bug in the caller, never an empty string in a prompt.
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_source),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


def _source(template: str) -> str:
    return files(__name__).joinpath(f"{template}.jinja").read_text(encoding="utf-8")


def load_template(name: str, version: int | None = None) -> jinja2.Template:
    return _environment().get_template(template_id(name, version))


def render(name: str, version: int | None = None, **context: Any) -> str:
    """Render a template; surrounding whitespace is stripped."""
    return load_template(name, version).render(**context).strip()
