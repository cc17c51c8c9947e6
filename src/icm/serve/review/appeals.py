"""Appeals: the statement of reasons that answers an uploader once a reviewer has decided."""

from __future__ import annotations

from icm.policy.schema import Policy
from icm.results import ModerationResult


def statement_of_reasons(result: ModerationResult, policy: Policy | None, labels: dict[str, str], action: str,
                         reason_rule: str | None, note: str) -> str:
    """Plain words for the uploader: the outcome, the rules found violated, the rule the decision
    rests on and the reviewer's note."""
    before = result.decision.value
    outcome = "upheld" if action == before else f"changed from {before} to {action}"
    where = f"{result.policy.id} v{result.policy.version}"
    text = {rule.id: rule.text for rule in policy.rules} if policy is not None else {}
    parts = [f"Appeal reviewed by a person: the decision is {outcome} under policy {where}."]
    violated = [rule_id for rule_id, label in labels.items() if label == "violates"]
    if violated:
        parts.append("Rules found violated: " + "; ".join(
            f"{rule_id} ({text[rule_id]})" if rule_id in text else rule_id for rule_id in violated) + ".")
    else:
        parts.append("No rule was found violated.")
    if reason_rule is not None:
        parts.append(f"The decision rests on rule {reason_rule}.")
    if note:
        parts.append(f"Reviewer's note: {note}")
    return " ".join(parts)
