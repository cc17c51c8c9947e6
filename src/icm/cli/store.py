"""The service's store as every command that reads it finds it: ``icm serve`` and its ``keys``,
``users``, ``migrate`` and ``purge``, ``icm review export`` and ``icm policy replay``.

One ``--db`` option (:data:`DB`), one rule: the flag, else ``ICM_DB``, else
``sqlite:///icm-serve.db``, the store ``icm serve`` itself opens by default. The rule is the
service's own settings (:class:`~icm.serve.settings.ServeSettings`), so the commands and the
service can never disagree on where the store is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from icm.cli.extras import needs_extra
from icm.errors import IcmError, InputError
from icm.validation import describe_validation_error

if TYPE_CHECKING:
    from icm.serve.settings import ServeSettings
    from icm.serve.store import Store

DB_HELP = "SQLAlchemy URL of the service's store (default: ICM_DB, else sqlite:///icm-serve.db)."
#: the --db option of every command that reads the service's store
DB: Any = typer.Option(None, "--db", help=DB_HELP, show_default=False)


class StoreFailed(IcmError):
    """The store could not be opened or used (an unreachable or unwritable database)."""


def settings(**flags: Any) -> ServeSettings:
    """The service's settings: the flags given (None: not given), else ICM_*, else the defaults.
    A bad value is an InputError (one error line and exit status 2, from the root command)."""
    from pydantic import ValidationError

    with needs_extra("serve", "reading the service's store"):
        from icm.serve.settings import ServeSettings

    try:
        return ServeSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc)) from None


def database_url(db: str | None) -> str:
    """Where the store is: ``db`` when given, else ICM_DB, else sqlite:///icm-serve.db."""
    return settings(db=db).db


@contextmanager
def failures() -> Iterator[None]:
    """Work on the store: an exception that is no IcmError (a database that refused, a file that
    cannot be written) becomes StoreFailed, which the root command words in one line (exit 2)."""
    try:
        yield
    except IcmError:
        raise
    except Exception as exc:
        raise StoreFailed(str(exc) or type(exc).__name__) from exc


def open_store(db: str | None) -> Store:
    """The store, its schema brought up to date first unless ICM_MIGRATE_ON_START=false."""
    with needs_extra("serve", "reading the service's store"):
        from icm.serve.store import Store, migrate

    resolved = settings(db=db)
    with failures():
        if resolved.migrate_on_start:
            migrate(resolved.db)
        return Store(resolved.db)


@contextmanager
def opened(db: str | None) -> Iterator[Store]:
    """The store for one command, closed after it; a failure inside is one error line."""
    store = open_store(db)
    try:
        with failures():
            yield store
    finally:
        store.close()
