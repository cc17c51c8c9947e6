"""RunSummary: what a run of many images did, the same for the local engine and Ray."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from icm.results import ModerationResult, Verdict


@dataclass
class RunSummary:
    """What a run did: counts by decision, violations and uncertainty per rule, errors, speed.

    ``errors`` counts every image of the run that has no judgement, by code: those that failed
    now, and (``unchanged_errors`` of them) those a resumed run left alone because their file
    failed to decode before and has not changed since.
    """

    judged: int = 0
    skipped: int = 0
    unchanged_errors: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    uncertain: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def images_per_second(self) -> float:
        done = self.judged + self.failed - self.unchanged_errors
        return done / self.seconds if self.seconds > 0 else 0.0

    def add(self, result: ModerationResult) -> None:
        self.decisions[result.decision.value] += 1
        if result.error is not None:
            self.errors[result.error.code.value] += 1
            return
        self.judged += 1
        for verdict in result.verdicts:
            if verdict.verdict is Verdict.violates:
                self.violations[verdict.rule_id] += 1
            elif verdict.verdict is Verdict.uncertain:
                self.uncertain[verdict.rule_id] += 1

    def merge(self, other: RunSummary) -> None:
        """Add the counts of another part of the same run (a Ray write task's share)."""
        self.judged += other.judged
        self.skipped += other.skipped
        self.unchanged_errors += other.unchanged_errors
        self.errors.update(other.errors)
        self.decisions.update(other.decisions)
        self.violations.update(other.violations)
        self.uncertain.update(other.uncertain)

    def as_dict(self) -> dict[str, Any]:
        return {
            "judged": self.judged,
            "skipped": self.skipped,
            "unchanged_errors": self.unchanged_errors,
            "failed": self.failed,
            "errors": dict(self.errors),
            "decisions": dict(self.decisions),
            "violations": dict(self.violations),
            "uncertain": dict(self.uncertain),
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 3),
        }
