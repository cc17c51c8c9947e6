"""The console's and the appeals API's HTTP behaviour against a live server: accounts (a new
password or a disabled account ends sessions, the login CSRF token is the server's, unknown user
names are audited hashed), appeals, reveal, item ids and decisions that contradict themselves."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from serve.live import FAST_POLICY, LiveServer, png_bytes
from typer.testing import CliRunner

from icm.cli.app import app
from icm.serve.review.accounts import create_user
from icm.serve.store import Store
from icm.serve.store.reviews import QueueFilter, ReviewStore

PASSWORD = "correct horse battery"
runner = CliRunner()


@pytest.fixture
def server(serve: Any, sqlite_url: str) -> LiveServer:
    """A server whose queue takes every answer, with reviewers alice and bob, and two items."""
    live: LiveServer = serve(sqlite_url, policies=[str(FAST_POLICY)], review_sample=1.0, review_double=0.0)
    with _reviews(live) as reviews:
        for name in ("alice", "bob"):
            create_user(reviews, name, PASSWORD, "reviewer")
    with live.client("moderate") as client:
        for seed in (1, 2):
            answer = client.post("/v1/moderate", files={"image": (f"{seed}.png", png_bytes(seed))},
                                 data={"policy": "fast"})
            assert answer.status_code == 200, answer.text
    return live


class _reviews:
    def __init__(self, server: LiveServer) -> None:
        self.store = Store(server.settings.db)

    def __enter__(self) -> ReviewStore:
        return ReviewStore(self.store)

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def _browser(server: LiveServer) -> httpx2.Client:
    return httpx2.Client(base_url=server.url, timeout=60, follow_redirects=False)


def _log_in(server: LiveServer, username: str, password: str = PASSWORD) -> tuple[httpx2.Client, str]:
    """A logged-in client and its session's CSRF token."""
    client = _browser(server)
    form = client.get("/review/login")
    answer = client.post("/review/login", data={"csrf": _csrf(form.text), "username": username,
                                                 "password": password, "next": "/review"})
    assert answer.status_code == 303, answer.text
    return client, _csrf(client.get("/review").text)


def _audit(server: LiveServer) -> list[Any]:
    with _reviews(server) as reviews:
        return reviews.audit_entries(0, None, False)


def test_a_new_password_and_a_disabled_account_end_the_users_sessions(server: LiveServer) -> None:
    db = server.settings.db
    alice, _ = _log_in(server, "alice")
    assert alice.get("/review").status_code == 200
    changed = runner.invoke(app, ["serve", "users", "password", "alice", "--password-stdin", "--db", db],
                            input="another long password\n")
    assert changed.exit_code == 0, changed.output
    assert "1 session(s) ended" in changed.output
    assert alice.get("/review").status_code == 303  # the browser logged in with the old password is out

    bob, _ = _log_in(server, "bob")
    disabled = runner.invoke(app, ["serve", "users", "disable", "bob", "--db", db])
    assert disabled.exit_code == 0, disabled.output
    assert bob.get("/review").status_code == 303
    refused = _browser(server)
    form = refused.get("/review/login")
    answer = refused.post("/review/login", data={"csrf": _csrf(form.text), "username": "bob", "password": PASSWORD})
    assert answer.status_code == 401 and "wrong username or password" in answer.text
    listed = runner.invoke(app, ["serve", "users", "list", "--db", db])
    assert "disabled" in listed.output
    enabled = runner.invoke(app, ["serve", "users", "enable", "bob", "--db", db])
    assert enabled.exit_code == 0, enabled.output
    _log_in(server, "bob")
    actions = [e.action for e in _audit(server)]
    assert {"password_set", "user_disabled", "user_enabled"} <= set(actions)
    unknown = runner.invoke(app, ["serve", "users", "disable", "nobody", "--db", db])
    assert unknown.exit_code == 2 and "no user 'nobody'" in unknown.output


def test_the_login_csrf_token_is_the_servers_and_a_password_typed_as_the_name_is_not_logged(
    server: LiveServer,
) -> None:
    planted = "chosen-by-someone-else-0123456789abcdef"
    client = _browser(server)
    client.cookies.set("icm_login_csrf", planted, path="/review")
    form = client.get("/review/login")
    given = form.cookies.get("icm_login_csrf")
    assert given and given != planted and _csrf(form.text) == given
    sent = client.post("/review/login", data={"csrf": planted, "username": "alice", "password": PASSWORD})
    assert sent.status_code == 403  # the planted token no longer opens a session

    secret = "my-Secret-passw0rd!"
    form = client.get("/review/login")
    failed = client.post("/review/login", data={"csrf": _csrf(form.text), "username": secret, "password": "x"})
    assert failed.status_code == 401
    assert failed.cookies.get("icm_login_csrf") not in (None, _csrf(form.text))  # a fresh token after a failure
    logged = " ".join(f"{e.actor} {e.target} {e.before} {e.after}" for e in _audit(server))
    assert secret not in logged and secret[:8] not in logged
    (entry,) = [e for e in _audit(server) if e.action == "login_failed"]
    assert entry.actor.startswith("login:unknown:")
    form = client.get("/review/login")
    client.post("/review/login", data={"csrf": _csrf(form.text), "username": "alice", "password": "wrong one"})
    assert [e.actor for e in _audit(server) if e.action == "login_failed"][-1] == "login:alice"


