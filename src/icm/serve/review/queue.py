"""Which answered results go to people: every ``review`` decision, a sample of the others for
quality checks, and a share of them reviewed twice, blind."""

from __future__ import annotations

import random
from dataclasses import dataclass

from icm.results import ErrorCode, ModerationResult

# a result that failed because of the model is worth a look; one whose upload is no image is not
_REVIEWABLE_ERRORS = {ErrorCode.backend_error, ErrorCode.model_output, ErrorCode.timeout}


@dataclass(frozen=True)
class QueueChoice:
    kind: str  # review | sample
    needed: int  # 1, or 2 for blind double review


def choose(
    result: ModerationResult, sample: float, double: float, rng: random.Random | None = None
) -> QueueChoice | None:
    """Whether (and how) a freshly judged result enters the review queue."""
    if result.error is not None and result.error.code not in _REVIEWABLE_ERRORS:
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
