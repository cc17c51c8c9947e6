"""Verdict metrics on small cases computed by hand, and against scikit-learn on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from icm.evaluate.metrics import (
    Confusion,
    average_precision,
    best_f1_threshold,
    bootstrap_ci,
    roc_auc,
    selective_curve,
    threshold_curve,
)
from icm.reliability import expected_calibration_error

# 8 items: labels and predictions
Y = [1, 1, 1, 0, 0, 0, 0, 1]
P = [1, 1, 0, 1, 0, 0, 0, 1]
# tp = items 0,1,7 = 3; fn = item 2 = 1; fp = item 3 = 1; tn = items 4,5,6 = 3


def test_confusion_and_metrics_by_hand() -> None:
    c = Confusion.of(Y, P)
    assert (c.tp, c.fp, c.fn, c.tn) == (3, 1, 1, 3)
    m = c.metrics()
    assert m["accuracy"] == pytest.approx(6 / 8)  # (3 + 3) / 8
    assert m["precision"] == pytest.approx(3 / 4)  # 3 / (3 + 1)
    assert m["recall"] == pytest.approx(3 / 4)  # 3 / (3 + 1)
    assert m["f1"] == pytest.approx(6 / 8)  # 2*3 / (2*3 + 1 + 1)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx(3 / 4)  # (3/4 + 3/4) / 2


def test_undefined_metrics_are_none_not_zero() -> None:
    m = Confusion.of([0, 0, 1], [0, 0, 0]).metrics()  # nothing flagged
    assert m["precision"] is None
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0  # 2*0 / (0 + 0 + 1)
    one_class = Confusion.of([1, 1], [1, 0]).metrics()
    assert one_class["specificity"] is None
    assert one_class["balanced_accuracy"] == pytest.approx(0.5)  # recall alone: 1/2


def test_roc_auc_with_ties_by_hand() -> None:
    # positives 0.9, 0.4; negatives 0.4, 0.1. Pairs (pos, neg): (0.9,0.4)=1 (0.9,0.1)=1
    # (0.4,0.4)=tie 0.5 (0.4,0.1)=1 -> 3.5 / 4
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert roc_auc([1, 1], [0.2, 0.3]) is None


def test_average_precision_by_hand() -> None:
    # scores desc: 0.9(+) 0.8(-) 0.7(+) 0.1(-); 2 positives.
    # thresholds: 0.9 -> P=1, R=1/2; 0.8 -> P=1/2, R=1/2; 0.7 -> P=2/3, R=1; 0.1 -> P=1/2, R=1
    # AP = (1/2 - 0)*1 + 0*(1/2) + (1 - 1/2)*(2/3) + 0 = 1/2 + 1/3 = 5/6
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)


def test_threshold_curve_and_best_f1_by_hand() -> None:
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]
    curve = threshold_curve(y, s)
    assert [c["threshold"] for c in curve] == [0.9, 0.8, 0.7, 0.1]
    # at 0.7: tp 2, fp 1 -> P 2/3, R 1, F1 = 4 / (4 + 1 + 0) = 0.8
    assert curve[2]["f1"] == pytest.approx(0.8)
    # at 0.9: tp 1, fp 0, fn 1 -> F1 = 2 / (2 + 0 + 1) = 2/3; at 0.1: F1 = 4 / (4 + 2) = 2/3
    best = best_f1_threshold(y, s)
    assert best is not None and best["threshold"] == 0.7 and best["f1"] == pytest.approx(0.8)
    # a tie goes to the higher threshold: y=[1,0,0,1], s=[.9,.8,.7,.6]
    # t=.9: 2/(2+0+1)=2/3; t=.8: 2/(2+1+1)=1/2; t=.7: 2/(2+2+1)=2/5; t=.6: 4/(4+2+0)=2/3
    tie = best_f1_threshold([1, 0, 0, 1], [0.9, 0.8, 0.7, 0.6])
    assert tie is not None and tie["threshold"] == 0.9 and tie["f1"] == pytest.approx(2 / 3)
    assert best_f1_threshold([0, 0], [0.2, 0.4]) is None  # no positive: no F1 to maximise


def test_selective_curve_by_hand() -> None:
    # confidence |p-0.5|: 0.45, 0.05, 0.35 -> order items 0, 2, 1; correct: 1, 0, 1
    points = selective_curve([1, 1, 0], [1, 0, 0], [0.95, 0.45, 0.15])
    assert [p["coverage"] for p in points] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert [p["accuracy"] for p in points] == pytest.approx([1.0, 1.0, 2 / 3])


def test_bootstrap_intervals_bracket_the_estimate_and_are_reproducible() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.5
    pred = np.where(rng.random(200) < 0.8, y, ~y)  # about 80 % right
    ci = bootstrap_ci(y, pred, seed=3)
    accuracy = float(np.mean(y == pred))
    lo, hi = ci["accuracy"]  # type: ignore[misc]
    assert lo < accuracy < hi
    # binomial standard error sqrt(.8*.2/200) = 0.028: a 95 % interval is about 0.11 wide
    assert 0.07 < hi - lo < 0.16
    assert bootstrap_ci(y, pred, seed=3) == ci
    assert bootstrap_ci([], []) == dict.fromkeys(ci)


def test_agrees_with_scikit_learn_on_random_data() -> None:
    from sklearn import metrics as sk

    rng = np.random.default_rng(7)
    y = rng.random(300) < 0.3
    scores = np.round(np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1), 2)  # rounded: many ties
    pred = scores >= 0.5
    m = Confusion.of(y, pred).metrics()
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(sk.precision_score(y, pred))
    assert m["recall"] == pytest.approx(sk.recall_score(y, pred))
    assert m["f1"] == pytest.approx(sk.f1_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, pred))
    assert roc_auc(y, scores) == pytest.approx(sk.roc_auc_score(y, scores))
    assert average_precision(y, scores) == pytest.approx(sk.average_precision_score(y, scores))
    assert not math.isnan(expected_calibration_error(y, scores) or math.nan)
