"""The loop from the review console to the known-content banks, over HTTP against a live server on
SQLite and PostgreSQL: a reviewer's violates adds the item to a deny bank of the rule (hashed from
its kept image, audited with the decision), its copies are then decided by the bank and never
queued (counted on the queue page, /review/stats and Prometheus), and an appeal that overturns the
decision removes the entry, audited (and undoing that decision puts it back)."""

from __future__ import annotations

import io
import re
from typing import Any

import httpx2
from helpers import sample_image
from PIL import Image
from serve.live import FAST_POLICY, LiveServer
from sqlalchemy import select

from icm.results import ModerationResult
from icm.serve.review.accounts import create_user
from icm.serve.review.banking import chosen_banks, offers
from icm.serve.store import Store
from icm.serve.store.banks import SqlBanks
from icm.serve.store.models import QueueItem
from icm.serve.store.reviews import ReviewStore

PASSWORD = "correct horse battery"


def _image(factor: float = 1.0, fmt: str = "PNG", quality: int = 80) -> bytes:
    image = sample_image("astronaut").convert("RGB")
    if factor != 1.0:
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def _log_in(server: LiveServer, username: str) -> tuple[httpx2.Client, str]:
    client = httpx2.Client(base_url=server.url, timeout=60, follow_redirects=False)
    form = client.get("/review/login")
    answer = client.post("/review/login", data={"csrf": _csrf(form.text), "username": username,
                                                 "password": PASSWORD, "next": "/review"})
    assert answer.status_code == 303, answer.text
    return client, _csrf(client.get("/review").text)


def _take(client: httpx2.Client, csrf: str, kind: str | None = None) -> int:
    taken = client.post("/review/next", data={"csrf": csrf, **({"kind": kind} if kind else {})})
    assert taken.status_code == 303, taken.text
    return int(taken.headers["location"].split("/items/")[1].split("?")[0])


class _Opened:
    def __init__(self, server: LiveServer) -> None:
        self.store = Store(server.settings.db)

    def __enter__(self) -> Store:
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def _entries(server: LiveServer, bank: str) -> list[Any]:
    with _Opened(server) as store:
        return SqlBanks(store).get(bank).entries()


def _audit(server: LiveServer, action: str) -> list[Any]:
    with _Opened(server) as store:
        return [e for e in ReviewStore(store).audit_entries(limit=None, newest_first=False) if e.action == action]


def _queued(server: LiveServer) -> set[str]:
    with _Opened(server) as store, store._session() as session:
        return set(session.scalars(select(QueueItem.result_id)))


