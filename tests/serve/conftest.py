"""A real uvicorn server on a free loopback port, over SQLite and, where one is configured
(ICM_TEST_POSTGRES_URL; always in CI), a real PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve.live import LiveServer, settings_for

from icm.backends.base import Backend
from icm.serve.store import Store

POSTGRES_ENV = "ICM_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def local_backend() -> Iterator[Backend]:
    """The embedded CPU engine, loaded once and shared by every server of the session."""
    from icm.backends.local.engine import LocalBackend

    backend = LocalBackend()
    yield backend
    backend.close()


def _postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} is not set: CI runs the service's tests on PostgreSQL too")
        pytest.skip(f"no PostgreSQL configured: set {POSTGRES_ENV} (scripts/test.sh does)")
    return url


def _reset_postgres(url: str) -> None:
    """An empty database: drop every table an earlier test left, as the database itself lists them
    (a checkout with other migrations may have used the same database last; no hand-written DDL)."""
    from sqlalchemy import MetaData

    store = Store(url)
    try:
        store.ping()  # fails loudly when the configured server is unreachable
        tables = MetaData()
        tables.reflect(store.engine)
        tables.drop_all(store.engine)
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'icm-serve.db'}"
    url = _postgres_url()
    _reset_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'icm-serve.db'}"


@pytest.fixture
def serve(local_backend: Backend, tmp_path: Path) -> Iterator[Any]:
    """``serve(db_url, **settings)`` starts a live server; every one started is stopped at the end."""
    started: list[LiveServer] = []

    def start(db: str, **overrides: Any) -> LiveServer:
        server = LiveServer(settings_for(db, tmp_path, **overrides), backend=local_backend).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
