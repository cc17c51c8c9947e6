"""The service's fixtures (a live server on a migrated store, the store's URLs) for the tests of
the commands that work on it: ``icm serve users ...``, ``icm review ...``."""

from serve.conftest import db_url, local_backend, serve, sqlite_url  # noqa: F401
