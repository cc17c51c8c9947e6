"""The store on its own: migrations up and down, retention (purge) with the kept images, settings
from the environment, and a CLI that does not import the service until it is asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from serve.live import data_url, png_bytes
from sqlalchemy import inspect, update

from icm.serve.settings import ServeSettings
from icm.serve.store import Store, migrate
from icm.serve.store.images import DatabaseImages, DiskImages
from icm.serve.store.models import StoredResult, utcnow


def test_migrations_create_and_drop_the_schema(db_url) -> None:
    from alembic import command

    from icm.serve.store.migrate import alembic_config

    migrate(db_url)
    store = Store(db_url)
    try:
        assert {"api_keys", "policy_versions", "results", "images"} <= set(inspect(store.engine).get_table_names())
        command.downgrade(alembic_config(db_url), "base")
        assert not {"api_keys", "policy_versions", "results"} & set(inspect(store.engine).get_table_names())
        migrate(db_url)
        migrate(db_url)  # a second upgrade is a no-op
    finally:
        store.close()


@pytest.mark.parametrize("keep", ["disk", "database"])
def test_purge_deletes_old_results_and_their_images(serve, db_url, tmp_path: Path, keep: str) -> None:
    server = serve(db_url, keep_images=keep)
    with server.client("moderate") as client:
        results = [client.post("/v1/moderate", json={"image": data_url(png_bytes(50 + i)), "policy": "general"}).json()
                   for i in range(2)]
    store = Store(db_url)
    images = tmp_path / "images"
    kept_images = DiskImages(images) if keep == "disk" else DatabaseImages(store)
    assert all(r["decision"] != "allow" for r in results)  # the local engine is uncertain on some rules
    assert [kept_images.get(r["sha256"]) for r in results] == [png_bytes(50), png_bytes(51)]
    assert images.exists() is (keep == "disk")
    with store.engine.begin() as connection:  # the first result is 40 days old
        connection.execute(update(StoredResult).where(StoredResult.id == results[0]["id"])
                           .values(created_at=utcnow() - timedelta(days=40)))
    done = subprocess.run(
        [sys.executable, "-c", "from icm.cli.app import main; main()", "serve", "purge", "--older-than", "30",
         "--db", db_url, "--image-dir", str(images)],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "ICM_KEEP_IMAGES": keep},
    )
    assert done.returncode == 0, done.stderr
    assert "deleted 1 results and 1 images" in done.stdout
    assert store.result(results[0]["id"]) is None and store.result(results[1]["id"]) is not None
    assert kept_images.get(results[0]["sha256"]) is None and kept_images.get(results[1]["sha256"]) is not None
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


class _Cluster:
    """A PostgreSQL server of the test's own (initdb + pg_ctl as the postgres user), to stop and
    start under a running service."""

    def __init__(self) -> None:
        import glob
        import shutil
        import socket
        import tempfile

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins or shutil.which("runuser") is None or os.geteuid() != 0:
            pytest.skip("needs PostgreSQL's server programs and root (to run them as the postgres user)")
        self.bin = Path(bins[-1])
        # outside pytest's folders, which only root may enter
        self.data = Path(tempfile.mkdtemp(prefix="icm-test-pg-"))
        shutil.chown(self.data, "postgres", "postgres")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, program: str, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / program), *args],
                       check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.data / "server.log"),
                 "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")


@pytest.fixture
def cluster() -> Iterator[_Cluster]:
    import shutil

    server = _Cluster()
    try:
        server.start()
        yield server
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(server.bin / "pg_ctl"), "-D", str(server.data),
                        "-m", "immediate", "stop"], capture_output=True, timeout=120, check=False)
        shutil.rmtree(server.data, ignore_errors=True)


def test_a_store_that_cannot_be_reached_answers_503_and_the_service_recovers(serve, cluster) -> None:
    import time

    server = serve(cluster.url, retry_after=7)
    image = {"image": data_url(png_bytes(60)), "policy": "fast"}
    with server.client("moderate") as client, server.client("review") as reviewer:
        first = client.post("/v1/moderate", json=image)
        assert first.status_code == 200, first.text
        cluster.stop()
        for answer in (client.post("/v1/moderate", json={**image, "fresh": True}),
                       client.get(f"/v1/results/{first.json()['id']}"), reviewer.get("/v1/results")):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "store_unavailable"
            assert answer.headers["retry-after"] == "7"
            assert "postgres" not in answer.text  # where the store is stays the operator's
        assert client.get("/readyz").status_code == 503
        cluster.start()
        deadline = time.monotonic() + 60
        while (again := client.get(f"/v1/results/{first.json()['id']}")).status_code != 200:
            assert time.monotonic() < deadline, again.text
            time.sleep(0.2)
        assert again.json() == first.json()
        assert client.post("/v1/moderate", json=image).status_code == 200


def _banked_result(result_id: str, matches: dict[str, str | None]) -> dict[str, object]:
    """A stored result's row whose rules ``matches`` maps to the bank that decided them (None: the
    model judged that rule)."""
    from icm.results import KNOWN_CONTENT, ModerationResult

    verdicts = [{"rule_id": rule, "verdict": "violates" if bank else "complies", "probability": 0.9,
                 "evidence": [{"criterion": KNOWN_CONTENT, "signal": f"hash:{bank}", "text": "c1", "distance": 3}]
                 if bank else []} for rule, bank in matches.items()]
    result = ModerationResult.model_validate({
        "image": "x.png", "policy": {"id": "p", "version": 1}, "decision": "block", "backend": {"name": "local"},
        "verdicts": verdicts})
    return {"id": result_id, "created_at": utcnow() - timedelta(days=40), "policy_id": "p", "policy_version": 1,
            "rules": "", "backend": "local", "endpoint": "moderate", "decision": "block", "image_kept": False,
            "result": result.model_dump(mode="json")}


def test_bank_matches_are_counted_from_their_own_table_from_results_stored_before_it(db_url) -> None:
    """Migration 0006 reads the results stored before it once; from then on the counts come from
    the matches recorded with each result, and a purged result's matches go with it."""
    from icm.serve.store.bank_review import BankDecided, bank_decided

    migrate(db_url, "0005")
    store = Store(db_url)
    try:
        with store.engine.begin() as connection:
            connection.execute(StoredResult.__table__.insert(), [
                _banked_result("res_decided", {"nsfw": "BAD_A"}),  # every verdict from a bank
                _banked_result("res_partly", {"nsfw": "BAD_B", "spam": None}),  # one rule judged by the model
                _banked_result("res_both", {"nsfw": "BAD_A", "spam": "BAD_B"}),
                _banked_result("res_model", {"nsfw": None}),
            ])
        migrate(db_url)
        assert bank_decided(store) == BankDecided(2, {"BAD_A": 2, "BAD_B": 2})
        with store.engine.begin() as connection:  # res_model and res_both are young: not purged
            connection.execute(update(StoredResult).where(StoredResult.id.in_(["res_model", "res_both"]))
                               .values(created_at=utcnow()))
        assert store.purge(utcnow() - timedelta(days=30))[0] == 2
        assert bank_decided(store) == BankDecided(1, {"BAD_A": 1, "BAD_B": 1})
    finally:
        store.close()
