"""The review console in a real browser: Playwright driving Debian's chromium (headless) against a
live server with a small store seeded through the API. One browser and one server per module.

The tests write screenshots of the queue and the item view: to ICM_TEST_SCREENSHOTS or a temporary
folder, and with ICM_UPDATE_SCREENSHOTS=1 over the ones the README shows (docs/screenshots/)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve.live import LiveServer, png_bytes, settings_for

from icm.backends.base import Backend
from icm.serve.review.accounts import create_user
from icm.serve.store import Store
from icm.serve.store.reviews import QueueFilter, ReviewStore

EXAMPLES = Path(__file__).parents[2] / "examples" / "images"
README_SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery"
CHROMIUM_ENV = "ICM_TEST_CHROMIUM"


def _chromium() -> str:
    path = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or ""
    if not path or not Path(path).exists():
        message = (f"no chromium for the browser tests: install Debian's chromium (apt-get install chromium; "
                   f"scripts/test.sh does) or set {CHROMIUM_ENV}")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("ICM_UPDATE_SCREENSHOTS") == "1":
        return README_SCREENSHOTS
    folder = os.environ.get("ICM_TEST_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def server(local_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose queue holds every answered image (the sample share is 1), with three
    console accounts, and the four example images moderated through the API under ``general``."""
    tmp = tmp_path_factory.mktemp("review")
    settings = settings_for(f"sqlite:///{tmp / 'icm-serve.db'}", tmp, policies=["general"], review_sample=1.0,
                            review_double=0.0)
    live = LiveServer(settings, backend=local_backend).start()
    store = Store(settings.db)
    try:
        for name, role in [("alice", "reviewer"), ("bob", "reviewer"), ("ada", "admin")]:
            create_user(ReviewStore(store), name, PASSWORD, role)
    finally:
        store.close()
    with live.client("moderate") as client:
        for image in ["scam-flyer.png", "astronaut.jpg", "chelsea.jpg", "coffee.jpg"]:
            with (EXAMPLES / image).open("rb") as handle:
                answer = client.post("/v1/moderate", files={"image": (image, handle)}, data={"policy": "general"})
            assert answer.status_code == 200, answer.text
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def _login(browser: Any, server: LiveServer, username: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(server.url + "/review")
    assert "/review/login" in page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(re.compile(r"/review$"))
    return page


def _queue_ids(page: Any) -> list[str]:
    return [row.get_attribute("id") for row in page.locator("tr[data-row]").all()]


def _item_of(page: Any) -> int:
    return int(page.url.split("/items/")[1].split("?")[0])


def _moved_on(page: Any, item_id: int | str) -> None:
    """Wait until the page has left item ``item_id`` and the next page has loaded (the decision's
    303 is answered before the browser follows it)."""
    page.wait_for_url(lambda url: re.search(rf"/review/items/{item_id}(\?|$)", url) is None)
    page.wait_for_load_state("load")


def _new_item(server: LiveServer, seed: int) -> int:
    """A queue item of its own for a test: a new image moderated under ``general`` (every answer
    joins the queue here), so that tests do not take each other's items."""
    with server.client("moderate") as client:
        answer = client.post("/v1/moderate", files={"image": (f"{seed}.png", png_bytes(seed))},
                             data={"policy": "general"})
    assert answer.status_code == 200, answer.text
    store = Store(server.settings.db)
    try:
        (item,) = [item for item, _ in ReviewStore(store).open_items(QueueFilter(), 500)
                   if item.result_id == answer.json()["id"]]
        return item.id
    finally:
        store.close()


def _open(page: Any, server: LiveServer, item_id: int) -> None:
    page.goto(server.url + "/review")
    page.locator(f"#item-{item_id}").get_by_role("button").click()
    page.wait_for_url(re.compile(rf"/review/items/{item_id}(\?|$)"))


def _reviews_of(server: LiveServer, item_id: int) -> list[Any]:
    store = Store(server.settings.db)
    try:
        return [r for r in ReviewStore(store).reviews() if r.item_id == item_id]
    finally:
        store.close()


def _in_view(page: Any, locator: Any) -> bool:
    """Whether the element is shown whole inside the viewport as it is (nothing scrolled)."""
    box = locator.bounding_box()
    size = page.viewport_size
    return (box is not None and locator.is_visible() and box["y"] >= 0 and box["x"] >= 0
            and box["y"] + box["height"] <= size["height"] and box["x"] + box["width"] <= size["width"])


def _shows_what_matters_first(page: Any) -> None:
    """At 1280x720, without scrolling: the image, every rule the model found violated or could not
    assess, and the decision controls; the compliant rules come after them, folded."""
    assert page.evaluate("window.scrollY") == 0
    assert _in_view(page, page.locator("#image"))
    models = [f.get_attribute("data-model") for f in page.locator("fieldset.rule").all()]
    open_rules = [m for m in models if m != "complies"]
    assert models[:len(open_rules)] == open_rules  # the rules that matter come first
    for fieldset in page.locator("fieldset.rule:not([data-model=complies])").all():
        assert _in_view(page, fieldset), fieldset.get_attribute("data-rule-id")
    for control in ["#action", "#reason_rule", "#submit-decision"]:
        assert _in_view(page, page.locator(control)), control
    if len(open_rules) < len(models):
        assert _in_view(page, page.locator("#compliant > summary"))
        assert not page.locator("fieldset.rule[data-model=complies]").first.is_visible()


def test_a_reviewer_works_the_queue_with_the_keyboard_and_the_audit_shows_it(
    browser: Any, server: LiveServer, screenshots: Path
) -> None:
    page = _login(browser, server, "alice")
    before = _queue_ids(page)
    assert len(before) == 4
    cookie = next(c for c in page.context.cookies() if c["name"] == "icm_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    screenshots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshots / "review-queue.png"))

    page.get_by_role("button", name="Start reviewing").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/review/items/\d+"))
    item_id = page.url.split("/items/")[1].split("?")[0]
    assert f"item-{item_id}" == before[0]  # oldest first
    frame = page.locator("#frame")
    assert "hidden-image" in (frame.get_attribute("class") or "")
    assert "blur" in page.locator("#image").evaluate("e => getComputedStyle(e).filter")
    assert "grayscale" in page.locator("#image").evaluate("e => getComputedStyle(e).filter")
    assert page.locator(".box").count() >= 1  # the flyer's evidence boxes, drawn over the image
    _shows_what_matters_first(page)

    page.keyboard.press("?")
    assert page.locator("#keys").is_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    assert "hidden-image" not in (frame.get_attribute("class") or "")
    assert page.locator("#reveal").get_attribute("aria-pressed") == "true"
    page.locator("#image").evaluate("image => image.decode()")
    page.screenshot(path=str(screenshots / "review-item.png"))  # revealed: the evidence boxes over the text
    first_rule = page.locator("fieldset.rule").first
    assert page.locator("input[type=radio]:checked").count() == 0  # nothing is chosen for the reviewer
    page.keyboard.press("1")
    now = first_rule.locator("input:checked").get_attribute("value")
    assert now == "violates"
    if now != "violates":  # block asks which rule it rests on: the reviewer names rule 1
        page.keyboard.press("b")
        assert page.locator("#block-prompt").is_visible()
        assert f"/items/{item_id}" in page.url
    with page.expect_navigation():
        page.keyboard.press("1" if now != "violates" else "b")  # block: submits and opens the next item
    _moved_on(page, item_id)
    assert f"Item #{item_id} decided: block" in page.locator("#decided").inner_text()

    page.goto(server.url + "/review")
    assert f"item-{item_id}" not in _queue_ids(page)

    admin = _login(browser, server, "ada")
    admin.goto(server.url + "/review/audit")
    rows = admin.locator("tr[data-action]")
    actions = {(r.get_attribute("data-action"), r.locator("td").nth(4).inner_text()) for r in rows.all()}
    assert {("view", f"item:{item_id}"), ("reveal", f"item:{item_id}"), ("decide", f"item:{item_id}")} <= actions
    decided = admin.locator(f"tr[data-action=decide]:has(td:text-is('item:{item_id}'))").first
    assert '"action": "block"' in decided.inner_text() and "alice" in decided.inner_text()
    with admin.expect_download() as download:
        admin.get_by_role("link", name=re.compile("Export the whole log")).click()
    assert '"action": "decide"' in Path(download.value.path()).read_text()
    admin.goto(server.url + "/review/stats")
    assert admin.get_by_role("heading", name="Agreement per rule").is_visible()
    assert admin.locator(".plot svg").count() >= 2

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/review/login"))
    page.goto(server.url + "/review")
    assert "/review/login" in page.url
    page.context.close()
    admin.context.close()


def test_a_form_posted_without_its_csrf_token_is_refused(browser: Any, server: LiveServer) -> None:
    page = _login(browser, server, "bob")
    page.locator("#start input[name=csrf]").evaluate("e => e.remove()")
    page.get_by_role("button", name="Start reviewing").click()
    assert page.get_by_role("heading", name="Form refused").is_visible()
    status = page.evaluate(
        "url => fetch(url, {method: 'POST', body: new URLSearchParams({action: 'allow'})}).then(r => r.status)",
        server.url + "/review/logout",
    )
    assert status == 403
    page.goto(server.url + "/review")
    assert "/review/login" not in page.url  # the refused logout changed nothing
    page.context.close()


def test_a_second_reviewer_cannot_take_a_leased_item(browser: Any, server: LiveServer) -> None:
    alice = _login(browser, server, "alice")
    alice.get_by_role("button", name="Start reviewing").click()
    alice.wait_for_url(re.compile(r"/review/items/\d+"))
    item_id = alice.url.split("/items/")[1].split("?")[0]

    bob = _login(browser, server, "bob")
    row = bob.locator(f"#item-{item_id}")
    assert row.locator("td").last.inner_text() == "in review"
    row.get_by_role("button").click()
    assert bob.get_by_role("heading", name="Not available").is_visible()
    assert "being reviewed by someone else" in bob.get_by_role("alert").inner_text()
    bob.goto(server.url + f"/review/items/{item_id}")
    assert bob.get_by_role("heading", name="Not leased to you").is_visible()
    alice.keyboard.press("j")  # alice skips it: the lease ends and bob may take it
    _moved_on(alice, item_id)
    bob.goto(server.url + "/review")
    bob.locator(f"#item-{item_id}").get_by_role("button").click()
    bob.wait_for_url(re.compile(rf"/review/items/{item_id}"))
    alice.context.close()
    bob.context.close()


def test_an_appeal_goes_to_a_different_reviewer(browser: Any, server: LiveServer) -> None:
    alice = _login(browser, server, "alice")
    alice.get_by_role("button", name="Start reviewing").click()
    alice.wait_for_url(re.compile(r"/review/items/\d+"))
    result_id = alice.locator("code").first.inner_text()
    first = _item_of(alice)
    with alice.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/decision")) as decided:
        alice.keyboard.press("a")  # allow: submits the decision
    assert decided.value.status < 400
    _moved_on(alice, first)  # the 303's page, loaded: a goto now would interrupt it

    with server.client("moderate") as client:
        opened = client.post("/v1/appeals", json={"result_id": result_id, "text": "This is my own cat photo."})
        assert opened.status_code == 201, opened.text
        appeal_id = opened.json()["id"]
        assert opened.json()["status"] == "open"

    alice.goto(server.url + "/review?kind=appeal")
    alice.get_by_role("button", name="Start reviewing").click()
    assert alice.get_by_role("status").inner_text().startswith("Nothing left")

    bob = _login(browser, server, "bob")
    bob.goto(server.url + "/review?kind=appeal")
    bob.get_by_role("button", name="Start reviewing").click()
    bob.wait_for_url(re.compile(r"/review/items/\d+"))
    assert "This is my own cat photo." in bob.locator(".appeal").inner_text()
    bob.get_by_label("Note (optional)").fill("Nothing in it breaks a rule.")
    bob.locator("h1").click()  # the keys act when no text field has the focus
    appealed = _item_of(bob)
    with bob.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/decision")) as decided:
        bob.keyboard.press("a")
    assert decided.value.status < 400
    _moved_on(bob, appealed)

    with server.client("moderate") as client:
        final = client.get(f"/v1/appeals/{appeal_id}").json()
    assert final["status"] == "decided" and final["decision"] == "allow"
    assert "Nothing in it breaks a rule." in final["statement"]
    assert final["statement"].startswith("Appeal reviewed by a person")
    alice.context.close()
    bob.context.close()


def test_a_refused_decision_shows_the_item_again_with_its_error_and_what_was_sent(
    browser: Any, server: LiveServer
) -> None:
    ada = _login(browser, server, "ada")  # an admin may open any item
    ada.goto(server.url + "/review/items/1")
    images = ada.locator("#image").count()
    model = ada.locator("#action").get_attribute("data-model")
    other = "block" if model != "block" else "allow"
    ada.select_option("#action", other)
    ada.select_option("#reason_rule", "")
    ada.get_by_label("Note (optional)").fill("kept after the error")
    with ada.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/decision")) as sent:
        ada.locator("#submit-decision").click()
    assert sent.value.status == 400
    assert "needs a reason" in ada.locator("#decision-error").inner_text()
    assert ada.locator("#action").input_value() == other
    assert ada.get_by_label("Note (optional)").input_value() == "kept after the error"
    assert ada.locator("#image").count() == images  # the same page as before, image and all
    ada.context.close()


def test_block_asks_for_the_rule_it_rests_on_and_the_decision_can_be_undone(
    browser: Any, server: LiveServer
) -> None:
    item_id = _new_item(server, 7)
    page = _login(browser, server, "bob")
    _open(page, server, item_id)
    _shows_what_matters_first(page)
    uncertain = [f.get_attribute("data-rule-id") for f in page.locator("fieldset.rule[data-model=uncertain]").all()]
    assert len(uncertain) >= 2
    assert page.locator("fieldset.rule[data-model=uncertain] input:checked").count() == 0  # nothing chosen for them
    assert page.locator("#reason_rule").input_value() == ""  # and no uncertain rule is made the reason

    page.keyboard.press("b")  # no rule is labelled violates: nothing is sent, the console asks which rule
    assert page.locator("#block-prompt").is_visible()
    page.wait_for_timeout(300)
    assert _item_of(page) == item_id and _reviews_of(server, item_id) == []
    second = page.locator("fieldset.rule").nth(1)  # read now: after the block the page shows the next item
    assert second.get_attribute("data-model") == "uncertain"
    named = uncertain[1]
    assert second.get_attribute("data-rule-id") == named
    with page.expect_navigation():
        page.keyboard.press("2")  # names the second rule: the block rests on it
    _moved_on(page, item_id)
    (review,) = _reviews_of(server, item_id)
    assert review.action == "block" and review.reason_rule == named
    assert review.labels[named] == "violates"
    assert [r for r in uncertain if r in review.labels] == [named]  # the other uncertain rules: not labelled
    notice = page.locator("#decided").inner_text()
    assert f"Item #{item_id} decided: block ({named} violates)" in notice

    with page.expect_navigation():
        page.keyboard.press("u")  # undo: back on the item, the decision gone
    page.wait_for_url(re.compile(rf"/review/items/{item_id}(\?|$)"))
    assert _reviews_of(server, item_id) == []
    assert page.locator("fieldset.rule[data-model=uncertain] input:checked").count() == 0
    store = Store(server.settings.db)
    try:
        entries = [e for e in ReviewStore(store).audit_entries() if e.target == f"item:{item_id}"]
    finally:
        store.close()
    undone = next(e for e in entries if e.action == "undo")
    assert undone.before is not None and undone.before["action"] == "block"
    page.context.close()


def test_labels_decide_the_action_and_a_contradiction_is_refused(browser: Any, server: LiveServer) -> None:
    item_id = _new_item(server, 8)
    page = _login(browser, server, "bob")
    _open(page, server, item_id)
    assert "review" not in [o.get_attribute("value") for o in page.locator("#action option").all()]
    page.locator("#compliant > summary").click()
    for fieldset in page.locator("fieldset.rule").all():
        fieldset.get_by_text("complies", exact=True).click()
    assert page.locator("#action").input_value() == "allow"  # the labels' action, not the model's review

    # the same form posted with a contradiction (every rule complies, yet block): refused, not stored
    status = page.evaluate("""() => {
        const decision = document.getElementById("decision");
        const form = new FormData(decision);
        form.set("action", "block");
        return fetch(decision.getAttribute("action"), {method: "POST", body: new URLSearchParams(form)})
          .then(r => r.text().then(t => [r.status, t]));
    }""")
    assert status[0] == 400 and "no rule is labelled violates" in status[1]
    assert _reviews_of(server, item_id) == []

    with page.expect_navigation():
        page.locator("#submit-decision").click()
    _moved_on(page, item_id)
    (review,) = _reviews_of(server, item_id)
    assert review.action == "allow" and review.reason_rule is None
    assert set(review.labels.values()) == {"complies"}
    page.context.close()


def test_agree_with_the_model_takes_its_confident_verdicts_on_the_rules_not_yet_chosen(
    browser: Any, server: LiveServer
) -> None:
    item_id = _new_item(server, 9)
    page = _login(browser, server, "alice")
    _open(page, server, item_id)
    assert page.locator("input[type=radio]:checked").count() == 0  # a fresh item: no label chosen
    assert page.locator("#action").input_value() == "" and page.locator("#reason_rule").input_value() == ""
    models = {f.get_attribute("data-rule-id"): f.get_attribute("data-model")
              for f in page.locator("fieldset.rule").all()}
    assert "complies" in models.values() and "uncertain" in models.values()
    # the reviewer settles one rule the model found compliant the other way before agreeing
    overruled = next(rule for rule, model in models.items() if model == "complies")
    page.locator("#compliant > summary").click()
    page.locator(f"fieldset.rule[data-rule-id='{overruled}']").get_by_text("violates", exact=True).click()

    page.keyboard.press("m")
    page.wait_for_timeout(200)
    assert _item_of(page) == item_id and _reviews_of(server, item_id) == []  # m fills, never submits
    chosen = {}
    for fieldset in page.locator("fieldset.rule").all():
        checked = fieldset.locator("input:checked")
        chosen[fieldset.get_attribute("data-rule-id")] = checked.get_attribute("value") if checked.count() else ""
    expected = {rule: ("violates" if rule == overruled else model if model != "uncertain" else "")
                for rule, model in models.items()}
    assert chosen == expected
    action = page.locator("#action").input_value()
    violated = [f.get_attribute("data-action") for f in page.locator("fieldset.rule").all()
                if f.locator("input[value=violates]").is_checked()]
    assert violated and action == max(violated, key=["allow", "review", "blur", "age_gate", "block"].index)
    assert models[page.locator("#reason_rule").input_value()] != "uncertain"  # the reason: a violated rule

    with page.expect_navigation():
        page.locator("#submit-decision").click()
    _moved_on(page, item_id)
    (review,) = _reviews_of(server, item_id)
    assert review.labels == {rule: label for rule, label in expected.items() if label}  # uncertain: unlabelled
    assert review.action == action
    page.context.close()


def _queued(server: LiveServer, result_id: str, kind: str | None = None) -> int:
    """The open queue item of a stored result (of one kind)."""
    store = Store(server.settings.db)
    try:
        (item,) = [item for item, _ in ReviewStore(store).open_items(QueueFilter(kind=kind), 500)
                   if item.result_id == result_id]
        return item.id
    finally:
        store.close()


def test_the_item_and_appeal_pages_show_the_dsa_statement_in_force(
    browser: Any, server: LiveServer, screenshots: Path
) -> None:
    with server.client("moderate") as client, (EXAMPLES / "scam-flyer.png").open("rb") as handle:
        answer = client.post("/v1/moderate", files={"image": ("flyer.png", handle)},
                             data={"policy": "general", "fresh": "true"})
    assert answer.status_code == 200, answer.text
    result_id = answer.json()["id"]
    assert answer.json()["decision"] == "block"
    item_id = _queued(server, result_id)

    ada = _login(browser, server, "ada")  # an admin may look at any item
    ada.goto(f"{server.url}/review/items/{item_id}")
    section = ada.locator("#dsa-statement")
    in_force = section.locator("details.dsa-one[open]")
    assert in_force.count() == 1 and in_force.get_attribute("data-puid") == result_id
    text = in_force.inner_text()
    assert "Removal of content" in text and "Scams and/or fraud" in text
    assert "Fully automated" in text and "Own voluntary initiative" in text
    in_force.locator("details.dsa-json > summary").click()
    assert f'"puid": "{result_id}"' in in_force.locator("pre").inner_text()
    screenshots.mkdir(parents=True, exist_ok=True)
    section.screenshot(path=str(screenshots / "review-statement.png"))
    ada.goto(f"{server.url}/review/items/{item_id}")
    _shows_what_matters_first(ada)  # the statement sits below the image: nothing that matters moves

    with server.client("moderate") as client:
        opened = client.post("/v1/appeals", json={"result_id": result_id, "text": "It is a real offer."})
    assert opened.status_code == 201, opened.text
    appeal_item = _queued(server, result_id, "appeal")
    bob = _login(browser, server, "bob")
    _open(bob, server, appeal_item)
    assert "It is a real offer." in bob.locator(".appeal").inner_text()
    assert bob.locator("#dsa-statement details.dsa-one[open]").get_attribute("data-puid") == result_id
    bob.locator("#action").select_option("allow")
    bob.locator("#reason_rule").select_option("spam-contact")
    with bob.expect_navigation():
        bob.locator("#submit-decision").click()
    _moved_on(bob, appeal_item)

    # the appeal overturned the block: no statement in force, the first one shown as replaced
    ada.goto(f"{server.url}/review/items/{appeal_item}")
    none = ada.locator("#dsa-none")
    assert "changed the decision to allow" in none.inner_text()
    replaced = ada.locator("#dsa-statement details.dsa-one")
    assert replaced.count() == 1 and replaced.get_attribute("data-puid") == result_id
    assert replaced.get_attribute("open") is None and "Replaced" in replaced.inner_text()
    with server.client("moderate") as client:
        gone = client.get(f"/v1/results/{result_id}/statement")
    assert gone.status_code == 404 and "allow" in gone.json()["error"]["message"]
    ada.context.close()
    bob.context.close()


def _flyer(factor: float = 1.0, fmt: str = "PNG") -> bytes:
    """The scam flyer as new bytes: one pixel changed (a new upload, not the one judged before),
    or a resized JPEG copy of it."""
    import io

    from PIL import Image

    image = Image.open(EXAMPLES / "scam-flyer.png").convert("RGB")
    if factor != 1.0:
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)
    else:
        image.putpixel((0, 0), (1, 2, 3))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 70} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def test_a_blocked_item_added_to_a_bank_decides_its_copies_until_an_appeal_overturns_it(
    browser: Any, server: LiveServer
) -> None:
    from icm.serve.store.banks import SqlBanks

    def entries() -> list[Any]:
        store = Store(server.settings.db)
        try:
            return SqlBanks(store).get("KNOWN_SCAMS").entries()
        finally:
            store.close()

    with server.client("admin") as admin:
        made = admin.post("/c/banks", json={"name": "KNOWN_SCAMS", "rules": ["spam-contact"]})
        assert made.status_code == 201, made.text
    with server.client("moderate") as client:
        original = client.post("/v1/moderate", files={"image": ("flyer.png", _flyer())},
                               data={"policy": "general"}).json()
    item_id = _queued(server, original["id"])
    page = _login(browser, server, "alice")
    _open(page, server, item_id)
    offer = page.locator(".bank-offer[data-rule-id=spam-contact]")
    assert not offer.is_visible()  # offered once the rule is labelled violates
    rule = page.locator("fieldset.rule[data-rule-id=spam-contact]")
    rule.get_by_text("violates", exact=True).click()
    assert offer.is_visible() and offer.locator("input").is_checked()  # the rule's one deny bank: preselected
    rule.get_by_text("complies", exact=True).click()
    assert not offer.is_visible() and not offer.locator("input").is_checked()
    rule.get_by_text("violates", exact=True).click()
    assert offer.locator("input").is_checked()
    page.locator("h1").click()
    with page.expect_navigation():
        page.keyboard.press("b")  # block on spam-contact: submits, the item joins the bank with it
    _moved_on(page, item_id)
    (review,) = _reviews_of(server, item_id)
    assert review.action == "block"
    (entry,) = entries()
    assert (entry.content_id, entry.added_by, entry.source) == (original["id"], "alice", f"review:{review.id}")

    with server.client("moderate") as client:
        copy = client.post("/v1/moderate", files={"image": ("copy.jpg", _flyer(0.75, "JPEG"), "image/jpeg")},
                           data={"policy": "general"}).json()
    known = [e for v in copy["verdicts"] for e in v["evidence"] if e["criterion"] == "known-content"]
    assert copy["decision"] == "block" and [(e["signal"], e["text"]) for e in known] == [
        ("hash:KNOWN_SCAMS", original["id"])], copy
    page.goto(server.url + "/review")
    queue = page.content()
    assert original["id"] not in queue and copy["id"] not in queue
    store = Store(server.settings.db)
    try:
        assert not [item for item, _ in ReviewStore(store).open_items(QueueFilter(), 500)
                    if item.result_id == copy["id"]]
    finally:
        store.close()
    assert "KNOWN_SCAMS matched 1" in page.locator("#bank-decided").inner_text()

    with server.client("moderate") as client:
        appeal = client.post("/v1/appeals", json={"result_id": original["id"], "text": "A real offer."})
        assert appeal.status_code == 201, appeal.text
    bob = _login(browser, server, "bob")
    appealed = _queued(server, original["id"], "appeal")
    bob.goto(server.url + "/review?kind=appeal")
    bob.locator(f"#item-{appealed}").get_by_role("button").click()
    bob.wait_for_url(re.compile(rf"/review/items/{appealed}(\?|$)"))
    bob.locator("#reason_rule").select_option("spam-contact")
    bob.locator("h1").click()
    with bob.expect_navigation():
        bob.keyboard.press("a")  # allow: every rule complies; the decision the bank rested on is overturned
    _moved_on(bob, appealed)
    assert entries() == []
    with server.client("moderate") as client:
        again = client.post("/v1/moderate", files={"image": ("copy.jpg", _flyer(0.75, "JPEG"), "image/jpeg")},
                            data={"policy": "general"}).json()
    assert not [e for v in again["verdicts"] for e in v["evidence"] if e["criterion"] == "known-content"]
    page.context.close()
    bob.context.close()
