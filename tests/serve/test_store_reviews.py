"""The review console's store on SQLite and PostgreSQL: leases, blind double review, appeals to a
different reviewer, lockout, the append-only audit, final labels, export and statistics."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from icm.errors import InputError
from icm.evaluate.labelled_folder import load_dataset
from icm.results import ModerationResult
from icm.serve.errors import Conflict
from icm.serve.review.accounts import AccountLocked, LoginFailed, create_user, log_in
from icm.serve.review.export import export_reviews, final_labels
from icm.serve.review.stats import compute_stats
from icm.serve.store import Store, migrate
from icm.serve.store.images import DatabaseImages, DiskImages, ImageStore
from icm.serve.store.models import AuditEntry, StoredResult, utcnow
from icm.serve.store.reviews import QueueFilter, ReviewStore

LEASE = timedelta(minutes=10)
PASSWORD = "correct horse battery"


def _result(decision: str, verdicts: dict[str, str], sha: str, fmt: str = "PNG") -> dict[str, Any]:
    return ModerationResult.model_validate({
        "image": f"{sha[:6]}.png", "sha256": sha, "policy": {"id": "kids", "version": 1}, "decision": decision,
        "verdicts": [{"rule_id": r, "verdict": v, "probability": 0.9 if v == "violates" else 0.1}
                     for r, v in verdicts.items()],
        "backend": {"name": "local"}, "media": {"format": fmt, "width": 64, "height": 64},
    }).model_dump(mode="json")


def _stored(store: Store, images: Path | ImageStore, decision: str, verdicts: dict[str, str],
            fmt: str = "PNG") -> StoredResult:
    """A stored result with its image kept (in ``images``, or as files in that folder)."""
    sha = uuid.uuid4().hex * 2
    (DiskImages(images) if isinstance(images, Path) else images).put(sha, b"\x89PNG fake bytes " + sha.encode())
    row = StoredResult(id="res_" + uuid.uuid4().hex, created_at=utcnow(), sha256=sha, policy_id="kids",
                       policy_version=1, rules="", backend="local", key_id="key_a", endpoint="moderate",
                       decision=decision, image_kept=True, result=_result(decision, verdicts, sha, fmt))
    return store.add_result(row)


@pytest.fixture
def reviews(db_url: str) -> Any:
    migrate(db_url)
    store = Store(db_url)
    yield ReviewStore(store)
    store.close()


def _users(reviews: ReviewStore, *names: str) -> list[str]:
    return [create_user(reviews, name, PASSWORD, "reviewer").id for name in names]


def test_a_leased_item_is_one_reviewers_until_the_lease_expires(reviews: ReviewStore, tmp_path: Path) -> None:
    alice, bob = _users(reviews, "alice", "bob")
    row = _stored(reviews.store, tmp_path, "review", {"nudity": "uncertain"})
    item = reviews.enqueue(row, "review")
    assert reviews.take(item.id, alice, LEASE).slot == 0
    with pytest.raises(Conflict, match="someone else"):
        reviews.take(item.id, bob, LEASE)
    assert reviews.take_next(bob, LEASE, QueueFilter()) is None
    reviews.take(item.id, alice, timedelta(seconds=-1))  # alice's lease runs out
    assert reviews.take_next(bob, LEASE, QueueFilter()) is not None
    with pytest.raises(Conflict, match="not leased to you"):
        reviews.decide(item.id, alice, {"nudity": "complies"}, "allow", "nudity", "")
    review, earlier = reviews.decide(item.id, bob, {"nudity": "complies"}, "allow", "nudity", "")
    assert earlier is None and reviews.item(item.id).closed_at is not None  # type: ignore[union-attr]
    assert reviews.open_items(QueueFilter()) == []


def test_double_review_goes_to_two_different_reviewers(reviews: ReviewStore, tmp_path: Path) -> None:
    alice, bob, carol = _users(reviews, "alice", "bob", "carol")
    item = reviews.enqueue(_stored(reviews.store, tmp_path, "block", {"nudity": "violates"}), "sample", needed=2)
    first = reviews.take_next(alice, LEASE, QueueFilter())
    second = reviews.take_next(bob, LEASE, QueueFilter())
    assert first is not None and second is not None and {first.slot, second.slot} == {0, 1}
    assert reviews.take_next(carol, LEASE, QueueFilter()) is None  # both slots are leased
    reviews.decide(item.id, alice, {"nudity": "violates"}, "block", None, "")
    assert reviews.take_next(alice, LEASE, QueueFilter()) is None  # blind: not twice by one person
    reviews.decide(item.id, bob, {"nudity": "complies"}, "allow", "nudity", "looks fine")
    assert reviews.item(item.id).closed_at is not None  # type: ignore[union-attr]
    outcome = final_labels(reviews)[item.result_id]
    assert outcome.labels == {} and outcome.conflicts == ["nudity"]  # disagreement gives no label


def test_an_appeal_goes_to_a_reviewer_other_than_the_results(reviews: ReviewStore, tmp_path: Path) -> None:
    alice, bob = _users(reviews, "alice", "bob")
    row = _stored(reviews.store, tmp_path, "review", {"nudity": "uncertain", "spam": "complies"})
    item = reviews.enqueue(row, "review")
    reviews.take(item.id, alice, LEASE)
    reviews.decide(item.id, alice, {"nudity": "violates", "spam": "complies"}, "block", "nudity", "")
    appeal = reviews.add_appeal(row, "key_a", "It is a painting in a museum.")
    with pytest.raises(Conflict, match="already has an open appeal"):
        reviews.add_appeal(row, "key_a", "again")
    assert reviews.take_next(alice, LEASE, QueueFilter(kind="appeal")) is None
    taken = reviews.take_next(bob, LEASE, QueueFilter(kind="appeal"))
    assert taken is not None and taken.item.appeal_id == appeal.id
    reviews.decide(taken.item.id, bob, {"nudity": "complies"}, "allow", "nudity", "art", "Overturned.")
    decided = reviews.appeal(appeal.id)
    assert decided is not None and decided.decision == "allow" and decided.statement == "Overturned."
    assert final_labels(reviews)[row.id].labels == {"nudity": "complies", "spam": "complies"}


def test_a_change_is_a_new_review_and_both_stay(reviews: ReviewStore, tmp_path: Path) -> None:
    (alice,) = _users(reviews, "alice")
    item = reviews.enqueue(_stored(reviews.store, tmp_path, "review", {"nudity": "uncertain"}), "review")
    reviews.take(item.id, alice, LEASE)
    first, _ = reviews.decide(item.id, alice, {"nudity": "violates"}, "block", "nudity", "")
    second, earlier = reviews.decide(item.id, alice, {"nudity": "complies"}, "allow", "nudity", "second look")
    assert earlier is not None and earlier.id == first.id and second.supersedes == first.id
    assert [r.action for r in reviews.reviews(item.result_id)] == ["block", "allow"]
    assert final_labels(reviews)[item.result_id].labels == {"nudity": "complies"}


def test_only_the_last_fresh_first_decision_is_undone_and_an_appeal_opens_again(
    reviews: ReviewStore, tmp_path: Path
) -> None:
    alice, bob = _users(reviews, "alice", "bob")
    first = reviews.enqueue(_stored(reviews.store, tmp_path, "review", {"nudity": "uncertain"}), "review")
    second = reviews.enqueue(_stored(reviews.store, tmp_path, "review", {"nudity": "uncertain"}), "review")
    window = timedelta(seconds=30)
    reviews.take(first.id, alice, LEASE)
    reviews.decide(first.id, alice, {"nudity": "violates"}, "block", "nudity", "")
    reviews.take(second.id, alice, LEASE)
    reviews.decide(second.id, alice, {"nudity": "complies"}, "allow", None, "")
    with pytest.raises(Conflict, match="only the last one"):
        reviews.undo(first.id, alice, window, LEASE)
    with pytest.raises(Conflict, match="can no longer be undone"):
        reviews.undo(second.id, alice, timedelta(0), LEASE)
    undone = reviews.undo(second.id, alice, window, LEASE)
    assert undone.action == "allow" and reviews.my_review(second.id, alice) is None
    assert reviews.item(second.id).closed_at is None  # type: ignore[union-attr]
    assert reviews.lease_of(second.id, alice) is not None  # back with the reviewer who undid it
    with pytest.raises(Conflict):
        reviews.take(second.id, bob, LEASE)

    reviews.decide(first.id, alice, {"nudity": "complies"}, "allow", "nudity", "")  # a change of the first
    with pytest.raises(Conflict, match="decide again"):
        reviews.undo(first.id, alice, window, LEASE)

    row = _stored(reviews.store, tmp_path, "block", {"nudity": "violates"})
    appeal = reviews.add_appeal(row, "key_a", "It is a painting.")
    taken = reviews.take_next(bob, LEASE, QueueFilter(kind="appeal"))
    assert taken is not None
    reviews.decide(taken.item.id, bob, {"nudity": "complies"}, "allow", "nudity", "", "upheld")
    assert reviews.appeal(appeal.id).decided_at is not None  # type: ignore[union-attr]
    reviews.undo(taken.item.id, bob, window, LEASE)
    reopened = reviews.appeal(appeal.id)
    assert reopened is not None and reopened.decided_at is None and reopened.decision is None


def test_a_new_password_or_disabling_ends_the_users_sessions(reviews: ReviewStore, tmp_path: Path) -> None:
    (alice,) = _users(reviews, "alice")
    for token in ("a" * 64, "b" * 64):
        reviews.add_session(token, alice, "csrf", LEASE)
    item = reviews.enqueue(_stored(reviews.store, tmp_path, "review", {"nudity": "uncertain"}), "review")
    reviews.take(item.id, alice, LEASE)
    assert reviews.set_password(alice, "hash", end_sessions=False) == 0
    assert reviews.live_session("a" * 64) is not None
    assert reviews.set_password(alice, "hash") == 2
    assert reviews.live_session("a" * 64) is None and reviews.live_session("b" * 64) is None
    reviews.add_session("c" * 64, alice, "csrf", LEASE)
    assert reviews.set_disabled(alice, True) == 1
    assert reviews.live_session("c" * 64) is None and reviews.lease_of(item.id, alice) is None
    reviews.set_disabled(alice, False)
    reviews.add_session("d" * 64, alice, "csrf", LEASE)
    assert reviews.live_session("d" * 64) is not None


def test_repeated_failed_logins_lock_the_account(reviews: ReviewStore) -> None:
    create_user(reviews, "alice", PASSWORD, "reviewer")
    options = {"max_failures": 3, "lockout": timedelta(minutes=5), "lifetime": timedelta(hours=1)}
    for _ in range(2):
        with pytest.raises(LoginFailed):
            log_in(reviews, "alice", "wrong password!", **options)
    with pytest.raises(AccountLocked):
        log_in(reviews, "alice", "wrong password!", **options)
    with pytest.raises(AccountLocked):  # even the right password, while locked
        log_in(reviews, "alice", PASSWORD, **options)
    with pytest.raises(LoginFailed):
        log_in(reviews, "nobody", PASSWORD, **options)


def test_users_need_a_known_role_and_a_long_password(reviews: ReviewStore) -> None:
    with pytest.raises(InputError, match="role"):
        create_user(reviews, "alice", PASSWORD, "owner")
    with pytest.raises(InputError, match="at least"):
        create_user(reviews, "alice", "short", "admin")
    user = create_user(reviews, "alice", PASSWORD, "admin")
    assert user.password_hash.startswith("$argon2") and PASSWORD not in user.password_hash
    with pytest.raises(Conflict):
        create_user(reviews, "alice", PASSWORD, "reviewer")


def test_the_audit_log_only_grows(reviews: ReviewStore) -> None:
    reviews.audit("usr_1", "view", "item:1", None, {"decision": "review"})
    reviews.audit("usr_1", "decide", "item:1", {"decision": "review"}, {"action": "block"})
    entries = reviews.audit_entries(newest_first=False)
    assert [(e.action, e.before, e.after) for e in entries] == [
        ("view", None, {"decision": "review"}), ("decide", {"decision": "review"}, {"action": "block"})]
    assert not [name for name in dir(ReviewStore) if "audit" in name and ("delete" in name or "update" in name)]
    assert AuditEntry.__tablename__ == "audit"


def test_export_writes_a_labelled_folder_that_icm_eval_reads(reviews: ReviewStore, tmp_path: Path) -> None:
    alice, bob = _users(reviews, "alice", "bob")
    images = DatabaseImages(reviews.store)  # kept in the database (ICM_KEEP_IMAGES=database)
    rows = [_stored(reviews.store, images, "review", {"nudity": "uncertain", "spam": "violates"}) for _ in range(3)]
    for row, (label, action) in zip(rows, [("violates", "block"), ("complies", "allow"), ("complies", "allow")],
                                    strict=True):
        item = reviews.enqueue(row, "review")
        reviews.take(item.id, alice, LEASE)
        reviews.decide(item.id, alice, {"nudity": label}, action, "nudity", "")
    unreviewed = _stored(reviews.store, images, "review", {"nudity": "uncertain"})
    reviews.enqueue(unreviewed, "review")
    summary = export_reviews(reviews, images, tmp_path / "out")
    assert (summary.images, summary.labels, summary.conflicts, summary.missing_images) == (3, 3, 0, 0)
    labels = load_dataset(tmp_path / "out")
    assert sorted((label.rule_id, label.verdict) for label in labels) == [
        ("nudity", "complies"), ("nudity", "complies"), ("nudity", "violates")]
    for label in labels:
        assert (tmp_path / "out" / label.image).is_file()
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert sorted(p["image"] for p in predictions) == sorted(label.image for label in labels)
    assert unreviewed.sha256 not in (tmp_path / "out" / "labels.jsonl").read_text()
    _ = bob


def test_stats_give_kappa_per_rule_confusion_throughput_and_queue_age(reviews: ReviewStore, tmp_path: Path) -> None:
    alice, bob = _users(reviews, "alice", "bob")
    # four double-reviewed items: the reviewers agree on three of them
    for model, a, b in [("violates", "violates", "violates"), ("complies", "complies", "complies"),
                        ("violates", "violates", "complies"), ("complies", "complies", "complies")]:
        item = reviews.enqueue(_stored(reviews.store, tmp_path, "review", {"nudity": model}), "review", needed=2)
        reviews.take(item.id, alice, LEASE)
        reviews.take(item.id, bob, LEASE)
        reviews.decide(item.id, alice, {"nudity": a}, "review", None, "")
        reviews.decide(item.id, bob, {"nudity": b}, "review", None, "")
    reviews.enqueue(_stored(reviews.store, tmp_path, "review", {"nudity": "uncertain"}), "review")
    stats = compute_stats(reviews)
    (rule,) = stats.rules
    assert rule.pairs == 4 and rule.reviewer_agreement == 0.75
    assert rule.reviewer_kappa == pytest.approx(0.5)  # po 0.75, pe 0.5
    assert rule.judged == 8 and rule.confusion["violates"] == {"violates": 3, "complies": 1}
    assert rule.confusion["complies"] == {"violates": 0, "complies": 4}
    assert {(t.user_id, t.total, t.last_day) for t in stats.reviewers} == {(alice, 4, 4), (bob, 4, 4)}
    assert stats.open_items == 1 and stats.oldest_hours is not None and stats.oldest_hours < 1


class _Unreachable:
    """A backend whose model server is down: every image it is asked about fails."""

    name = "unreachable"
    supports_images = True
    supports_logprobs = False

    def info(self) -> Any:
        from icm.results import BackendInfo

        return BackendInfo(name=self.name)

    def prepare(self, policy: Any) -> None:
        pass

    def judge(self, image: Any, policy: Any) -> Any:
        from icm.errors import ModelError

        raise ModelError("connection refused")

    def close(self) -> None:
        pass


def test_replay_names_every_kept_image_it_could_not_judge_and_why(reviews: ReviewStore, tmp_path: Path) -> None:
    from serve.live import FAST_POLICY, png_bytes

    from icm.policy import load_policy
    from icm.serve.review.replay import replay

    images = DiskImages(tmp_path)
    broken = _stored(reviews.store, images, "review", {"nsfw": "uncertain"})  # its kept bytes are no image
    fine = _stored(reviews.store, images, "review", {"nsfw": "uncertain"})
    assert fine.sha256 is not None
    images.path(fine.sha256).write_bytes(png_bytes(1))  # a real image in its place
    report = replay(reviews, images, load_policy(FAST_POLICY), _Unreachable(), policy_id="kids")  # type: ignore[arg-type]
    assert report.judged == 0 and report.errors == 2
    failures = {f["result_id"]: f for f in report.to_dict()["failures"]}
    assert set(failures) == {broken.id, fine.id}
    assert failures[broken.id]["code"] == "not_an_image"
    assert failures[fine.id]["code"] == "backend_error" and "connection refused" in failures[fine.id]["message"]


def test_export_names_each_image_by_its_format(reviews: ReviewStore, tmp_path: Path) -> None:
    """A camera's MPO is a .jpg (not an unknown .img that icm eval warns about), a BMP a .bmp."""
    (alice,) = _users(reviews, "alice")
    for fmt in ["MPO", "BMP"]:
        item = reviews.enqueue(_stored(reviews.store, tmp_path, "review", {"nudity": "uncertain"}, fmt), "review")
        reviews.take(item.id, alice, LEASE)
        reviews.decide(item.id, alice, {"nudity": "complies"}, "allow", "nudity", "")
    export_reviews(reviews, DiskImages(tmp_path), tmp_path / "out")
    assert sorted(p.suffix for p in (tmp_path / "out" / "images").iterdir()) == [".bmp", ".jpg"]


