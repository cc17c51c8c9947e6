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


# The release sample's figures as the hand-written (numpy) metrics computed them before
# scikit-learn and scipy took over; README: accuracy 0.986 (138/140, interval 0.964-1.000),
# ROC-AUC 0.997, ECE 0.041 under R1.
RELEASE_FIGURES = {
    "R1": {
        "accuracy": 138 / 140, "roc_auc": 0.9974798387096774, "pr_auc": 0.9996752876240779,
        "ece": 0.041115671678610015,
        "ci95": {"accuracy": [0.9642857142857143, 1.0], "precision": [0.974570838765754, 1.0],
                 "recall": [0.974570838765754, 1.0], "f1": [0.979253112033195, 1.0],
                 "balanced_accuracy": [0.8888888888888888, 1.0]},
        "best_f1_threshold": {"threshold": 0.2240554492316947, "precision": 0.9841269841269841,
                              "recall": 1.0, "f1": 0.992},
        "first_point": {"threshold": 0.9874720680072552, "precision": 1.0, "recall": 0.008064516129032258,
                        "f1": 0.016},
    },
    "R2": {
        "accuracy": 80 / 140, "roc_auc": 0.7563733552631579, "pr_auc": 0.6546036523510244,
        "ece": 0.4003490331500699,
        "ci95": {"accuracy": [0.49267857142857163, 0.6571428571428571],
                 "precision": [0.4285426267281106, 0.6065573770491803], "recall": [1.0, 1.0],
                 "f1": [0.5999717514124294, 0.7551020408163265],
                 "balanced_accuracy": [0.5632911392405063, 0.65625]},
        "best_f1_threshold": {"threshold": 0.9600626857930734, "precision": 0.625, "recall": 0.859375,
                              "f1": 0.7236842105263158},
        "first_point": {"threshold": 0.9874720680072552, "precision": 0.0, "recall": 0.0, "f1": 0.0},
    },
}


@pytest.mark.parametrize("rule_set", sorted(RELEASE_FIGURES))
def test_the_release_sample_figures_are_unchanged(release, rule_set: str) -> None:
    from icm.evaluate.paper_predictions import load_paper_predictions, paper_outcomes
    from icm.evaluate.verdicts import evaluate_outcomes

    predictions = load_paper_predictions(release / "eval" / "icm_val_predictions_sample.json")
    evaluation = evaluate_outcomes(paper_outcomes(predictions, rule_set), name=rule_set)
    got, want = evaluation.overall.as_dict(), RELEASE_FIGURES[rule_set]
    for key in ("accuracy", "roc_auc", "pr_auc", "ece", "best_f1_threshold"):
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-15), key
    for metric, interval in want["ci95"].items():
        assert got["ci95"][metric] == pytest.approx(interval, rel=1e-12), metric
    curve = evaluation.curves.thresholds
    assert len(curve) == 125  # one point per distinct score of the 140
    assert curve[0] == pytest.approx(want["first_point"], rel=1e-12)


def test_a_metric_undefined_in_some_resample_has_no_interval() -> None:
    # Nothing is flagged: precision is undefined in every resample, recall in those that draw no
    # violation; accuracy is always defined.
    ci = bootstrap_ci([1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], seed=1)
    assert ci["precision"] is None and ci["recall"] is None
    assert ci["accuracy"] is not None and ci["accuracy"][1] == 1.0
    assert bootstrap_ci([1], [1]) == dict.fromkeys(ci)  # one item: nothing to resample
