"""A reviewer's decision on an item, checked: the per-rule labels they chose, the action those
labels call for, and the contradictions that are refused rather than stored (every decision
becomes a training and calibration label, so it must say what the reviewer meant)."""

from __future__ import annotations

from dataclasses import dataclass

from icm.errors import InputError
from icm.policy.schema import Action, Policy, strictest
from icm.results import ModerationResult

# what a reviewer may decide: ``review`` is the model's way of asking a person, never an answer
FINAL_ACTIONS = [a.value for a in Action if a is not Action.review]
LABELS = ("violates", "complies")


@dataclass(frozen=True)
class Decision:
    labels: dict[str, str]
    action: str
    reason_rule: str | None
    note: str


def rule_actions(result: ModerationResult, policy: Policy | None) -> dict[str, str]:
    """Each judged rule's own action (``review`` for a question asked with the request, which has
    no rule in the policy)."""
    known = {rule.id: rule.action.value for rule in policy.rules} if policy is not None else {}
    return {v.rule_id: known.get(v.rule_id, Action.review.value) for v in result.verdicts}


def labelled_action(labels: dict[str, str], actions: dict[str, str]) -> str | None:
    """The action the labels call for: the strictest action of the rules labelled violates, or
    allow once every rule is labelled complies; None while that is not settled (a rule still
    unlabelled and none violated, or a violated rule whose own action is only ``review``)."""
    violated = [Action(actions[rule_id]) for rule_id, label in labels.items() if label == "violates"]
    if violated:
        action = strictest(violated)
        return None if action is Action.review else action.value
    if len(labels) == len(actions) and all(label == "complies" for label in labels.values()):
        return Action.allow.value
    return None


def check_decision(form: dict[str, str], result: ModerationResult, policy: Policy | None) -> Decision:
    """The labels, action, reason rule and note of a posted decision form; InputError (400) with
    the reason when the form contradicts itself."""
    actions = rule_actions(result, policy)
    labels = {}
    for rule_id in actions:
        value = form.get(f"rule:{rule_id}", "")
        if value not in ("", *LABELS):
            raise InputError(f"rule {rule_id}: choose violates or complies, not {value!r}")
        if value:
            labels[rule_id] = value
    follows = labelled_action(labels, actions)
    action = form.get("action", "") or follows or ""
    if action == Action.review.value:
        raise InputError("review is not a reviewer's decision: choose " + ", ".join(FINAL_ACTIONS))
    if action not in FINAL_ACTIONS:
        raise InputError("choose an action: " + ", ".join(FINAL_ACTIONS))
    violated = [rule_id for rule_id, label in labels.items() if label == "violates"]
    if action != Action.allow.value and not violated:
        raise InputError(f"{action} rests on a broken rule, and no rule is labelled violates: mark the rule(s) "
                         "it rests on as violates, or choose allow")
    reason_rule = form.get("reason_rule") or None
    if reason_rule is not None:
        if reason_rule not in actions:
            raise InputError(f"the reason names rule {reason_rule!r}, which this result does not have")
        if action != Action.allow.value and labels.get(reason_rule) != "violates":
            raise InputError(f"{action} rests on rule {reason_rule}, which is not labelled violates: label it "
                             "violates or choose another reason")
    note = form.get("note", "").strip()[:4000]
    model = result.decision.value
    if action != model and model != Action.review.value and reason_rule is None:
        raise InputError(f"changing the model's decision ({model} to {action}) needs a reason: "
                         "choose the rule it rests on (and add a note if you like)")
    if follows is not None and action != follows and reason_rule is None:
        raise InputError(f"the labels call for {follows}; choosing {action} instead needs a reason: choose the "
                         "rule it rests on (and add a note if you like)")
    return Decision(labels, action, reason_rule, note)
