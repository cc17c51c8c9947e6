"""DSA statements of reasons of stored results, against a live server: ``GET
/v1/results/{id}/statement`` for a block decision, the reasons there is none, a notice with its
own facts, an appeal that changes the decision (a new statement), ``icm dsa export`` and
``icm dsa report``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from dsa.standin import validate
from serve.live import FAST_POLICY, data_url, png_bytes
from typer.testing import CliRunner

from icm.cli.app import app
from icm.serve.store import Store
from icm.serve.store.reviews import QueueFilter, ReviewStore

runner = CliRunner()

# Every image violates `always` (a detector score >= 0): a stored block decision on demand.
ALWAYS = """\
id: always
version: 1
rules:
  - id: always
    text: Nothing may be shown.
    severity: high
    action: block
    dsa: {category: STATEMENT_CATEGORY_OTHER_VIOLATION_TC, keywords: [KEYWORD_NUDITY]}
    criteria:
      - id: any
        description: Any image at all.
        signals: ["opennsfw:nsfw>=0.0"]
"""


def _decide_appeal(db: str, action: str, labels: dict[str, str]) -> None:
    """A reviewer decides the open appeal, as the console's appeal page does."""
    store = Store(db)
    try:
        reviews = ReviewStore(store)
        user = reviews.add_user("ana", "reviewer", "not-a-login")
        [(item, _)] = reviews.open_items(QueueFilter(kind="appeal"))
        reviews.take(item.id, user.id, timedelta(minutes=5))
        reviews.decide(item.id, user.id, labels, action, "always", "Shown to adults only.", statement="changed")
    finally:
        store.close()


