"""What every data-engine stage is: one item in, one :class:`StageResult` out.

The pipeline is a list of stages; it hands each stage the records the previous one passed on and
adds every result to the stage's :class:`StageReport`. A stage that calls a model caches each
item's answer on disk (:mod:`icm.datagen.cache`), so a killed run resumes where it stopped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out")


@dataclass
class StageResult(Generic[Out]):
    """One item's pass through a stage: the record that goes on, and what the report counts.

    Counts are in the stage's own units: images for most stages, questions for the question
    filter, samples out of augment. By default one unit went in, and one came out unless the
    item was rejected.
    """

    record: Out | None  # what the next stage gets; None: the item stops here
    rejected: str | None = None  # why the stage produced nothing for the item
    cached: bool = False
    tokens: int = 0
    error: str | None = None  # what went wrong, for the report, when a model call failed
    inputs: int = 1
    outputs: int | None = None  # None: 1, or 0 when rejected
    rejections: Counter[str] = field(default_factory=Counter)  # units rejected, by reason
    notes: Counter[str] = field(default_factory=Counter)  # anything else the stage counts

    def __post_init__(self) -> None:
        if self.rejected is not None and not self.rejections:
            self.rejections = Counter({self.rejected: 1})
        if self.outputs is None:
            self.outputs = 0 if self.rejected is not None or self.record is None else 1


class Stage(Protocol[In, Out]):
    #: the stage's name in the report (and in its cache keys)
    name: str
    #: whether it calls a model: such stages run ``concurrency`` items at a time, with a progress bar
    calls_model: bool

    def run(self, item: In) -> StageResult[Out]: ...


@dataclass
class StageReport:
    inputs: int = 0
    outputs: int = 0
    cached: int = 0
    tokens: int = 0
    seconds: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # the first few distinct error messages
    notes: Counter[str] = field(default_factory=Counter)

    def add(self, result: StageResult[Any]) -> None:
        """Count one result (called on one thread only, so the counters need no lock)."""
        self.inputs += result.inputs
        self.outputs += result.outputs or 0
        self.cached += int(result.cached)
        self.tokens += result.tokens
        self.rejected.update(result.rejections)
        self.notes.update(result.notes)
        if result.error is not None and len(self.errors) < 5 and result.error not in self.errors:
            self.errors.append(result.error)

    def as_dict(self) -> dict[str, Any]:
        report = {"in": self.inputs, "out": self.outputs, "cached": self.cached, "tokens": self.tokens,
                  "seconds": round(self.seconds, 2), "rejected": dict(self.rejected)}
        if self.notes:
            report["notes"] = dict(self.notes)
        return {**report, "errors": self.errors} if self.errors else report
