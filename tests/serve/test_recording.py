"""serve/recording.py on a real SQLite store, no HTTP: which answers go to people, the row and its
queue item written in one transaction, and which images are kept."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from serve.live import FAST_POLICY, png_bytes
from sqlalchemy import text

from icm.policy.load import load_policy
from icm.results import ModerationResult
from icm.serve.judging import Job
from icm.serve.recording import Recorder, choose
from icm.serve.store import Store, migrate
from icm.serve.store.images import DiskImages
from icm.serve.store.reviews import QueueFilter, ReviewStore

POLICY = load_policy(FAST_POLICY)


def _result(decision: str, sha256: str, error: str | None = None) -> ModerationResult:
    data: dict[str, Any] = {
        "image": "a.png", "sha256": sha256, "policy": {"id": POLICY.id, "version": POLICY.version},
        "decision": decision, "backend": {"name": "local"},
        "verdicts": [] if error else [{"rule_id": "nsfw", "verdict": "uncertain" if decision == "review"
                                       else "complies"}],
        "media": {"format": "PNG", "width": 64, "height": 64},
    }
    if error:
        data["error"] = {"code": error, "message": "x"}
    return ModerationResult.model_validate(data)


def _job(data: bytes) -> Job:
    return Job(data=data, name="a.png", policy=POLICY, rules_key="", key_id="key_a", request_id="req_1",
               endpoint="moderate")


@pytest.fixture
def reviews(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'icm-serve.db'}"
    migrate(url)
    store = Store(url)
    yield ReviewStore(store)
    store.close()


def _recorder(reviews: ReviewStore, tmp_path: Path, sample: float = 0.0) -> tuple[Recorder, DiskImages]:
    images = DiskImages(tmp_path / "images")
    return Recorder(reviews, images, "local", sample=sample, double=0.0, rng=random.Random(1)), images


def test_a_review_decision_is_stored_queued_and_its_image_kept(reviews: ReviewStore, tmp_path: Path) -> None:
    recorder, images = _recorder(reviews, tmp_path)
    job = _job(png_bytes(1))
    row = recorder.record(job, _result("review", job.sha256))
    stored = reviews.store.result(row.id)
    assert stored is not None and stored.decision == "review" and stored.key_id == "key_a"
    assert stored.request_id == "req_1" and stored.backend == "local" and stored.image_kept
    ((item, _),) = reviews.open_items(QueueFilter())
    assert item.result_id == row.id and item.kind == "review" and item.needed == 1
    assert item.verdicts == ",nsfw:uncertain,"
    assert images.get(job.sha256) == job.data


def test_an_allowed_result_is_stored_but_neither_queued_nor_kept(reviews: ReviewStore, tmp_path: Path) -> None:
    recorder, images = _recorder(reviews, tmp_path)
    job = _job(png_bytes(2))
    row = recorder.record(job, _result("allow", job.sha256))
    assert reviews.store.result(row.id) is not None
    assert reviews.open_items(QueueFilter()) == []
    assert images.get(job.sha256) is None and not row.image_kept


def test_a_reused_judgement_is_not_queued_again_but_its_image_is_kept(reviews: ReviewStore, tmp_path: Path) -> None:
    recorder, images = _recorder(reviews, tmp_path)
    job = _job(png_bytes(3))
    row = recorder.record(job, _result("review", job.sha256), reused=True)
    assert reviews.open_items(QueueFilter()) == []
    assert row.image_kept and images.get(job.sha256) == job.data


def test_an_upload_that_is_no_image_is_neither_queued_nor_kept(reviews: ReviewStore, tmp_path: Path) -> None:
    recorder, images = _recorder(reviews, tmp_path, sample=1.0)
    job = _job(b"no image at all")
    row = recorder.record(job, _result("review", job.sha256, error="not_an_image"))
    assert row.error_code == "not_an_image" and not row.image_kept
    assert reviews.open_items(QueueFilter()) == [] and images.get(job.sha256) is None
    failed = recorder.record(_job(png_bytes(4)), _result("review", "f" * 64, error="backend_error"))
    ((item, _),) = reviews.open_items(QueueFilter())  # a model failure is worth a person's look
    assert item.result_id == failed.id


def test_the_row_and_its_queue_item_are_one_transaction(reviews: ReviewStore, tmp_path: Path) -> None:
    recorder, _ = _recorder(reviews, tmp_path)
    with reviews.store.engine.begin() as connection:  # the database itself refuses any queue item
        connection.execute(text("CREATE TRIGGER no_queue BEFORE INSERT ON queue_items "
                                "BEGIN SELECT RAISE(ABORT, 'no queue today'); END"))
    job = _job(png_bytes(5))
    with pytest.raises(Exception, match="no queue today"):
        recorder.record(job, _result("review", job.sha256))
    assert reviews.store.count_results() == 0  # no row without its queue item
    recorder.record(job, _result("allow", job.sha256))  # what is not queued is stored as before
    assert reviews.store.count_results() == 1


def test_the_queue_takes_review_decisions_and_a_sample_of_the_others() -> None:
    def result(decision: str, error: str | None = None) -> ModerationResult:
        return _result(decision, "0" * 64, error)

    assert choose(result("review"), 0.0, 0.0) is not None
    assert choose(result("allow"), 0.0, 0.0) is None
    assert choose(result("block"), 1.0, 0.0) == choose(result("allow"), 1.0, 0.0)
    assert choose(result("review", "not_an_image"), 1.0, 1.0) is None
    draws = [choose(result("allow"), 0.3, 0.5, random.Random(seed)) for seed in range(400)]
    sampled = [d for d in draws if d is not None]
    assert 80 < len(sampled) < 160 and {d.needed for d in sampled} == {1, 2}