def test_a_decision_a_change_and_an_undo_write_their_audit_entries(reviews: ReviewStore, tmp_path: Path) -> None:
    (alice,) = _users(reviews, "alice")
    row = _stored(reviews.store, tmp_path, "review", {"nudity": "uncertain"})
    item = reviews.enqueue(row, "review")
    reviews.take(item.id, alice, LEASE)
    first, _ = reviews.decide(item.id, alice, {"nudity": "violates"}, "block", "nudity", "")
    second, _ = reviews.decide(item.id, alice, {"nudity": "complies"}, "allow", "nudity", "second look")
    entries = [e for e in reviews.audit_entries(newest_first=False) if e.target == f"item:{item.id}"]
    assert [e.action for e in entries] == ["decide", "change"]
    assert entries[0].actor == alice
    assert entries[0].before == {"decision": "review", "verdicts": {"nudity": "uncertain"}}
    assert entries[0].after == {"review": first.id, "action": "block", "labels": {"nudity": "violates"},
                                "reason_rule": "nudity", "note": ""}
    assert entries[1].before is not None and entries[1].before["review"] == first.id
    assert entries[1].after is not None and entries[1].after["review"] == second.id

    other = reviews.enqueue(_stored(reviews.store, tmp_path, "review", {"nudity": "uncertain"}), "review")
    reviews.take(other.id, alice, LEASE)
    decided, _ = reviews.decide(other.id, alice, {"nudity": "complies"}, "allow", "nudity", "")
    reviews.undo(other.id, alice, timedelta(minutes=1), LEASE)
    (undone,) = [e for e in reviews.audit_entries() if e.action == "undo"]
    assert undone.target == f"item:{other.id}" and undone.before is not None
    assert undone.before["review"] == decided.id and undone.after is None


