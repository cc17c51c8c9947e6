"""Binary classification metrics on numpy arrays (positive class: ``violates``).

The counting metrics (accuracy, precision, recall, F1, balanced accuracy) come from the confusion
counts; the ranking metrics (ROC-AUC, average precision, the threshold curve) from scikit-learn and
the bootstrap intervals from ``scipy.stats.bootstrap``, both imported when first used (the
``eval`` extra). A metric whose denominator is zero (precision with no positive predictions,
ROC-AUC with one class only) is ``None``, never a made-up 0.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from icm.evaluate.textmetrics import require_extra

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


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve: the chance that a random positive outscores a random negative
    (ties count a half)."""
    t = _bools(y_true)
    if t.all() or not t.any():
        return None
    return float(require_extra("sklearn.metrics").roc_auc_score(t, np.asarray(scores, dtype=float)))


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """PR-AUC as average precision: sum over score thresholds of (recall gain) x precision."""
    t = _bools(y_true)
    if not t.any():
        return None
    return float(require_extra("sklearn.metrics").average_precision_score(t, np.asarray(scores, dtype=float)))


def threshold_curve(y_true: ArrayLike, scores: ArrayLike) -> list[dict[str, float]]:
    """Precision, recall and F1 when ``violates`` means score >= t, for every distinct score t
    (highest threshold first)."""
    t = _bools(y_true)
    if len(t) == 0:
        return []
    _, fps, fns, tps, thresholds = require_extra("sklearn.metrics").confusion_matrix_at_thresholds(
        t, np.asarray(scores, dtype=float)
    )
    positives = int(t.sum())
    curve = []
    for tp, fp, fn, threshold in zip(tps.tolist(), fps.tolist(), fns.tolist(), thresholds.tolist(), strict=True):
        curve.append({
            "threshold": float(threshold),
            "precision": tp / (tp + fp),  # at least one item is flagged at a threshold taken from the scores
            "recall": tp / positives if positives else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 0.0,
        })
    return curve


def best_f1_threshold(y_true: ArrayLike, scores: ArrayLike) -> dict[str, float] | None:
    """The threshold with the highest F1; among ties, the highest threshold (fewest flags)."""
    if not _bools(y_true).any():
        return None
    curve = threshold_curve(y_true, scores)
    return max(curve, key=lambda c: (c["f1"], c["threshold"]))


def _counting_metrics(t: NDArray[np.bool_], p: NDArray[np.bool_], axis: int = -1) -> NDArray[np.float64]:
    """CLASSIFICATION_METRICS along ``axis`` (NaN where a denominator is zero): the bootstrap's statistic."""
    tp = np.sum(t & p, axis=axis).astype(float)
    fp = np.sum(~t & p, axis=axis).astype(float)
    fn = np.sum(t & ~p, axis=axis).astype(float)
    tn = np.sum(~t & ~p, axis=axis).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / (tp + fn)
        specificity = tn / (tn + fp)
        balanced = np.where(
            np.isnan(recall), specificity, np.where(np.isnan(specificity), recall, (recall + specificity) / 2)
        )
        return np.stack([
            (tp + tn) / t.shape[axis],
            tp / (tp + fp),
            recall,
            2 * tp / (2 * tp + fp + fn),
            balanced,
        ])


def bootstrap_ci(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap intervals for the classification metrics, resampling items (paired).

    A metric that is undefined in some resample (precision when a resample flags nothing) has no
    interval; so has every metric of fewer than two items.
    """
    t, p = _bools(y_true), _bools(y_pred)
    if len(t) < 2 or resamples < 1:
        return dict.fromkeys(CLASSIFICATION_METRICS)
    stats = require_extra("scipy.stats")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate distribution is reported as no interval
        result = stats.bootstrap(
            (t, p), _counting_metrics, paired=True, vectorized=True, n_resamples=resamples,
            confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
            batch=max(1, 2**24 // len(t)),  # resampled indices held at once: at most 16M
        )
    low, high = result.confidence_interval
    return {
        name: (float(lo), float(hi)) if np.isfinite(lo) and np.isfinite(hi) else None
        for name, lo, hi in zip(CLASSIFICATION_METRICS, low, high, strict=True)
    }


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
