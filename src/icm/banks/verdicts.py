"""From an image's bank matches to rule verdicts: a deny match decides the rule it names
(``violates``), an allow match the rules it clears (``complies``), each with its evidence
(``criterion: known-content``, ``signal: hash:BANK``, the content id and the distance)."""

from __future__ import annotations

from icm.banks.model import BankKind, Match
from icm.policy.schema import Policy, strictest
from icm.results import KNOWN_CONTENT, Evidence, RuleVerdict, Verdict

_DIHEDRAL = ("", ", rotated 90", ", rotated 180", ", rotated 270", ", mirrored", ", mirrored and rotated 90",
             ", mirrored and rotated 180", ", mirrored and rotated 270")


def evidence(match: Match) -> Evidence:
    """A match as evidence; ``score`` is the PDQ similarity (1 - distance / 256; 1 when exact)."""
    return Evidence(criterion=KNOWN_CONTENT, signal=match.signal, score=round(1 - match.distance / 256, 4),
                    text=match.content_id, distance=match.distance, frame=match.frame or None)


def _describe(match: Match) -> str:
    how = "the same file" if match.distance == 0 else f"PDQ distance {match.distance}"
    copy = _DIHEDRAL[match.dihedral] if 0 <= match.dihedral < len(_DIHEDRAL) else ""
    return f"{match.content_id} in bank {match.bank} ({how}{copy})"


def bank_verdicts(policy: Policy, matches: list[Match]) -> dict[str, RuleVerdict]:
    """The verdicts the matches decide, by rule id. Rules the policy does not have are left out; a
    rule both denied and cleared is denied (a known violation is never cleared by another list)."""
    verdicts: dict[str, RuleVerdict] = {}
    described: dict[int, str] = {}
    rule_ids = {rule.id for rule in policy.rules}
    for kind in (BankKind.deny, BankKind.allow):
        for match in (m for m in matches if m.kind is kind):
            for rule_id in match.rules:
                if rule_id not in rule_ids:
                    continue
                held = verdicts.get(rule_id)
                if held is not None and held.verdict is Verdict.violates and kind is BankKind.allow:
                    continue
                if held is None:
                    held = verdicts[rule_id] = RuleVerdict(
                        rule_id=rule_id,
                        verdict=Verdict.violates if kind is BankKind.deny else Verdict.complies,
                        probability=1.0 if kind is BankKind.deny else 0.0,
                    )
                found = evidence(match)
                described[id(found)] = _describe(match)
                held.evidence.append(found)
    for verdict in verdicts.values():
        what = "known violating content" if verdict.verdict is Verdict.violates else "known benign content"
        verdict.explanation = (f"Matches {what}: " + "; ".join(
            described[id(e)] for e in verdict.evidence) + ".")
    return verdicts


def settles(policy: Policy, decided: dict[str, RuleVerdict]) -> bool:
    """Whether the bank verdicts alone fix the image's decision: a violated rule's action is at
    least as strict as anything the other rules (or uncertainty about them) could add. Then no
    model needs to run."""
    violated = [policy.rule(rule_id).action for rule_id, v in decided.items() if v.verdict is Verdict.violates]
    if not violated:
        return False
    decision = strictest(violated)
    others = [rule.action for rule in policy.rules if rule.id not in decided]
    if not others:
        return True
    could_add = strictest([*others, policy.uncertainty.action])
    return decision.rank >= could_add.rank


def merge(judged: list[RuleVerdict], decided: dict[str, RuleVerdict]) -> list[RuleVerdict]:
    """The backend's verdicts with those the banks decided in their place, in the backend's order;
    bank verdicts for rules the backend did not judge come after."""
    merged = [decided.get(v.rule_id, v) for v in judged]
    seen = {v.rule_id for v in judged}
    merged.extend(v for rule_id, v in decided.items() if rule_id not in seen)
    return merged
