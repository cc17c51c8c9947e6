"""The loop from the command line: console accounts, reviewers' labels exported in `icm eval`'s
format and evaluated, and a new policy version replayed over the store's kept images."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from serve.live import FAST_POLICY, png_bytes
from typer.testing import CliRunner

from icm.cli.app import app
from icm.serve.store import Store
from icm.serve.store.reviews import QueueFilter, ReviewStore

runner = CliRunner()


def test_users_create_hashes_the_password_and_refuses_a_short_one(sqlite_url: str) -> None:
    made = runner.invoke(app, ["serve", "users", "create", "alice", "--role", "admin", "--password-stdin",
                               "--db", sqlite_url], input="correct horse battery\n")
    assert made.exit_code == 0, made.output
    assert "created admin alice" in made.output
    short = runner.invoke(app, ["serve", "users", "create", "bob", "--password-stdin", "--db", sqlite_url],
                          input="short\n")
    assert short.exit_code == 2 and "at least 10 characters" in short.output
    role = runner.invoke(app, ["serve", "users", "create", "bob", "--role", "owner", "--password-stdin",
                               "--db", sqlite_url], input="correct horse battery\n")
    assert role.exit_code == 2 and "unknown role" in role.output
    listed = runner.invoke(app, ["serve", "users", "list", "--db", sqlite_url])
    assert "alice" in listed.output and "bob" not in listed.output
    store = Store(sqlite_url)
    try:
        (user,) = ReviewStore(store).users()
        assert user.password_hash.startswith("$argon2id$")
        assert [e.action for e in ReviewStore(store).audit_entries()] == ["user_created"]
    finally:
        store.close()


def test_export_evaluate_and_replay(serve: Any, sqlite_url: str, tmp_path: Path) -> None:
    server = serve(sqlite_url, policies=[str(FAST_POLICY)], review_sample=1.0, review_double=0.0)
    with server.client("moderate") as client:
        for seed in range(3):
            answer = client.post("/v1/moderate", files={"image": (f"{seed}.png", png_bytes(seed))},
                                  data={"policy": "fast"})
            assert answer.status_code == 200, answer.text
    store = Store(sqlite_url)
    try:
        reviews = ReviewStore(store)
        runner.invoke(app, ["serve", "users", "create", "alice", "--password-stdin", "--db", sqlite_url],
                      input="correct horse battery\n")
        alice = reviews.users()[0].id
        for label in ["complies", "complies", "violates"]:  # the reviewer says the last one is nsfw
            taken = reviews.take_next(alice, timedelta(minutes=5), QueueFilter())
            assert taken is not None
            reviews.decide(taken.item.id, alice, {"nsfw": label}, "allow" if label == "complies" else "block",
                           "nsfw", "")
    finally:
        store.close()
    images = server.settings.image_dir
    out = tmp_path / "reviewed"
    exported = runner.invoke(app, ["review", "export", "--db", sqlite_url, "--out", str(out), "--image-dir",
                                   str(images)])
    assert exported.exit_code == 0, exported.output
    assert "wrote 3 labels of 3 images (policy fast)" in exported.output
    assert len(list((out / "images").iterdir())) == 3

    evaluated = runner.invoke(app, ["eval", "--predictions", str(out / "predictions.jsonl"), "--labels",
                                    str(out / "labels.jsonl"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output)
    assert metrics["accuracy"] == 2 / 3  # the model allowed all three; the reviewer blocked one

    strict = yaml.safe_load(FAST_POLICY.read_text())
    strict["version"] = 2
    strict["rules"][0]["criteria"][0]["signals"] = ["opennsfw:nsfw>=0.0"]  # everything violates now
    new_policy = tmp_path / "fast-v2.yaml"
    new_policy.write_text(yaml.safe_dump(strict))
    replayed = runner.invoke(app, ["policy", "replay", "--db", sqlite_url, "--policy", str(new_policy),
                                   "--image-dir", str(images), "--json"])
    assert replayed.exit_code == 0, replayed.output
    report = json.loads(replayed.output)
    assert report["judged"] == 3 and report["decisions"] == {"allow->block": 3}
    assert report["rules"]["nsfw"]["changed"] == 3 and report["rules"]["nsfw"]["labelled"] == 3
    assert (report["rules"]["nsfw"]["stored_correct"], report["rules"]["nsfw"]["new_correct"]) == (2, 1)
