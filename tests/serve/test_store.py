"""The store on its own: migrations up and down, retention (purge) with the kept images, settings
from the environment, and a CLI that does not import the service until it is asked for."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from serve.live import data_url, png_bytes
from sqlalchemy import inspect, update

from icm.serve.settings import ServeSettings
from icm.serve.store import Store, migrate
from icm.serve.store.models import StoredResult, utcnow


def test_migrations_create_and_drop_the_schema(db_url) -> None:
    from alembic import command

    from icm.serve.store.migrate import alembic_config

    migrate(db_url)
    store = Store(db_url)
    try:
        assert {"api_keys", "policy_versions", "results"} <= set(inspect(store.engine).get_table_names())
        command.downgrade(alembic_config(db_url), "base")
        assert not {"api_keys", "policy_versions", "results"} & set(inspect(store.engine).get_table_names())
        migrate(db_url)
        migrate(db_url)  # a second upgrade is a no-op
    finally:
        store.close()


def test_purge_deletes_old_results_and_their_images(serve, db_url, tmp_path: Path) -> None:
    server = serve(db_url)
    with server.client("moderate") as client:
        results = [client.post("/v1/moderate", json={"image": data_url(png_bytes(50 + i)), "policy": "general"}).json()
                   for i in range(2)]
    images = tmp_path / "images"
    kept = [images / r["sha256"][:2] / r["sha256"] for r in results]
    assert all(r["decision"] != "allow" for r in results)  # the local engine is uncertain on some rules
    assert all(path.exists() for path in kept)
    store = Store(db_url)
    with store.engine.begin() as connection:  # the first result is 40 days old
        connection.execute(update(StoredResult).where(StoredResult.id == results[0]["id"])
                           .values(created_at=utcnow() - timedelta(days=40)))
    done = subprocess.run(
        [sys.executable, "-c", "from icm.cli.app import main; main()", "serve", "purge", "--older-than", "30",
         "--db", db_url, "--image-dir", str(images)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "deleted 1 results and 1 images" in done.stdout
    assert store.result(results[0]["id"]) is None and store.result(results[1]["id"]) is not None
    assert not kept[0].exists() and kept[1].exists()
    store.close()


def test_settings_come_from_icm_variables(monkeypatch) -> None:
    monkeypatch.setenv("ICM_DB", "postgresql+psycopg://u:p@db/icm")
    monkeypatch.setenv("ICM_POLICIES", '["icm-r1", "general"]')
    monkeypatch.setenv("ICM_WORKERS", "4")
    monkeypatch.setenv("ICM_RATE_LIMIT", "none")
    settings = ServeSettings()
    assert settings.db == "postgresql+psycopg://u:p@db/icm"
    assert settings.policies == ["icm-r1", "general"] and settings.workers == 4 and settings.rate_limit is None
    assert ServeSettings(workers=1).workers == 1  # flags win over the environment


def test_icm_help_does_not_import_the_service() -> None:
    code = ("import sys; from icm.cli.app import app; "
            "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
