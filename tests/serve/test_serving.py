"""serve/serving on a real SQLite store and the local engine, no HTTP: narrowing a policy, the
questions of a decision as a policy, and one image judged, recorded and reused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve.live import FAST_POLICY, png_bytes, settings_for

from icm.backends.base import Backend
from icm.errors import InputError
from icm.policy.load import load_policy
from icm.policy.schema import Policy
from icm.serve.errors import ImageRejected
from icm.serve.limits import RateLimit
from icm.serve.metrics import Metrics
from icm.serve.protocol import DecisionQuestion
from icm.serve.service import Service, open_service
from icm.serve.serving.decisions import question_policy
from icm.serve.serving.jobs import Asker, judge_image, narrow
from icm.serve.store.reviews import QueueFilter

ASKER = Asker(key_id="key_a", request_id="req_1", endpoint="moderate")


class _Counting:
    """The local engine, counting the policies it is asked to prepare."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.prepared: list[tuple[str, tuple[str, ...]]] = []

    def prepare(self, policy: Policy) -> None:
        self.prepared.append((policy.id, tuple(rule.id for rule in policy.rules)))
        self.inner.prepare(policy)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def service(local_backend: Backend, tmp_path: Path) -> Iterator[tuple[Service, _Counting]]:
    settings = settings_for(f"sqlite:///{tmp_path / 'icm-serve.db'}", tmp_path, policies=[str(FAST_POLICY)],
                            workers=1)
    backend = _Counting(local_backend)
    opened, seeded = open_service(settings, Metrics(), RateLimit(None, "memory://"), backend)  # type: ignore[arg-type]
    opened.judging.load(seeded)
    yield opened, backend
    opened.close()


def test_narrow_keeps_the_policys_order_and_refuses_unknown_rules() -> None:
    policy = load_policy("general")
    ids = [rule.id for rule in policy.rules]
    narrowed, key = narrow(policy, [ids[1], ids[0]])
    assert [rule.id for rule in narrowed.rules] == ids[:2] and key == ",".join(ids[:2])
    assert narrow(policy, None) == (policy, "")
    with pytest.raises(InputError, match="has no rule nope"):
        narrow(policy, ["nope"])


def test_questions_become_the_named_rules_and_ad_hoc_ones() -> None:
    policy = load_policy(FAST_POLICY)
    questions = [
        DecisionQuestion.model_validate({"type": "predicate", "name": "nsfw", "instructions": ""}),
        DecisionQuestion.model_validate({"type": "predicate", "name": "cats", "instructions": "Is there a cat?"}),
    ]
    asked, rule_of, key = question_policy(policy, questions)
    assert [rule.id for rule in asked.rules] == ["nsfw", "question-2"] and rule_of == ["nsfw", "question-2"]
    assert asked.rules[1].text == "Is there a cat?"
    assert key.startswith("nsfw|adhoc:")
    assert question_policy(policy, questions[:1])[2] == "nsfw"
    with pytest.raises(InputError, match="has no instructions"):
        question_policy(policy, [DecisionQuestion.model_validate({"type": "predicate", "name": "x",
                                                                  "instructions": ""})])


def test_an_image_is_judged_recorded_and_reused_with_its_own_warnings(service: tuple[Service, _Counting]) -> None:
    served, backend = service
    data = png_bytes(7)

    async def both() -> Any:
        first = await judge_image(served, ASKER, data, "first.jpg", "fast")
        again = await judge_image(served, ASKER, data, "again.png", "fast")
        fresh = await judge_image(served, ASKER, data, "fresh.png", "fast", fresh=True)
        return first, again, fresh

    first, again, fresh = asyncio.run(both())
    assert not first.cached and again.cached and not fresh.cached
    assert len({first.id, again.id, fresh.id}) == 3
    assert first.result.media["warnings"] == ["file name says .jpg but the content is PNG"]
    assert again.result.image == "again.png" and "warnings" not in again.result.media
    row = served.store.result(again.id)
    assert row is not None and row.endpoint == "moderate" and row.key_id == "key_a"
    assert row.result["image"] == "again.png" and "warnings" not in row.result["media"]
    # the backend prepares the policy when it loads and once for the Moderator of the policy that
    # every batch since shares (two batches judged here: first and fresh), not once a batch
    assert backend.prepared.count(("fast", ("nsfw",))) == 2


def test_an_image_that_cannot_be_judged_raises_with_its_record(service: tuple[Service, _Counting]) -> None:
    served, _ = service
    with pytest.raises(ImageRejected) as refused:
        asyncio.run(judge_image(served, ASKER, b"not an image", "x.png", "fast"))
    assert refused.value.result_id is not None
    row = served.store.result(refused.value.result_id)
    assert row is not None and row.error_code == "not_an_image"
    assert served.reviews.open_items(QueueFilter()) == []
