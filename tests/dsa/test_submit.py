"""``icm dsa submit`` against a stand-in for the DSA Transparency Database (the real one cannot run
here; ``standin.py`` applies its validation rules and answers in its 201, 422, duplicate-puid, 429
and 5xx shapes): every valid statement is sent exactly once across a run that fails half-way and
its rerun; a puid the database already holds counts as done; refused and invalid statements are
listed, never sent again or at all."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dsa.cases import result_of
from dsa.standin import serve_standin
from typer.testing import CliRunner

from icm.cli.app import app
from icm.dsa.report import period_bounds
from icm.policy import load_policy
from icm.serve.policies import PolicyCatalog
from icm.serve.store import Store, migrate
from icm.serve.store.models import DsaSubmission, StoredResult

runner = CliRunner()
TOKEN = "ICM_TEST_DSA_TOKEN"


def _store(tmp_path: Path, blocked: int, invalid: int = 0) -> tuple[str, list[str]]:
    """A service store with ``blocked`` block decisions (their ids, in order), an allow decision,
    and ``invalid`` block decisions whose request said an upload date the database refuses."""
    url = f"sqlite:///{tmp_path / 'icm-serve.db'}"
    migrate(url)
    store = Store(url)
    policy = load_policy("general")
    PolicyCatalog(store, "general").seed(["general"])
    start = datetime(2026, 11, 2, tzinfo=UTC)
    ids = []
    cases = [({"sexual-nudity"}, None)] * blocked + [(set(), None)] + [({"hate"}, {"uploaded": "1999-12-31"})] * invalid
    try:
        for n, (violated, facts) in enumerate(cases):
            result = result_of(policy, violated)
            row = StoredResult(
                id="res_" + uuid.uuid4().hex, created_at=start + timedelta(minutes=n), sha256=result.sha256,
                policy_id="general", policy_version=1, rules="", backend="local", endpoint="moderate",
                decision=result.decision.value, result=result.model_dump(mode="json"), dsa_facts=facts,
            )
            store.add_result(row)
            if violated and facts is None:
                ids.append(row.id)
    finally:
        store.close()
    return url, ids


def _submit(url: str, endpoint: str, *more: str) -> tuple[int, str]:
    result = runner.invoke(app, ["dsa", "submit", "--db", url, "--endpoint", endpoint, "--token", TOKEN,
                                 "--retries", "1", *more])
    return result.exit_code, result.output


def _recorded(url: str) -> dict[str, str]:
    store = Store(url)
    try:
        with store._session() as session:
            return {row.puid: row.outcome for row in session.query(DsaSubmission)}
    finally:
        store.close()


def test_every_valid_statement_is_sent_exactly_once_across_a_resumed_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(TOKEN, "test-token")
    url, ids = _store(tmp_path, blocked=250, invalid=1)
    with serve_standin("test-token") as (db, endpoint):
        # the first batch goes in; the second meets a database that is down (503, and 503 on retry)
        db.script = [None, 503, 503]
        code, output = _submit(url, endpoint)
        assert code == 2, output
        assert "did not accept the batch after 2 tries" in output
        assert len(db.stored) == 100 and len(_recorded(url)) == 100

        # the rerun sends only the rest; a 429 on the way is waited out (its Retry-After)
        db.script = [429]
        code, output = _submit(url, endpoint)
        assert code == 1, output  # 1: the invalid statement, listed, not sent
        assert "150 statements accepted in 2 calls" in output and "100 recorded by an earlier run" in output
        assert [status for status, _ in db.calls] == [201, 503, 503, 429, 201, 201]
        assert "not sent, fails validation" in output and "content_date: 1999-12-31 is before 2000-01-01" in output

        created = Counter(p for status, puids in db.calls if status == 201 for p in puids)
        assert set(created) == set(ids) and set(created.values()) == {1}  # each exactly once
        assert set(db.stored) == set(ids)
        assert all(len(puids) <= 100 for _, puids in db.calls)
        assert set(_recorded(url)) == set(ids)

        # a third run has nothing left to send
        calls = len(db.calls)
        code, output = _submit(url, endpoint)
        assert "0 statements accepted in 0 calls" in output and "250 recorded by an earlier run" in output
        assert len(db.calls) == calls


def test_a_puid_the_database_already_holds_counts_as_done(tmp_path: Path, monkeypatch) -> None:
    """As after a run that stopped between the database's 201 and recording it."""
    monkeypatch.setenv(TOKEN, "test-token")
    url, ids = _store(tmp_path, blocked=5)
    with serve_standin("test-token") as (db, endpoint):
        for puid in ids[:2]:
            db.stored[puid] = {"puid": puid}
        code, output = _submit(url, endpoint)
        assert code == 0, output
        assert "3 statements accepted in 2 calls, 2 already in the database" in output
        assert db.calls[0][0] == 422 and db.calls[1] == (201, ids[2:])
    assert _recorded(url) == {**dict.fromkeys(ids[:2], "existing"), **dict.fromkeys(ids[2:], "created")}


def test_a_refused_statement_is_listed_and_the_rest_of_its_batch_is_sent(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(TOKEN, "test-token")
    url, ids = _store(tmp_path, blocked=4)
    with serve_standin("test-token") as (db, endpoint):
        db.refuse = {ids[1]}
        code, output = _submit(url, endpoint)
        assert code == 1
        assert f"refused by the database: {ids[1]}" in output
        assert set(db.stored) == set(ids) - {ids[1]}
    assert set(_recorded(url)) == set(ids) - {ids[1]}  # a rerun tries the refused one again


def test_a_bad_or_missing_token(tmp_path: Path, monkeypatch) -> None:
    url, _ = _store(tmp_path, blocked=1)
    with serve_standin("test-token") as (db, endpoint):
        monkeypatch.delenv(TOKEN, raising=False)
        code, output = _submit(url, endpoint)
        assert code == 2 and f"{TOKEN} is not set" in output
        monkeypatch.setenv(TOKEN, "wrong")
        code, output = _submit(url, endpoint)
        assert code == 2 and "answered 401" in output
        assert not db.stored


@pytest.mark.parametrize(("period", "start", "end"), [
    ("2026-H2", "2026-07-01", "2027-01-01"), ("2026-H1", "2026-01-01", "2026-07-01"),
    ("2026-Q4", "2026-10-01", "2027-01-01"), ("2026-02", "2026-02-01", "2026-03-01"),
    ("2026", "2026-01-01", "2027-01-01"),
])
def test_report_periods(period: str, start: str, end: str) -> None:
    first, last = period_bounds(period)
    assert (first.date().isoformat(), last.date().isoformat()) == (start, end)
