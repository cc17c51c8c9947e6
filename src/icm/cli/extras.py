"""A command whose optional packages are missing says, in one line, which extra installs them.

``pip install icm-assistant`` brings the core only; ``icm serve`` needs the ``serve`` extra,
``icm eval`` the ``eval`` extra. The imports a command makes lazily go through
:func:`needs_extra`, which turns the ImportError of a missing package into an :class:`IcmError`
(one line on stderr and exit status 2, as every IcmError the CLI reports).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from icm.errors import IcmError


class MissingExtraError(IcmError, RuntimeError):
    """A command's optional packages are not installed."""

    code = "missing_extra"


@contextmanager
def needs_extra(extra: str, command: str) -> Iterator[None]:
    """Imports of ``command`` that need ``extra``; a package they miss is one error line."""
    try:
        yield
    except ImportError as exc:
        package = (exc.name or "").partition(".")[0]
        if not package or package == "icm":  # icm's own module failing is a bug, not a missing extra
            raise
        raise MissingExtraError(
            f"{command} needs the {extra} extra ({package} is not installed): pip install 'icm-assistant[{extra}]'"
        ) from exc
