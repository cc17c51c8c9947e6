"""From rule verdicts to the image's decision and its explanation."""

from __future__ import annotations

from icm.policy.schema import Action, Policy, strictest
from icm.results import KNOWN_CONTENT, ErrorInfo, RuleVerdict, Verdict

_VERBS = {
    Action.allow: "Allowed",
    Action.review: "Sent to human review",
    Action.blur: "Blurred",
    Action.age_gate: "Age-gated",
    Action.block: "Blocked",
}


def decide(policy: Policy, verdicts: list[RuleVerdict]) -> Action:
    """The strictest action of the violated rules; uncertainty adds the policy's uncertainty action."""
    actions = [policy.rule(v.rule_id).action for v in verdicts if v.verdict is Verdict.violates]
    if any(v.verdict is Verdict.uncertain for v in verdicts):
        actions.append(policy.uncertainty.action)
    return strictest(actions)


def _banks(verdict: RuleVerdict) -> str:
    """" (bank X: content C, distance D)" for a verdict a known-content bank decided, else ""."""
    known = [e for e in verdict.evidence if e.criterion == KNOWN_CONTENT]
    return "".join(
        f" by bank {(e.signal or '').removeprefix('hash:')} (content {e.text}, distance {e.distance})"
        for e in known
    )


def explain_decision(
    policy: Policy, verdicts: list[RuleVerdict], decision: Action, *, settled: bool = False
) -> str:
    """The result's explanation: the decision, the violated rules with their criteria, severity,
    action and probability, and the rules that could not be assessed (not the DSA statement of
    reasons that the review console writes for a reviewed decision). A rule decided by a
    known-content bank names the bank, the content and the distance; ``settled``: the banks alone
    decided, and no model judged the rest."""
    head = f"{_VERBS[decision]} under {policy.id} v{policy.version}"
    violated = [v for v in verdicts if v.verdict is Verdict.violates]
    uncertain = [v for v in verdicts if v.verdict is Verdict.uncertain]
    parts = []
    if violated:
        items = []
        for v in violated:
            rule = policy.rule(v.rule_id)
            criteria = sorted({e.criterion for e in v.evidence})
            why = f" ({', '.join(criteria)})" if criteria else ""
            prob = f", p={v.probability:.2f}" if v.probability is not None else ""
            items.append(f"{rule.id}{why}{_banks(v)} [{rule.severity}, {rule.action}{prob}]")
        parts.append("violates " + "; ".join(items))
    cleared = [v for v in verdicts if v.verdict is Verdict.complies and _banks(v)]
    if cleared:
        parts.append("known benign for " + "; ".join(f"{v.rule_id}{_banks(v)}" for v in cleared))
    if settled:
        parts.append("known content decided it: no model judged the other rules")
    if uncertain:
        parts.append(
            "could not assess "
            + ", ".join(v.rule_id for v in uncertain)
            + f" (uncertainty means {policy.uncertainty.action})"
        )
    if not violated and not uncertain:
        parts.insert(0, f"complies with all {len(verdicts)} rules")
    return f"{head}: " + "; ".join(parts) + "."


def error_statement(policy: Policy, error: ErrorInfo) -> str:
    action = policy.uncertainty.error_action
    return (
        f"Not judged under {policy.id} v{policy.version}: {error.code}: {error.message}. "
        f"{_VERBS[action]} because an image that was not judged is never allowed."
    )
