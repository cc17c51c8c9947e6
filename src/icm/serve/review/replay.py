"""Policy replay: judge the store's kept images again under a new policy version (or another
backend) and report what would change, per rule and per decision, and whether the change agrees
with what reviewers decided: the impact of a policy change before it goes live."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from icm.backends.base import Backend
from icm.policy.schema import Policy
from icm.results import ModerationResult
from icm.serve.review.export import final_labels
from icm.serve.store.images import ImageStore
from icm.serve.store.reviews import ReviewStore


@dataclass
class RuleReplay:
    rule_id: str
    judged: int = 0  # images judged under the rule by both the stored and the new policy
    changed: int = 0
    transitions: Counter[str] = field(default_factory=Counter)  # "complies->violates": n
    labelled: int = 0  # of the judged, those with a reviewer's label
    stored_correct: int = 0  # the stored verdict matched the reviewer's label
    new_correct: int = 0


@dataclass
class ReplayReport:
    policy: str
    backend: str
    judged: int = 0
    missing_images: int = 0  # kept results whose image file is gone
    # one per image the new run could not judge (not counted as changes): which, and why
    failures: list[dict[str, Any]] = field(default_factory=list)
    decisions: Counter[str] = field(default_factory=Counter)  # "review->block": n (changes only)
    rules: dict[str, RuleReplay] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)  # one per result whose decision changes

    @property
    def errors(self) -> int:
        return len(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "backend": self.backend, "judged": self.judged,
            "missing_images": self.missing_images, "errors": self.errors,
            "decisions_changed": sum(self.decisions.values()), "decisions": dict(self.decisions),
            "rules": {
                r.rule_id: {"judged": r.judged, "changed": r.changed, "transitions": dict(r.transitions),
                            "labelled": r.labelled, "stored_correct": r.stored_correct, "new_correct": r.new_correct}
                for r in self.rules.values()
            },
            "changes": self.changes,
            "failures": self.failures,
        }


def replay(reviews: ReviewStore, images: ImageStore, policy: Policy, backend: str | Backend = "local",
           policy_id: str | None = None) -> ReplayReport:
    """Judge every kept image last judged under ``policy_id`` (default: the new policy's id) with
    ``policy`` and ``backend``, and compare with the stored results and reviewers' labels."""
    from icm.moderator import Moderator

    outcomes = final_labels(reviews)
    rows = reviews.kept_results(policy_id or policy.id)
    name = backend if isinstance(backend, str) else backend.info().name
    report = ReplayReport(policy=f"{policy.id} v{policy.version}", backend=name)
    moderator = Moderator(policy, backend)
    try:
        for row in rows:
            assert row.sha256 is not None
            data = images.get(row.sha256)
            if data is None:
                report.missing_images += 1
                continue
            new = moderator.moderate(data, str(row.result.get("image", row.sha256)))
            if new.error is not None:
                report.failures.append({"result_id": row.id, "image": new.image, "code": new.error.code.value,
                                        "message": new.error.message})
                continue
            report.judged += 1
            old = ModerationResult.model_validate(row.result)
            labels = outcomes[row.id].labels if row.id in outcomes else {}
            _compare(report, row.id, old, new, labels)
    finally:
        moderator.close()
    return report


def _compare(report: ReplayReport, result_id: str, old: ModerationResult, new: ModerationResult,
             labels: dict[str, str]) -> None:
    before = {v.rule_id: v.verdict.value for v in old.verdicts}
    rule_changes = {}
    for verdict in new.verdicts:
        stats = report.rules.setdefault(verdict.rule_id, RuleReplay(verdict.rule_id))
        was = before.get(verdict.rule_id)
        now = verdict.verdict.value
        if was is None:
            stats.transitions[f"(new rule)->{now}"] += 1
            rule_changes[verdict.rule_id] = f"(new rule)->{now}"
            continue
        stats.judged += 1
        if was != now:
            stats.changed += 1
            stats.transitions[f"{was}->{now}"] += 1
            rule_changes[verdict.rule_id] = f"{was}->{now}"
        label = labels.get(verdict.rule_id)
        if label is not None:
            stats.labelled += 1
            stats.stored_correct += was == label
            stats.new_correct += now == label
    if old.decision != new.decision:
        report.decisions[f"{old.decision.value}->{new.decision.value}"] += 1
        report.changes.append({"result_id": result_id, "image": old.image, "before": old.decision.value,
                               "after": new.decision.value, "rules": rule_changes})