def test_a_reviewers_violation_banks_the_item_and_an_appeal_takes_it_out(serve: Any, db_url: str) -> None:
    server = serve(db_url, policies=[str(FAST_POLICY)], review_sample=1.0, review_double=0.0)
    with _Opened(server) as store:
        for name in ("alice", "bob"):
            create_user(ReviewStore(store), name, PASSWORD, "reviewer")
    with server.client("admin") as admin:
        for body in ({"name": "REVIEWED_BAD", "rules": ["nsfw"]},
                     {"name": "REVIEWED_OK", "kind": "allow", "rules": ["nsfw"]}):
            assert admin.post("/c/banks", json=body).status_code == 201
    with server.client("moderate") as client:
        original = client.post("/v1/moderate", files={"image": ("a.png", _image())}, data={"policy": "fast"}).json()
    assert original["decision"] == "allow" and original["id"] in _queued(server)  # the model: complies

    alice, csrf = _log_in(server, "alice")
    item_id = _take(alice, csrf)
    page = alice.get(f"/review/items/{item_id}").text
    offer = re.search(r'<input type="checkbox" name="bank" value="REVIEWED_BAD"[^>]*>', page)
    assert offer is not None and "checked" not in offer.group(0)  # offered, not yet chosen: nsfw is unlabelled
    assert 'value="REVIEWED_OK"' not in page  # an allow bank only when the model's violation is overturned
    url = f"/review/items/{item_id}/decision"
    block = {"csrf": csrf, "rule:nsfw": "violates", "action": "block", "reason_rule": "nsfw"}
    for form, message in [
        ({"csrf": csrf, "rule:nsfw": "complies", "action": "allow", "bank": "REVIEWED_BAD"}, "labelled violates"),
        ({**block, "bank": "NO_SUCH_BANK"}, "there is no bank"),
        ({"csrf": csrf, "rule:nsfw": "complies", "action": "allow", "bank": "REVIEWED_OK"}, "overturns the model"),
    ]:
        refused = alice.post(url, data=form)
        assert refused.status_code == 400 and message in refused.text, (form, refused.status_code)
    assert _entries(server, "REVIEWED_BAD") == [] and _entries(server, "REVIEWED_OK") == []
    with _Opened(server) as store:
        assert [r for r in ReviewStore(store).reviews() if r.item_id == item_id] == []

    first = alice.post(url, data={**block, "bank": "REVIEWED_BAD"})
    assert first.status_code == 303, first.text
    assert len(_entries(server, "REVIEWED_BAD")) == 1
    undone = alice.post(f"/review/items/{item_id}/undo", data={"csrf": csrf})  # the entry goes with the decision
    assert undone.status_code == 303, undone.text
    assert _entries(server, "REVIEWED_BAD") == []
    (taken_back,) = _audit(server, "bank.remove")
    assert taken_back.after["why"].endswith("undone") and taken_back.before["content_id"] == original["id"]

    done = alice.post(url, data={**block, "bank": "REVIEWED_BAD"})
    assert done.status_code == 303, done.text
    with _Opened(server) as store:
        (review,) = [r for r in ReviewStore(store).reviews() if r.item_id == item_id]
    (entry,) = _entries(server, "REVIEWED_BAD")
    assert (entry.content_id, entry.labels, entry.added_by, entry.source) == (
        original["id"], ["nsfw:violates"], "alice", f"review:{review.id}")
    assert entry.quality is not None and entry.quality >= 50
    added = _audit(server, "bank.add")[-1]
    assert added.actor == review.user_id and added.target == "REVIEWED_BAD"
    assert added.after["content_id"] == original["id"] and review.id in added.after["why"]

    with server.client("moderate") as client:
        copy = client.post("/v1/moderate", files={"image": ("copy.jpg", _image(0.5, "JPEG", 60), "image/jpeg")},
                           data={"policy": "fast"}).json()
        metrics = client.get("/metrics").text
    known = [e for v in copy["verdicts"] for e in v["evidence"] if e["criterion"] == "known-content"]
    assert copy["decision"] == "block" and [(e["signal"], e["text"]) for e in known] == [
        ("hash:REVIEWED_BAD", original["id"])]
    assert copy["id"] not in _queued(server)  # decided by the bank: never asked of a person
    assert re.search(r'^icm_bank_matches_total\{bank="REVIEWED_BAD"\} 1\.0$', metrics, re.M), metrics
    for path in ("/review", "/review/stats"):
        counted = alice.get(path).text
        assert re.search(r"Decided by known-content banks[^:]*: 1 · REVIEWED_BAD matched 1", counted), path

    with server.client("moderate") as client:
        appeal = client.post("/v1/appeals", json={"result_id": original["id"], "text": "It is a portrait."})
        assert appeal.status_code == 201, appeal.text
    bob, bob_csrf = _log_in(server, "bob")
    appealed = _take(bob, bob_csrf, "appeal")
    overturned = bob.post(f"/review/items/{appealed}/decision", data={
        "csrf": bob_csrf, "kind": "appeal", "rule:nsfw": "complies", "action": "allow", "note": "a portrait"})
    assert overturned.status_code == 303, overturned.text
    assert _entries(server, "REVIEWED_BAD") == []  # the entry the overturned decision added: removed
    _, removed = _audit(server, "bank.remove")
    bob_id = next(r.user_id for r in _reviews_of(server, appealed))
    assert removed.actor == bob_id and removed.target == "REVIEWED_BAD"
    assert removed.before["content_id"] == original["id"] and appeal.json()["id"] in removed.after["why"]

    undone = bob.post(f"/review/items/{appealed}/undo", data={"csrf": bob_csrf})  # the removal is taken back too
    assert undone.status_code == 303, undone.text
    (restored,) = _entries(server, "REVIEWED_BAD")
    assert restored.model_dump(exclude={"added_at"}) == entry.model_dump(exclude={"added_at"})
    assert restored.added_at == entry.added_at
    put_back = _audit(server, "bank.add")[-1]
    assert put_back.actor == bob_id and put_back.after["why"].endswith("its removal taken back")
    with server.client("moderate") as client:
        copy = client.post("/v1/moderate", files={"image": ("copy3.jpg", _image(0.6, "JPEG", 80), "image/jpeg")},
                           data={"policy": "fast"}).json()
    assert copy["decision"] == "block" and copy["id"] not in _queued(server)
    assert re.search(r"Decided by known-content banks[^:]*: 2 · REVIEWED_BAD matched 2", alice.get("/review").text)
    overturned = bob.post(f"/review/items/{appealed}/decision", data={
        "csrf": bob_csrf, "kind": "appeal", "rule:nsfw": "complies", "action": "allow", "note": "a portrait"})
    assert overturned.status_code == 303, overturned.text
    assert _entries(server, "REVIEWED_BAD") == []
    with server.client("moderate") as client:
        again = client.post("/v1/moderate", files={"image": ("copy2.jpg", _image(0.5, "JPEG", 70), "image/jpeg")},
                            data={"policy": "fast"}).json()
    assert not [e for v in again["verdicts"] for e in v["evidence"] if e["criterion"] == "known-content"]
    assert again["id"] in _queued(server)  # judged by the model again, and offered to people