def test_a_decision_and_its_audit_entry_are_one_transaction(tmp_path: Path) -> None:
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'one.db'}"
    migrate(url)
    store = Store(url)
    try:
        reviews = ReviewStore(store)
        (alice,) = _users(reviews, "alice")
        item = reviews.enqueue(_stored(store, tmp_path, "review", {"nudity": "uncertain"}), "review")
        reviews.take(item.id, alice, LEASE)
        with store.engine.begin() as connection:  # the database refuses every audit entry from now on
            connection.execute(text("CREATE TRIGGER no_audit BEFORE INSERT ON audit "
                                    "BEGIN SELECT RAISE(ABORT, 'no audit today'); END"))
        with pytest.raises(Exception, match="no audit today"):
            reviews.decide(item.id, alice, {"nudity": "violates"}, "block", "nudity", "")
        assert reviews.reviews() == []  # no decision without its audit entry
        assert reviews.lease_of(item.id, alice) is not None  # and the lease is still the reviewer's
    finally:
        store.close()


def test_accounts_made_from_python_are_audited(reviews: ReviewStore) -> None:
    from icm.serve.review.accounts import set_disabled, set_password

    user = create_user(reviews, "alice", PASSWORD, "admin")
    set_password(reviews, "alice", "another long password", actor="ops")
    set_disabled(reviews, "alice", True)
    entries = reviews.audit_entries(newest_first=False)
    assert [(e.actor, e.action) for e in entries] == [("library", "user_created"), ("ops", "password_set"),
                                                      ("library", "user_disabled")]
    assert entries[0].target == f"user:{user.id}" and entries[0].after == {"username": "alice", "role": "admin"}
    assert entries[2].before == {"disabled": False} and entries[2].after == {"disabled": True, "sessions_ended": 0}
