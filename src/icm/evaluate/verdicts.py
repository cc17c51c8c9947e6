"""Verdict accuracy: labels + predictions -> metrics overall, per rule and per category.

Classification metrics use the judged labels (the covered ones); ``coverage`` says how many
that is, ``uncovered`` why the rest were not judged (uncertain, error, missing) and
``accuracy_all`` counts them as wrong. Probability metrics (ROC-AUC, PR-AUC, ECE, best-F1
threshold) use the judged labels that carry a probability.

>>> from icm.evaluate import evaluate_files                        # doctest: +SKIP
>>> report = evaluate_files("results.jsonl", "labels.jsonl")     # doctest: +SKIP
>>> report.overall.metrics["accuracy"]                            # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icm.evaluate.metrics import (
    BinaryReport,
    Confusion,
    average_precision,
    best_f1_threshold,
    bootstrap_ci,
    roc_auc,
    selective_curve,
    threshold_curve,
)
from icm.evaluate.records import (
    EvalInputError,
    Outcome,
    Status,
    check_labels_match,
    join,
    load_predictions,
)
from icm.labels import load_labels
from icm.reliability import ReliabilityBin, expected_calibration_error, reliability


@dataclass
class Curves:
    """Data behind the report's plots, for the overall group."""

    reliability: list[ReliabilityBin] = field(default_factory=list)
    thresholds: list[dict[str, float]] = field(default_factory=list)
    selective: list[dict[str, float]] = field(default_factory=list)


@dataclass
class VerdictEvaluation:
    name: str
    overall: BinaryReport
    per_rule: dict[str, BinaryReport]
    per_category: dict[str, BinaryReport]
    curves: Curves

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.overall.as_dict(),
            "per_rule": {k: v.as_dict() for k, v in self.per_rule.items()},
            "per_category": {k: v.as_dict() for k, v in self.per_category.items()},
            "reliability": [vars(b) for b in self.curves.reliability],
        }


def summarise(
    outcomes: Sequence[Outcome], *, resamples: int = 1000, seed: int = 0
) -> BinaryReport:
    """The metrics of one group of outcomes."""
    judged = [o for o in outcomes if o.covered]
    uncovered = Counter(o.status.value for o in outcomes if not o.covered)
    y_true = np.array([o.label.violates for o in judged], dtype=bool)
    y_pred = np.array([bool(o.predicted) for o in judged], dtype=bool)
    confusion = Confusion.of(y_true, y_pred)
    scored = [o for o in judged if o.probability is not None]
    s_true = np.array([o.label.violates for o in scored], dtype=bool)
    s_prob = np.array([o.probability for o in scored], dtype=float)
    n = len(outcomes)
    return BinaryReport(
        n=n,
        judged=len(judged),
        uncovered={s.value: uncovered.get(s.value, 0) for s in Status if s is not Status.judged},
        coverage=len(judged) / n if n else None,
        confusion=confusion,
        metrics=confusion.metrics(),
        accuracy_all=(confusion.tp + confusion.tn) / n if n else None,
        ci=bootstrap_ci(y_true, y_pred, resamples=resamples, seed=seed) if resamples else {},
        scored=len(scored),
        roc_auc=roc_auc(s_true, s_prob) if scored else None,
        pr_auc=average_precision(s_true, s_prob) if scored else None,
        ece=expected_calibration_error(s_true, s_prob) if scored else None,
        best_f1_threshold=best_f1_threshold(s_true, s_prob) if scored else None,
    )


def _grouped(
    outcomes: Sequence[Outcome], key: Callable[[Outcome], str | None], resamples: int, seed: int
) -> dict[str, BinaryReport]:
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        name = key(outcome)
        if name is not None:
            groups.setdefault(name, []).append(outcome)
    return {k: summarise(groups[k], resamples=resamples, seed=seed) for k in sorted(groups)}


def evaluate_outcomes(
    outcomes: Sequence[Outcome], *, name: str = "predictions", resamples: int = 1000, seed: int = 0
) -> VerdictEvaluation:
    """Metrics overall, per rule and per category (categories come from the labels)."""
    judged = [o for o in outcomes if o.covered]
    scored = [o for o in judged if o.probability is not None]
    s_true = np.array([o.label.violates for o in scored], dtype=bool)
    s_prob = np.array([o.probability for o in scored], dtype=float)
    s_pred = np.array([bool(o.predicted) for o in scored], dtype=bool)
    curves = Curves(
        reliability=reliability(s_true, s_prob) if scored else [],
        thresholds=threshold_curve(s_true, s_prob) if scored else [],
        selective=selective_curve(s_true, s_pred, s_prob) if scored else [],
    )
    return VerdictEvaluation(
        name=name,
        overall=summarise(outcomes, resamples=resamples, seed=seed),
        per_rule=_grouped(outcomes, lambda o: o.label.rule_id, resamples, seed),
        per_category=_grouped(outcomes, lambda o: o.label.category, resamples, seed),
        curves=curves,
    )


def evaluate_files(
    predictions: str | Path,
    labels: str | Path,
    *,
    name: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> VerdictEvaluation:
    """Read a predictions JSONL and a labels JSONL and evaluate."""
    labelled, predicted = load_labels(labels, error=EvalInputError), load_predictions(predictions)
    check_labels_match(labelled, predicted, labels, predictions)
    outcomes = join(labelled, predicted)
    return evaluate_outcomes(
        outcomes, name=name or Path(predictions).stem, resamples=resamples, seed=seed
    )
