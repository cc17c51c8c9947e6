"""Moderation results made without a backend: the verdicts a test names, decided by the policy."""

from __future__ import annotations

from icm.decision import decide, explain_decision
from icm.policy.schema import Policy
from icm.results import BackendInfo, ModerationResult, PolicyRef, RuleVerdict, Verdict


def result_of(policy: Policy, violated: set[str], uncertain: set[str] = frozenset()) -> ModerationResult:  # type: ignore[assignment]
    verdicts = [
        RuleVerdict(
            rule_id=r.id,
            verdict=(Verdict.violates if r.id in violated
                     else Verdict.uncertain if r.id in uncertain else Verdict.complies),
            probability=0.9 if r.id in violated else 0.1,
            explanation=f"The image shows what rule {r.id} forbids." if r.id in violated else "",
        )
        for r in policy.rules
    ]
    decision = decide(policy, verdicts)
    return ModerationResult(
        image="photos/a.jpg", sha256="0" * 64, policy=PolicyRef(id=policy.id, version=policy.version),
        decision=decision, verdicts=verdicts, explanation=explain_decision(policy, verdicts, decision),
        backend=BackendInfo(name="local"),
    )