def test_a_block_decision_has_a_statement_the_database_accepts(serve, db_url, tmp_path: Path) -> None:
    policy = tmp_path / "always.yaml"
    policy.write_text(ALWAYS)
    server = serve(db_url, policies=[str(policy), str(FAST_POLICY)], dsa_territorial_scope=["EU"],
                   dsa_account_type="private")
    with server.client("moderate") as client:
        blocked = client.post("/v1/moderate", json={"image": data_url(png_bytes(1)), "policy": "always"}).json()
        assert blocked["decision"] == "block", blocked
        answer = client.get(f"/v1/results/{blocked['id']}/statement")
        assert answer.status_code == 200, answer.text
        statement = answer.json()
        assert validate(statement) == {}
        assert statement["puid"] == blocked["id"]
        assert statement["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]
        assert statement["category"] == "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"
        assert statement["category_specification"] == ["KEYWORD_NUDITY"]
        assert statement["automated_decision"] == "AUTOMATED_DECISION_FULLY"
        assert statement["source_type"] == "SOURCE_VOLUNTARY"
        assert statement["account_type"] == "ACCOUNT_TYPE_PRIVATE"
        assert len(statement["territorial_scope"]) == 27 and "NO" not in statement["territorial_scope"]

        allowed = client.post("/v1/moderate", json={"image": data_url(png_bytes(2)), "policy": "fast"}).json()
        assert allowed["decision"] == "allow"
        none = client.get(f"/v1/results/{allowed['id']}/statement")
        assert none.status_code == 404
        assert "allow" in none.json()["error"]["message"] and none.json()["error"]["code"] == "no_statement"
        assert client.get("/v1/results/res_nothing/statement").status_code == 404

        # a notice, with facts of its own: a stored row of its own (the judgement may be the cached
        # one), stated as a notice
        notice = client.post("/v1/moderate", json={
            "image": data_url(png_bytes(1)), "policy": "always", "source": "trusted_flagger",
            "dsa": {"territorial_scope": ["DE"], "uploaded": "2026-11-01", "source_identity": "Hotline e.V."},
        })
        assert notice.status_code == 200, notice.text
        assert notice.json()["id"] != blocked["id"] and notice.json()["decision"] == "block"
        flagged = client.get(f"/v1/results/{notice.json()['id']}/statement").json()
        assert flagged["source_type"] == "SOURCE_TRUSTED_FLAGGER"
        assert flagged["source_identity"] == "Hotline e.V."
        assert flagged["automated_detection"] == "No"
        assert flagged["territorial_scope"] == ["DE"] and flagged["content_date"] == "2026-11-01"
        bad = client.post("/v1/moderate", json={"image": data_url(png_bytes(1)), "policy": "always",
                                                "source": "a rumour"})
        assert bad.status_code == 400

        # the uploader appeals; a person changes block to age_gate: a new statement is in force
        appeal = client.post("/v1/appeals", json={"result_id": blocked["id"], "text": "It is art."})
        assert appeal.status_code == 201, appeal.text
    _decide_appeal(server.settings.db, "age_gate", {"always": "violates"})
    with server.client("moderate") as client:
        after = client.get(f"/v1/results/{blocked['id']}/statement").json()
    assert after["puid"] == appeal.json()["id"]
    assert after["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED"]
    assert after["automated_decision"] == "AUTOMATED_DECISION_PARTIALLY"
    assert "On appeal" in after["decision_facts"] and "from block to age_gate" in after["decision_facts"]
    assert validate(after) == {}

    out = tmp_path / "statements.jsonl"
    exported = runner.invoke(app, ["dsa", "export", "--db", server.settings.db, "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["puid"] for s in lines] == [blocked["id"], appeal.json()["id"], notice.json()["id"]]
    assert all(validate(s) == {} for s in lines)
    assert "wrote 3 statements" in exported.output
    later = runner.invoke(app, ["dsa", "export", "--db", server.settings.db, "--out", str(out),
                                "--since", "2038-01-01"])
    assert later.exit_code == 0 and out.read_text() == ""

    year = lines[0]["application_date"][:4]
    half = "H1" if int(lines[0]["application_date"][5:7]) <= 6 else "H2"
    reported = runner.invoke(app, ["dsa", "report", "--db", server.settings.db, "--period", f"{year}-{half}",
                                   "--out", str(tmp_path)])
    assert reported.exit_code == 0, reported.output
    counts = json.loads((tmp_path / f"dsa-report-{year}-{half}.json").read_text())
    assert counts["decisions"] == 3
    assert counts["by_category"] == {"STATEMENT_CATEGORY_OTHER_VIOLATION_TC": 3}
    assert counts["by_restriction"] == {"DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED": 1,
                                        "DECISION_VISIBILITY_CONTENT_REMOVED": 2}
    assert counts["by_automation"] == {"AUTOMATED_DECISION_FULLY": 2, "AUTOMATED_DECISION_PARTIALLY": 1}
    assert counts["own_initiative"] == 2 and counts["notices"] == 1
    assert counts["appeals"] == {"received": 1, "decided": 1, "overturned": 1}
    assert counts["median_hours_to_decision"] is not None
    assert "appeals: 1 received, 1 decided, 1 overturned" in reported.output
    table = (tmp_path / f"dsa-report-{year}-{half}.csv").read_text()
    assert "by_restriction,DECISION_VISIBILITY_CONTENT_REMOVED,2" in table


def test_a_person_deciding_a_notice_against_a_result_is_not_automated(serve, db_url, tmp_path: Path) -> None:
    policy = tmp_path / "always.yaml"
    policy.write_text(ALWAYS)
    server = serve(db_url, policies=[str(policy)])
    with server.client("moderate") as client:
        blocked = client.post("/v1/moderate", json={"image": data_url(png_bytes(3)), "policy": "always"}).json()
        first = client.get(f"/v1/results/{blocked['id']}/statement").json()
        assert first["source_type"] == "SOURCE_VOLUNTARY" and first["automated_detection"] == "Yes"
        bad = client.post("/v1/appeals", json={"result_id": blocked["id"], "text": "x", "source": "gossip"})
        assert bad.status_code == 400
        notice = client.post("/v1/appeals", json={"result_id": blocked["id"], "text": "Reported as illegal.",
                                                  "source": "trusted_flagger"})
        assert notice.status_code == 201, notice.text
    _decide_appeal(server.settings.db, "age_gate", {"always": "violates"})
    with server.client("moderate") as client:
        after = client.get(f"/v1/results/{blocked['id']}/statement").json()
    assert after["puid"] == notice.json()["id"]
    assert after["source_type"] == "SOURCE_TRUSTED_FLAGGER" and after["automated_detection"] == "No"
    assert after["automated_decision"] == "AUTOMATED_DECISION_NOT_AUTOMATED"
    assert after["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED"]
    assert validate(after) == {}