def _reviews_of(server: LiveServer, item_id: int) -> list[Any]:
    with _Opened(server) as store:
        return [r for r in ReviewStore(store).reviews() if r.item_id == item_id]


def test_an_allow_bank_is_offered_when_the_models_violation_is_overturned() -> None:
    from icm.banks.model import BankConfig
    from icm.errors import InputError

    result = ModerationResult.model_validate({
        "image": "x.png", "policy": {"id": "p", "version": 1}, "decision": "block",
        "backend": {"name": "local"}, "verdicts": [
            {"rule_id": "nsfw", "verdict": "violates", "probability": 0.9},
            {"rule_id": "spam", "verdict": "complies", "probability": 0.1}]})
    configs = [BankConfig(name="BAD_NSFW", kind="deny", rules=["nsfw"]),
               BankConfig(name="BAD_SPAM", kind="deny", rules=["spam"]),
               BankConfig(name="OTHER_SPAM", kind="deny", rules=["spam"]),
               BankConfig(name="OK_NSFW", kind="allow", rules=["nsfw"]),
               BankConfig(name="OK_SPAM", kind="allow", rules=["spam"])]
    offered = offers(configs, result)
    assert {rule: [(b["name"], b["when"], b["only"]) for b in banks] for rule, banks in offered.items()} == {
        "nsfw": [("BAD_NSFW", "violates", True), ("OK_NSFW", "complies", False)],
        "spam": [("BAD_SPAM", "violates", False), ("OTHER_SPAM", "violates", False)],  # spam: no violation to overturn
    }
    assert [c.name for c in chosen_banks(["OK_NSFW"], configs, result, {"nsfw": "complies"})] == ["OK_NSFW"]
    try:
        chosen_banks(["OK_SPAM"], configs, result, {"spam": "complies"})
    except InputError as exc:
        assert "overturns the model's violation of spam" in str(exc)
    else:
        raise AssertionError("an allow bank of a rule the model did not find violated was accepted")
