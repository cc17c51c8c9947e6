"""Recording an answered request: its stored row, whether people review it (every ``review``
decision, a sample of the others for quality checks, a share of them twice, blind), and the
keeping of its image; the row and its queue item are written in one transaction."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from icm.results import ModerationResult
from icm.serve.store.images import ImageStore
from icm.serve.store.models import BankMatchRow, StoredResult, utcnow
from icm.serve.store.reviews import ReviewStore

if TYPE_CHECKING:
    from icm.serve.judging import Job


@dataclass(frozen=True)
class QueueChoice:
    kind: str  # review | sample
    needed: int  # 1, or 2 for blind double review


def choose(
    result: ModerationResult, sample: float, double: float, rng: random.Random | None = None
) -> QueueChoice | None:
    """Whether (and how) a freshly judged result enters the review queue: a result that failed
    because of the model is worth a look; one whose upload is no image is not."""
    if result.error is not None and not result.error.code.model_failure:
        return None
    if result.decided_by_banks:  # a person's earlier decision, through a bank: not asked again
        return None
    draw = rng or random.Random()
    if result.decision.value == "review":
        kind = "review"
    elif draw.random() < sample:
        kind = "sample"
    else:
        return None
    return QueueChoice(kind, 2 if draw.random() < double else 1)


class Recorder:
    """``record(job, result)``: the one way an answered request is stored."""

    def __init__(self, reviews: ReviewStore, images: ImageStore | None, backend_key: str, *,
                 sample: float = 0.0, double: float = 0.0, rng: random.Random | None = None) -> None:
        self.reviews = reviews
        self.images = images
        self.backend_key = backend_key
        self.sample = sample
        self.double = double
        self.rng = rng

    def record(self, job: Job, result: ModerationResult, reused: bool = False) -> StoredResult:
        """This request's row; a reused judgement is not queued again (its first row was offered
        to people when it was judged), but its image is kept like that row's."""
        queued = None if reused else choose(result, self.sample, self.double, self.rng)
        kept = self.keep_image(job.data, result, queued is not None)
        row = StoredResult(
            id="res_" + uuid.uuid4().hex,
            created_at=utcnow(),
            sha256=result.sha256,
            policy_id=job.policy.id,
            policy_version=job.policy.version,
            rules=job.rules_key,
            backend=self.backend_key,
            key_id=job.key_id,
            request_id=job.request_id,
            endpoint=job.endpoint,
            decision=result.decision.value,
            error_code=result.error.code.value if result.error is not None else None,
            image_kept=kept,
            total_ms=result.timing_ms.get("total"),
            result=result.model_dump(mode="json"),
            source=job.source,
            dsa_facts=job.dsa_facts,
        )
        matches = [BankMatchRow(result_id=row.id, bank=bank, decided=result.decided_by_banks)
                   for bank in result.matched_banks]
        if queued is None:
            return self.reviews.add_result(row, matches=matches)
        return self.reviews.add_result(row, queued.kind, queued.needed, matches)

    def keep_image(self, data: bytes, result: ModerationResult, queued: bool = False) -> bool:
        """Keep, named by its sha256, an image a person may need to see: one sent to review, or a
        judged one whose decision restricts it (an appeal shows it). An upload that could not be
        judged for what it is (no image, truncated, too large) is never queued: its bytes are not
        kept."""
        if self.images is None or result.sha256 is None or not data:
            return False
        if not queued and (result.error is not None or result.decision.value == "allow"):
            return False
        self.images.put(result.sha256, data)
        return True