def test_appeals_from_a_review_key_and_blank_appeals(server: LiveServer) -> None:
    with server.client("moderate") as client:
        result_id = client.get("/v1/results").json()["data"][0]["id"]
    with server.client("review") as client:
        opened = client.post("/v1/appeals", json={"result_id": result_id, "text": "  Please look again.  "})
        assert opened.status_code == 201, opened.text
        assert opened.json()["text"] == "Please look again."
    with server.client("moderate") as client:
        other = client.get("/v1/results").json()["data"][1]["id"]
        for blank in ["   ", "\n\t "]:
            answer = client.post("/v1/appeals", json={"result_id": other, "text": blank})
            assert answer.status_code == 400, answer.text
            assert "only white space" in answer.json()["error"]["message"]
    with _reviews(server) as reviews:
        assert [item.result_id for item, _ in reviews.open_items(QueueFilter(kind="appeal"))] == [result_id]


def test_reveal_checks_the_item_like_its_page(server: LiveServer) -> None:
    alice, csrf = _log_in(server, "alice")
    bob, bob_csrf = _log_in(server, "bob")
    taken = alice.post("/review/next", data={"csrf": csrf})
    item_id = int(taken.headers["location"].split("/items/")[1].split("?")[0])
    before = len(_audit(server))
    assert bob.post(f"/review/items/{item_id}/reveal", headers={"X-CSRF-Token": bob_csrf}).status_code == 409
    assert bob.post("/review/items/99999/reveal", headers={"X-CSRF-Token": bob_csrf}).status_code == 404
    assert not [e for e in _audit(server)[before:] if e.action == "reveal"]
    assert alice.post(f"/review/items/{item_id}/reveal", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert [e.target for e in _audit(server)[before:] if e.action == "reveal"] == [f"item:{item_id}"]


@pytest.mark.parametrize("raw", ["99999999999999999999999", "9223372036854775808", "\u0663", "+1", "0", "1e3"])
def test_an_item_id_is_ascii_digits_within_the_database_integer(server: LiveServer, raw: str) -> None:
    alice, csrf = _log_in(server, "alice")
    assert alice.get(f"/review/items/{raw}").status_code == 400
    assert alice.get(f"/review/items/{raw}/image").status_code == 400
    for action in ("take", "decision", "reveal", "undo"):
        answer = alice.post(f"/review/items/{raw}/{action}", data={"csrf": csrf}, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 400, (action, answer.status_code)
    assert alice.post("/review/next", data={"csrf": csrf, "release": raw}).status_code == 400


def test_a_missing_item_is_404(server: LiveServer) -> None:
    alice, csrf = _log_in(server, "alice")
    assert alice.get("/review/items/9223372036854775807").status_code == 404
    assert alice.post("/review/items/123456/take", data={"csrf": csrf}).status_code == 404


def test_a_decision_that_contradicts_itself_is_refused(server: LiveServer) -> None:
    alice, csrf = _log_in(server, "alice")
    taken = alice.post("/review/next", data={"csrf": csrf})
    item_id = int(taken.headers["location"].split("/items/")[1].split("?")[0])
    url = f"/review/items/{item_id}/decision"
    complies = {"csrf": csrf, "rule:nsfw": "complies"}
    for form, message in [
        ({**complies, "action": "review", "reason_rule": "nsfw"}, "review is not a reviewer&#39;s decision"),
        ({**complies, "action": "block", "reason_rule": "nsfw"}, "no rule is labelled violates"),
        ({"csrf": csrf, "rule:nsfw": "violates", "action": "allow"}, "needs a reason"),
    ]:
        answer = alice.post(url, data=form)
        assert answer.status_code == 400 and message in answer.text, (form, answer.status_code)
    with _reviews(server) as reviews:
        assert [r for r in reviews.reviews() if r.item_id == item_id] == []
    done = alice.post(url, data={**complies, "action": ""})  # no action chosen: the labels' one, allow
    assert done.status_code == 303 and f"decided={item_id}" in done.headers["location"]
    with _reviews(server) as reviews:
        (review,) = [r for r in reviews.reviews() if r.item_id == item_id]
    assert (review.action, review.labels, review.reason_rule) == ("allow", {"nsfw": "complies"}, None)


def _form_as_sent(html: str) -> dict[str, str]:
    """The decision form of an item page as a browser would send it untouched: its hidden inputs,
    the radios that are checked and each select's selected option."""
    form = html.split('id="decision"', 1)[1].split("</form>", 1)[0]
    sent = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    for tag in re.findall(r"<input [^>]*>", form):
        if 'type="radio"' in tag and re.search(r"\schecked\b", tag):
            name = re.search(r'name="([^"]+)"', tag)
            value = re.search(r'value="([^"]+)"', tag)
            assert name is not None and value is not None
            sent[name.group(1)] = value.group(1)
    for name, options in re.findall(r'<select id="[^"]+" name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        selected = re.search(r'<option value="([^"]*)" selected>', options)
        sent[name] = selected.group(1) if selected else ""
    return sent


def test_a_fresh_item_has_nothing_chosen_and_a_decision_records_only_the_reviewers_labels(
    server: LiveServer,
) -> None:
    alice, csrf = _log_in(server, "alice")
    taken = alice.post("/review/next", data={"csrf": csrf})
    item_url = taken.headers["location"]
    item_id = int(item_url.split("/items/")[1].split("?")[0])
    page = alice.get(item_url)
    assert page.status_code == 200
    radios = re.findall(r'<input type="radio"[^>]*>', page.text)
    assert radios and not [r for r in radios if re.search(r"\schecked\b", r)]  # no label chosen for alice
    assert 'class="tag v-' in page.text  # the model's verdict is still shown, as the rule's tag
    assert "Agree with the model (m)" in page.text
    sent = _form_as_sent(page.text)
    assert sent["action"] == "" and sent["reason_rule"] == ""  # the action and reason start empty
    assert not [k for k in sent if k.startswith("rule:")]

    untouched = alice.post(f"/review/items/{item_id}/decision", data=sent)  # submitted as shown
    assert untouched.status_code == 400 and "choose an action" in untouched.text
    with _reviews(server) as reviews:
        assert [r for r in reviews.reviews() if r.item_id == item_id] == []

    done = alice.post(f"/review/items/{item_id}/decision", data={**sent, "action": "allow"})
    assert done.status_code == 303, done.text
    with _reviews(server) as reviews:
        (review,) = [r for r in reviews.reviews() if r.item_id == item_id]
    assert (review.action, review.labels) == ("allow", {})  # no label the reviewer did not set
    again = alice.get(f"/review/items/{item_id}")  # their own decision is what is shown as chosen now
    assert not re.search(r'<input type="radio"[^>]*\schecked\b', again.text)
    alice.post(f"/review/items/{item_id}/decision", data={**sent, "rule:nsfw": "complies", "action": "allow"})
    changed = alice.get(f"/review/items/{item_id}")
    assert re.search(r'<input type="radio"[^>]*value="complies" checked', changed.text)


def test_every_refusal_answers_what_it_refuses(server: LiveServer) -> None:
    """Nobody logged in goes to the login page (the image and the reveal get the status alone); a
    reviewer is refused the admins' pages; a form without the session's CSRF token changes nothing
    and is audited; a page of no item says so."""
    nobody = _browser(server)
    to_login = nobody.get("/review/audit?x=1")
    assert to_login.status_code == 303
    assert to_login.headers["location"] == "/review/login?next=%2Freview%2Faudit%3Fx%3D1"
    assert nobody.post("/review/next", data={}).status_code == 303
    image = nobody.get("/review/items/1/image")
    assert image.status_code == 401 and image.content == b""
    assert nobody.post("/review/items/1/reveal").status_code == 303  # a form of nobody's: to the login page

    alice, csrf = _log_in(server, "alice")
    for page in ("/review/audit", "/review/audit/export"):
        refused = alice.get(page)
        assert refused.status_code == 403 and "Admins only" in refused.text, page
        assert refused.headers["Cache-Control"] == "no-store"  # a console page, headers and all
    assert alice.get("/review/stats").status_code == 200  # the statistics are every reviewer's

    before = len(_audit(server))
    for form in ({}, {"csrf": "not-the-token"}):
        answer = alice.post("/review/settings", data={**form, "reveal_by_default": "on"})
        assert answer.status_code == 403 and "Form refused" in answer.text, form
    reveal = alice.post("/review/items/1/reveal", headers={"X-CSRF-Token": "wrong"})
    assert reveal.status_code == 403 and reveal.content == b""
    refusals = [e for e in _audit(server)[before:] if e.action == "csrf_refused"]
    assert [e.target for e in refusals] == ["/review/settings", "/review/settings", "/review/items/1/reveal"]
    with _reviews(server) as reviews:
        assert not next(u for u in reviews.users() if u.username == "alice").reveal_by_default  # unchanged
    assert alice.post("/review/settings", data={"csrf": csrf, "reveal_by_default": "on"}).status_code == 303
    with _reviews(server) as reviews:
        assert next(u for u in reviews.users() if u.username == "alice").reveal_by_default  # with the token: changed

    missing = alice.get("/review/items/424242")
    assert missing.status_code == 404 and "No such item" in missing.text
