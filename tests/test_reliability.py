"""Reliability bins, expected calibration error and the Brier score, by hand."""

from __future__ import annotations

import pytest

from icm.reliability import brier_score, expected_calibration_error, reliability


def test_ece_and_reliability_by_hand() -> None:
    # bin [0.1,0.2): p 0.1, 0.1 labels 0, 1 -> mean p 0.1, rate 0.5, gap 0.4, weight 2/4
    # bin [0.9,1.0]: p 0.9, 1.0 labels 1, 1 -> mean p 0.95, rate 1.0, gap 0.05, weight 2/4
    # ECE = 0.5*0.4 + 0.5*0.05 = 0.225
    y, p = [0, 1, 1, 1], [0.1, 0.1, 0.9, 1.0]
    assert expected_calibration_error(y, p) == pytest.approx(0.225)
    bins = reliability(y, p)
    assert len(bins) == 10 and [b.count for b in bins] == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins[9].mean_probability == pytest.approx(0.95)
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0  # perfectly calibrated


def test_brier_score_by_hand() -> None:
    # (0.1 - 0)^2 + (0.1 - 1)^2 + (0.9 - 1)^2 + (1.0 - 1)^2 = 0.01 + 0.81 + 0.01 + 0 = 0.83; / 4
    assert brier_score([0, 1, 1, 1], [0.1, 0.1, 0.9, 1.0]) == pytest.approx(0.2075)
    assert brier_score([True, False], [1.0, 0.0]) == 0.0


def test_no_items_is_none_not_zero() -> None:
    assert expected_calibration_error([], []) is None and brier_score([], []) is None
    assert [b.count for b in reliability([], [], bins=4)] == [0, 0, 0, 0]


def test_a_probability_on_an_edge_goes_to_the_upper_bin() -> None:
    bins = reliability([1, 0, 1], [0.5, 0.0, 1.0], bins=2)  # [0, 0.5) and [0.5, 1]
    assert [b.count for b in bins] == [1, 2]
