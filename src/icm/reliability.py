"""How well predicted probabilities match outcomes: reliability bins, expected calibration error
(ECE) and the Brier score. Evaluation reports them; calibration fits thresholds to improve them.

Numpy only. A measure of no items is ``None``, never a made-up 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_probability: float | None
    positive_rate: float | None


def reliability(y_true: ArrayLike, probs: ArrayLike, bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins over p(violates); bin i holds lower <= p < upper (the last includes 1)."""
    t = np.asarray(y_true, dtype=bool)
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


def brier_score(y_true: ArrayLike, probs: ArrayLike) -> float | None:
    """The mean squared gap between p(violates) and the outcome (0 or 1)."""
    p = np.asarray(probs, dtype=float)
    if len(p) == 0:
        return None
    return float(np.mean((p - np.asarray(y_true, dtype=float)) ** 2))
