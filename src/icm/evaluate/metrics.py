"""Binary classification metrics on numpy arrays (positive class: ``violates``).

Plain numpy, no scikit-learn at run time; the tests check these against hand computations and
against scikit-learn. A metric whose denominator is zero (precision with no positive
predictions, ROC-AUC with one class only) is ``None``, never a made-up 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "balanced_accuracy")


def _bools(values: ArrayLike) -> NDArray[np.bool_]:
    return np.asarray(values, dtype=bool)


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def of(cls, y_true: ArrayLike, y_pred: ArrayLike) -> Confusion:
        t, p = _bools(y_true), _bools(y_pred)
        return cls(
            tp=int(np.sum(t & p)), fp=int(np.sum(~t & p)), fn=int(np.sum(t & ~p)),
            tn=int(np.sum(~t & ~p)),
        )

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def metrics(self) -> dict[str, float | None]:
        precision = _ratio(self.tp, self.tp + self.fp)
        recall = _ratio(self.tp, self.tp + self.fn)
        specificity = _ratio(self.tn, self.tn + self.fp)
        f1 = _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)
        if recall is not None and specificity is not None:
            balanced: float | None = (recall + specificity) / 2
        else:  # one class only: balanced accuracy is the recall of the class that is there
            balanced = recall if recall is not None else specificity
        return {
            "accuracy": _ratio(self.tp + self.tn, self.n),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "balanced_accuracy": balanced,
            "specificity": specificity,
        }

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _average_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=float)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1  # ties share their mean rank
        start = end + 1
    return ranks


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve: the chance that a random positive outscores a random negative
    (ties count a half), computed exactly from ranks (Mann-Whitney U)."""
    t = _bools(y_true)
    s = np.asarray(scores, dtype=float)
    pos, neg = int(t.sum()), int((~t).sum())
    if pos == 0 or neg == 0:
        return None
    ranks = _average_ranks(s)
    u = ranks[t].sum() - pos * (pos + 1) / 2
    return float(u / (pos * neg))


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """PR-AUC as average precision: sum over score thresholds of (recall gain) x precision."""
    t = _bools(y_true)
    if not t.any():
        return None
    curve = threshold_curve(t, scores)
    recalls = np.array([0.0] + [c["recall"] for c in curve])  # highest threshold first
    precisions = np.array([c["precision"] for c in curve])
    return float(np.sum(np.diff(recalls) * precisions))


def threshold_curve(y_true: ArrayLike, scores: ArrayLike) -> list[dict[str, float]]:
    """Precision, recall and F1 when ``violates`` means score >= t, for every distinct score t
    (highest threshold first)."""
    t = _bools(y_true)
    s = np.asarray(scores, dtype=float)
    curve = []
    positives = int(t.sum())
    for threshold in np.unique(s)[::-1]:
        flagged = s >= threshold
        tp = int(np.sum(flagged & t))
        fp = int(np.sum(flagged & ~t))
        precision = tp / (tp + fp)  # at least one item is flagged at a threshold taken from s
        recall = tp / positives if positives else 0.0
        f1 = 2 * tp / (2 * tp + fp + (positives - tp)) if (tp + fp + positives) else 0.0
        curve.append(
            {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1}
        )
    return curve


def best_f1_threshold(y_true: ArrayLike, scores: ArrayLike) -> dict[str, float] | None:
    """The threshold with the highest F1; among ties, the highest threshold (fewest flags)."""
    if not _bools(y_true).any():
        return None
    curve = threshold_curve(y_true, scores)
    return max(curve, key=lambda c: (c["f1"], c["threshold"]))


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_probability: float | None
    positive_rate: float | None


