"""Banks in the service's store (SQLite and PostgreSQL): the same Bank protocol as the folder, the
``icm bank --db`` commands, the service deciding a banked image's copies with no model, and the
HMA-compatible endpoints driven by an HMA-style client script."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import sample_image
from PIL import Image
from typer.testing import CliRunner

from icm.banks.folder import BankFolder
from icm.banks.matcher import BankMatcher
from icm.banks.model import BankConfig, BankEntry, BankError, BankExists, BankNotFound
from icm.cli.app import app
from icm.serve.store import Store, migrate
from icm.serve.store.banks import SqlBanks

EXAMPLES = Path(__file__).parent.parent.parent / "examples"
runner = CliRunner()
PDQ_A = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
PDQ_B = "e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg_copy(name: str, factor: float = 0.5, quality: int = 40) -> bytes:
    """An altered copy of a sample photograph: resized and re-encoded."""
    image = sample_image(name).convert("RGB")
    image = image.resize((round(image.width * factor), round(image.height * factor)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(params=["folder", "sql"])
def bank_store(request: pytest.FixtureRequest, db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "folder":
        yield BankFolder(tmp_path / "banks")
        return
    migrate(db_url)
    store = Store(db_url)
    yield SqlBanks(store)
    store.close()


def test_the_store_and_the_folder_are_one_protocol(bank_store) -> None:  # type: ignore[no-untyped-def]
    bank = bank_store.create(BankConfig(name="KNOWN_BAD", kind="deny", rules=["nsfw"], dsa_category="PORNOGRAPHY"))
    with pytest.raises(BankExists):
        bank_store.create(BankConfig(name="KNOWN_BAD", kind="deny", rules=["nsfw"]))
    with pytest.raises(BankNotFound):
        bank_store.get("OTHER")
    bank.add([BankEntry(content_id="c1", hash=PDQ_A.upper(), labels=["x"], added_by="ana")])
    entries, mark, whole = bank.read()
    assert whole and [(e.content_id, e.hash, e.labels, e.added_by) for e in entries] == [("c1", PDQ_A, ["x"], "ana")]
    again = bank_store.get("KNOWN_BAD")
    assert again.config.dsa_category == "PORNOGRAPHY" and again.config.distance == 31
    again.add([BankEntry(content_id="c2", hash=PDQ_B)])
    more, mark2, whole = bank.read(mark)
    assert not whole and [e.content_id for e in more] == ["c2"]
    matcher = BankMatcher(bank_store)
    assert [f.entry.content_id for f in matcher.lookup(bank.config.signal, [PDQ_B])["KNOWN_BAD"]] == ["c2"]
    assert again.remove("c1") == 1 and again.remove("c1") == 0
    after, _, whole = bank.read(mark2)
    assert whole and [e.content_id for e in after] == ["c2"]
    assert matcher.lookup(bank.config.signal, [PDQ_A]) == {}  # the matcher saw the removal
    assert bank_store.names() == ["KNOWN_BAD"]
    with pytest.raises(BankError, match="not a pdq hash"):
        bank.add([BankEntry(content_id="c3", hash="abc")])


def test_bank_commands_on_the_store(db_url: str, tmp_path: Path) -> None:
    def icm(*args: str) -> str:
        done = runner.invoke(app, [*args, "--db", db_url])
        assert done.exit_code == 0, done.output
        return done.output

    icm("bank", "create", "KNOWN_BAD", "--kind", "deny", "--rule", "nsfw", "--by", "ana")
    photo = tmp_path / "astronaut.png"
    sample_image("astronaut").save(photo)
    added = json.loads(icm("bank", "add", "KNOWN_BAD", str(photo), "--id", "case-1"))
    assert added["content_id"] == "case-1" and added["quality"] == 100
    hashes = tmp_path / "list.csv"
    hashes.write_text(f"{PDQ_A},case-2,reported\n")
    icm("bank", "import", "KNOWN_BAD", str(hashes))
    listed = [json.loads(line) for line in icm("bank", "list", "--json").splitlines()]
    assert [(b["name"], b["entries"], b["contents"]) for b in listed] == [("KNOWN_BAD", 2, 2)]
    exported = icm("bank", "export", "KNOWN_BAD").splitlines()
    assert exported == [f"{added['hash']},case-1,", f"{PDQ_A},case-2,reported"]
    icm("bank", "remove", "KNOWN_BAD", "case-2")
    assert icm("bank", "export", "KNOWN_BAD").splitlines() == [f"{added['hash']},case-1,"]
    # one place, never both and never none
    both = runner.invoke(app, ["bank", "list", "--db", db_url, "--banks", str(tmp_path / "b")])
    assert both.exit_code == 2 and "--banks DIR" in both.output
    # a malformed line is refused naming it, and nothing of the list is added
    hashes.write_text(f"{PDQ_B},ok\nnot-a-hash,bad\n")
    refused = runner.invoke(app, ["bank", "import", "KNOWN_BAD", str(hashes), "--db", db_url])
    assert refused.exit_code == 2 and "line 2" in refused.output
    assert len(icm("bank", "export", "KNOWN_BAD").splitlines()) == 1


def test_the_service_decides_copies_of_banked_images_with_no_model(serve, db_url: str) -> None:
    server = serve(db_url)
    with server.client("admin") as admin:
        created = admin.post("/c/banks", json={"name": "KNOWN_BAD", "kind": "deny", "rules": ["nsfw"]})
        assert created.status_code == 201, created.text
        added = admin.post("/c/bank/KNOWN_BAD/content",
                           files={"photo": ("astronaut.png", _png(sample_image("astronaut")), "image/png")},
                           data={"metadata": json.dumps({"content_id": "case-1"})})
        assert added.status_code == 200, added.text
        assert added.json()["id"] == "case-1" and len(added.json()["signals"]["pdq"]) == 64
    with server.client("moderate") as client:
        copy = client.post("/v1/moderate", data={"policy": "fast"},
                           files={"image": ("copy.jpg", _jpeg_copy("astronaut"), "image/jpeg")})
        assert copy.status_code == 200, copy.text
        body = copy.json()
        assert body["decision"] == "block"
        [verdict] = body["verdicts"]
        assert verdict["verdict"] == "violates"
        [evidence] = verdict["evidence"]
        assert (evidence["signal"], evidence["text"], evidence["criterion"]) == (
            "hash:KNOWN_BAD", "case-1", "known-content")
        assert evidence["distance"] <= 31 and body["timing_ms"]["judge"] == 0.0
        assert "bank KNOWN_BAD" in body["explanation"]
        other = client.post("/v1/moderate", data={"policy": "fast"},
                            files={"image": ("coffee.jpg", _jpeg_copy("coffee"), "image/jpeg")}).json()
        assert all(e["criterion"] != "known-content" for v in other["verdicts"] for e in v["evidence"])
        assert other["timing_ms"]["judge"] > 0
    # the bank change is in the audit log, with who made it
    from icm.serve.store.reviews import ReviewStore

    store = Store(db_url)
    try:
        actions = [(e.action, e.target) for e in ReviewStore(store).audit_entries(newest_first=False)]
    finally:
        store.close()
    assert ("bank.create", "KNOWN_BAD") in actions and ("bank.add", "KNOWN_BAD") in actions


def test_hma_endpoints_with_an_hma_style_client(serve, db_url: str, tmp_path: Path) -> None:
    server = serve(db_url)
    bank_image, copy_image, other_image = tmp_path / "bank.png", tmp_path / "copy.jpg", tmp_path / "other.jpg"
    bank_image.write_bytes(_png(sample_image("chelsea")))
    copy_image.write_bytes(_jpeg_copy("chelsea", 0.75, 50))
    other_image.write_bytes(_jpeg_copy("rocket"))
    done = subprocess.run([sys.executable, str(EXAMPLES / "hma_client.py"), server.url, server.key("admin"),
                           str(bank_image), str(copy_image), str(other_image)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    steps = {json.loads(line)["step"]: json.loads(line)["answer"] for line in done.stdout.splitlines()}
    assert steps["lookup copy"]["EXAMPLE_KNOWN_BAD"][0]["bank_content_id"] == "example-1"
    assert isinstance(steps["lookup copy"]["EXAMPLE_KNOWN_BAD"][0]["distance"], str)  # as HMA writes it
    assert steps["delete"] == {"deleted": 1}
    # the key scopes: review looks up but never changes banks; moderate does neither
    with server.client("review") as review, server.client("moderate") as moderate:
        assert review.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ_A}).json() == {}
        assert review.get("/c/banks").status_code == 200
        assert review.post("/c/banks", json={"name": "NOPE"}).status_code == 403
        assert review.delete("/c/bank/EXAMPLE_KNOWN_BAD/content/x").status_code == 403
        assert moderate.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ_A}).status_code == 403
        assert review.get("/m/lookup", params={"signal_type": "pdq", "signal": "zz"}).status_code == 400
        assert review.get("/c/bank/MISSING/content").status_code == 404
    with server.client("admin") as admin:
        signal = admin.post("/c/bank/EXAMPLE_KNOWN_BAD/signal", json={"pdq": PDQ_A, "content_id": "listed-1"})
        assert signal.status_code == 200, signal.text
        found = admin.get("/m/lookup", params={"signal_type": "pdq", "signal": PDQ_A}).json()
        assert found == {"EXAMPLE_KNOWN_BAD": [{"bank_content_id": "listed-1", "distance": "0"}]}
        content = admin.get("/c/bank/EXAMPLE_KNOWN_BAD/content").json()
        assert [c["id"] for c in content] == ["listed-1"]
        assert admin.post("/c/banks", json={"name": "bad name"}).status_code == 400
        assert admin.post("/c/banks", json={"name": "EXAMPLE_KNOWN_BAD"}).status_code == 409
        # an upload that is no image: a 4xx that names it, for each photo endpoint, and no entry added
        broken = {"photo": ("broken.jpg", b"\xff\xd8\xff\xe0 not a jpeg", "image/jpeg")}
        for path in ("/h/hash", "/m/lookup", "/c/bank/EXAMPLE_KNOWN_BAD/content"):
            refused = admin.post(path, files=broken)
            assert 400 <= refused.status_code < 500 and "image" in refused.text.lower(), (path, refused.text)
        assert [c["id"] for c in admin.get("/c/bank/EXAMPLE_KNOWN_BAD/content").json()] == ["listed-1"]


def test_a_replayed_stream_of_copies_is_decided_by_the_bank_and_never_queued(serve, db_url: str) -> None:
    from sqlalchemy import select

    from icm.serve.store.models import QueueItem

    # every answered image would join the queue: only a bank's decision keeps a copy out of it
    server = serve(db_url, review_sample=1.0)
    originals = ("astronaut", "chelsea", "coffee", "rocket", "camera", "horse")
    violating = {"astronaut", "rocket", "horse"}  # what the reviewer decided violates
    with server.client("moderate") as client, server.client("admin") as admin:
        first = {name: client.post("/v1/moderate", data={"policy": "fast"}, files={
            "image": (f"{name}.png", _png(sample_image(name)), "image/png")}).json() for name in originals}
        assert admin.post("/c/banks", json={"name": "REVIEWED_BAD", "rules": ["nsfw"]}).status_code == 201
        for name in sorted(violating):
            added = admin.post("/c/bank/REVIEWED_BAD/content", data={"metadata": json.dumps({"content_id": name})},
                               files={"photo": (f"{name}.png", _png(sample_image(name)), "image/png")})
            assert added.status_code == 200, added.text
        copies = {name: client.post("/v1/moderate", data={"policy": "fast"}, files={
            "image": (f"{name}-copy.jpg", _jpeg_copy(name, 0.6, 55), "image/jpeg")}).json() for name in originals}
    for name, body in copies.items():
        known = [e for v in body["verdicts"] for e in v["evidence"] if e["criterion"] == "known-content"]
        if name in violating:
            assert body["decision"] == "block" and [e["text"] for e in known] == [name], body
            assert body["timing_ms"]["judge"] == 0.0
        else:
            assert known == [], body  # no distinct image matches
    store = Store(db_url)
    try:
        with store._session() as session:
            queued = set(session.scalars(select(QueueItem.result_id)))
    finally:
        store.close()
    assert {first[name]["id"] for name in originals} <= queued
    assert [name for name in originals if copies[name]["id"] in queued] == sorted(set(originals) - violating,
                                                                                 key=originals.index)


def test_the_cache_follows_the_banks(serve, db_url: str) -> None:
    """Bytes judged before a bank entry matched them are judged again once it does (the bank
    decides), and again by the model once that entry is removed: a cached answer never hides a
    bank change."""
    server = serve(db_url)
    image = _png(sample_image("astronaut"))

    def moderate(client):  # type: ignore[no-untyped-def]
        answer = client.post("/v1/moderate", data={"policy": "fast"}, files={"image": ("a.png", image, "image/png")})
        assert answer.status_code == 200, answer.text
        banked = any(e["criterion"] == "known-content" for v in answer.json()["verdicts"] for e in v["evidence"])
        return answer.headers["X-ICM-Cache"], banked

    with server.client("moderate") as client, server.client("admin") as admin:
        assert moderate(client) == ("miss", False)
        assert moderate(client) == ("hit", False)  # nothing changed: the stored judgement stands
        assert admin.post("/c/banks", json={"name": "KNOWN_BAD", "kind": "deny", "rules": ["nsfw"]}).status_code == 201
        added = admin.post("/c/bank/KNOWN_BAD/content", files={"photo": ("a.png", image, "image/png")},
                           data={"metadata": json.dumps({"content_id": "case-9"})})
        assert added.status_code == 200, added.text
        assert moderate(client) == ("miss", True)
        assert admin.delete("/c/bank/KNOWN_BAD/content/case-9").status_code in (200, 204)
        assert moderate(client) == ("miss", False)
        assert moderate(client) == ("hit", False)