def reliability(y_true: ArrayLike, probs: ArrayLike, bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins over p(violates); bin i holds lower <= p < upper (the last includes 1)."""
    t = _bools(y_true)
    p = np.asarray(probs, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    out = []
    for i in range(bins):
        member = index == i
        count = int(member.sum())
        out.append(
            ReliabilityBin(
                lower=float(edges[i]),
                upper=float(edges[i + 1]),
                count=count,
                mean_probability=float(p[member].mean()) if count else None,
                positive_rate=float(t[member].mean()) if count else None,
            )
        )
    return out


def expected_calibration_error(y_true: ArrayLike, probs: ArrayLike, bins: int = 10) -> float | None:
    """ECE: the count-weighted mean gap between mean p(violates) and the share of violations,
    over equal-width bins."""
    n = len(np.asarray(probs))
    if n == 0:
        return None
    total = 0.0
    for b in reliability(y_true, probs, bins):
        if b.count and b.mean_probability is not None and b.positive_rate is not None:
            total += b.count / n * abs(b.mean_probability - b.positive_rate)
    return total


def bootstrap_ci(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap intervals for the classification metrics, resampling items."""
    t, p = _bools(y_true), _bools(y_pred)
    n = len(t)
    if n == 0:
        return dict.fromkeys(CLASSIFICATION_METRICS)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    bt, bp = t[idx], p[idx]
    tp = np.sum(bt & bp, axis=1).astype(float)
    fp = np.sum(~bt & bp, axis=1).astype(float)
    fn = np.sum(bt & ~bp, axis=1).astype(float)
    tn = np.sum(~bt & ~bp, axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / (tp + fn)
        specificity = tn / (tn + fp)
        balanced = np.where(
            np.isnan(recall), specificity, np.where(np.isnan(specificity), recall,
                                                    (recall + specificity) / 2)
        )
        samples = {
            "accuracy": (tp + tn) / n,
            "precision": tp / (tp + fp),
            "recall": recall,
            "f1": 2 * tp / (2 * tp + fp + fn),
            "balanced_accuracy": balanced,
        }
    alpha = (1 - confidence) / 2
    out: dict[str, tuple[float, float] | None] = {}
    for name, values in samples.items():
        finite = values[np.isfinite(values)]
        if len(finite) == 0:
            out[name] = None
        else:
            lo, hi = np.quantile(finite, [alpha, 1 - alpha])
            out[name] = (float(lo), float(hi))
    return out


def selective_curve(
    y_true: ArrayLike, y_pred: ArrayLike, probs: ArrayLike
) -> list[dict[str, float]]:
    """Accuracy when only the most confident share of items is kept (confidence = |p - 0.5|):
    one point per kept count, from the single most confident item to all of them."""
    t, p = _bools(y_true), _bools(y_pred)
    confidence = np.abs(np.asarray(probs, dtype=float) - 0.5)
    order = np.argsort(-confidence, kind="mergesort")
    correct = (t == p)[order]
    n = len(correct)
    kept = np.arange(1, n + 1)
    accuracy = np.cumsum(correct) / kept
    return [
        {"coverage": float(k / n), "accuracy": float(a)} for k, a in zip(kept, accuracy, strict=True)
    ]


@dataclass
class BinaryReport:
    """All the verdict metrics of one group of labels (overall, one rule or one category)."""

    n: int
    judged: int
    uncovered: dict[str, int]
    coverage: float | None
    confusion: Confusion
    metrics: dict[str, float | None]
    accuracy_all: float | None  # uncovered labels counted as wrong
    ci: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    scored: int = 0  # judged labels that carry a probability
    roc_auc: float | None = None
    pr_auc: float | None = None
    ece: float | None = None
    best_f1_threshold: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.metrics,
            "n": self.n,
            "judged": self.judged,
            "coverage": self.coverage,
            "uncovered": dict(self.uncovered),
            "accuracy_all": self.accuracy_all,
            "confusion": self.confusion.as_dict(),
            "ci95": {k: list(v) if v is not None else None for k, v in self.ci.items()},
            "scored": self.scored,
            "roc_auc": self.roc_auc,
            "pr_auc": self.pr_auc,
            "ece": self.ece,
            "best_f1_threshold": self.best_f1_threshold,
        }
