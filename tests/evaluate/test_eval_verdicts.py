"""Labels + predictions -> outcomes and metrics; bad input names its line; the CLI's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from icm.cli.app import app
from icm.evaluate.records import EvalInputError, Status, join, load_predictions
from icm.evaluate.verdicts import evaluate_files
from icm.labels import load_labels

runner = CliRunner()


@pytest.fixture
def small_case(write_jsonl, result) -> tuple[Path, Path]:
    labels = write_jsonl("labels.jsonl", [
        {"image": "a.jpg", "rule_id": "nudity", "label": "violates", "category": "nude"},
        {"image": "a.jpg", "rule_id": "spam", "label": "complies", "category": "nude"},
        {"image": "b.jpg", "rule_id": "nudity", "label": "complies", "category": "normal"},
        {"image": "b.jpg", "rule_id": "spam", "label": "violates", "category": "normal"},
        {"image": "c.jpg", "rule_id": "nudity", "label": "complies", "category": "normal"},
        {"image": "d.jpg", "rule_id": "nudity", "label": "violates", "category": "nude"},
        {"image": "e.jpg", "rule_id": "nudity", "label": "violates", "category": "nude"},
    ])
    predictions = write_jsonl("predictions.jsonl", [
        result("a.jpg", ("nudity", "violates", 0.9), ("spam", "complies", 0.1)),
        result("b.jpg", ("nudity", "violates", 0.6), ("spam", "uncertain", None)),
        result("c.jpg", ("nudity", "complies", 0.2)),
        result("d.jpg", error=True),
        # e.jpg has no prediction at all
    ])
    return predictions, labels


def test_outcomes_and_metrics_by_hand(small_case: tuple[Path, Path]) -> None:
    predictions, labels = small_case
    outcomes = join(load_labels(labels), load_predictions(predictions))
    assert [o.status for o in outcomes] == [
        Status.judged, Status.judged, Status.judged, Status.uncertain, Status.judged,
        Status.error, Status.missing,
    ]
    ev = evaluate_files(predictions, labels, resamples=200)
    o = ev.overall
    # judged: a/nudity TP, a/spam TN, b/nudity FP, c/nudity TN -> 4 of 7 labels
    assert (o.confusion.tp, o.confusion.fp, o.confusion.fn, o.confusion.tn) == (1, 1, 0, 2)
    assert o.judged == 4 and o.n == 7 and o.coverage == pytest.approx(4 / 7)
    assert o.uncovered == {"uncertain": 1, "error": 1, "missing": 1}
    assert o.metrics["accuracy"] == pytest.approx(3 / 4)
    assert o.metrics["precision"] == pytest.approx(1 / 2)
    assert o.metrics["recall"] == pytest.approx(1.0)
    assert o.accuracy_all == pytest.approx(3 / 7)  # uncovered counted as wrong
    # scored (judged with p): positives {0.9}, negatives {0.1, 0.6, 0.2} -> AUC 1
    assert o.scored == 4 and o.roc_auc == pytest.approx(1.0)
    nudity = ev.per_rule["nudity"]
    # a TP, b FP, c TN judged; d error, e missing
    assert nudity.n == 5 and nudity.judged == 3 and nudity.metrics["accuracy"] == pytest.approx(2 / 3)
    assert ev.per_rule["spam"].uncovered["uncertain"] == 1
    assert ev.per_category["normal"].n == 3  # b/nudity, b/spam, c/nudity
    assert ev.per_category["nude"].uncovered == {"uncertain": 0, "error": 1, "missing": 1}


def test_whole_image_label(write_jsonl, result) -> None:
    labels = write_jsonl("labels.jsonl", [
        {"image": "a.jpg", "rule_id": "*", "label": "violates"},
        {"image": "b.jpg", "rule_id": "*", "label": "complies"},
        {"image": "c.jpg", "rule_id": "*", "label": "complies"},
    ])
    predictions = write_jsonl("p.jsonl", [
        # one rule violated is enough; its probability is the largest
        result("a.jpg", ("x", "complies", 0.2), ("y", "violates", 0.7)),
        result("b.jpg", ("x", "complies", 0.1), ("y", "complies", 0.3)),
        # no violation but one uncertain rule: the image is uncertain
        result("c.jpg", ("x", "complies", 0.1), ("y", "uncertain", None)),
    ])
    outcomes = join(load_labels(labels), load_predictions(predictions))
    assert [(o.status, o.predicted, o.probability) for o in outcomes] == [
        (Status.judged, True, 0.7), (Status.judged, False, 0.3), (Status.uncertain, None, None)
    ]


def test_whole_image_violation_keeps_its_probability_beside_an_unmeasured_rule(write_jsonl, result) -> None:
    """An uncertain rule carries no probability (nothing was measured for it); it cannot lower the
    probability of an image that a violated rule already decides."""
    labels = write_jsonl("labels.jsonl", [
        {"image": "a.jpg", "rule_id": "*", "label": "violates"},
        {"image": "b.jpg", "rule_id": "*", "label": "violates"},
    ])
    predictions = write_jsonl("p.jsonl", [
        result("a.jpg", ("x", "uncertain", None), ("y", "violates", 0.8), ("z", "complies", 0.1)),
        result("b.jpg", ("x", "complies", 0.6), ("y", "violates", None)),  # a violation without one
    ])
    outcomes = join(load_labels(labels), load_predictions(predictions))
    assert [(o.status, o.predicted, o.probability) for o in outcomes] == [
        (Status.judged, True, 0.8), (Status.judged, True, None)
    ]


def test_a_later_line_for_an_image_replaces_the_earlier(write_jsonl, result) -> None:
    path = write_jsonl("p.jsonl", [result("a.jpg", error=True),
                                   result("a.jpg", ("r", "violates", 0.8))])
    assert load_predictions(path)["a.jpg"].verdicts == {"r": ("violates", 0.8)}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "labels.jsonl:2: not valid JSON"),
        ('{"image": "b.jpg", "rule_id": "r"}', "labels.jsonl:2: missing label"),
        ('{"image": "b.jpg", "rule_id": "r", "label": "unsafe"}', "labels.jsonl:2: label must be"),
        ('{"image": "a.jpg", "rule_id": "r", "label": "complies"}',
         "labels.jsonl:2: duplicate label for image 'a.jpg' and rule 'r' (first on line 1)"),
    ],
)
def test_bad_label_lines_are_reported_with_their_line(write_jsonl, line: str, message: str) -> None:
    path = write_jsonl("labels.jsonl", [{"image": "a.jpg", "rule_id": "r", "label": "violates"}, line])
    with pytest.raises(EvalInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_labels(path, error=EvalInputError)  # as the evaluate wing reads them


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"verdicts": []}, "p.jsonl:2: not a moderation result: image: Field required"),
        ({"image": "b", "verdicts": [{"rule_id": "r", "verdict": "maybe"}]}, "p.jsonl:2: .*verdict"),
        ({"image": "b", "verdicts": [{"rule_id": "r", "verdict": "violates", "probability": 1.5}]},
         "p.jsonl:2: .*probability"),
        ({"image": "b", "verdicts": [{"rule_id": "r", "verdict": "violates"},
                                     {"rule_id": "r", "verdict": "complies"}]},
         "p.jsonl:2: two verdicts for rule 'r'"),
    ],
)
def test_bad_prediction_lines_are_reported_with_their_line(write_jsonl, result, row, message) -> None:
    path = write_jsonl("p.jsonl", [result("a", ("r", "violates", 0.5)), row])
    with pytest.raises(EvalInputError, match=message):
        load_predictions(path)


def test_cli_json_has_the_headline_metrics_at_top_level(small_case: tuple[Path, Path]) -> None:
    predictions, labels = small_case
    out = runner.invoke(app, ["eval", "--predictions", str(predictions), "--labels", str(labels),
                              "--json", "--bootstrap", "100"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["accuracy"] == pytest.approx(3 / 4)
    assert data["precision"] == pytest.approx(1 / 2)
    assert data["recall"] == pytest.approx(1.0)
    assert data["f1"] == pytest.approx(2 / 3)  # 2*1 / (2*1 + 1 + 0)
    assert data["coverage"] == pytest.approx(4 / 7)
    lo, hi = data["ci95"]["accuracy"]
    assert 0 <= lo <= 3 / 4 <= hi <= 1
    assert set(data["per_rule"]) == {"nudity", "spam"}


def test_cli_compares_several_prediction_files(small_case, write_jsonl, result) -> None:
    predictions, labels = small_case
    perfect = write_jsonl("perfect.jsonl", [
        result("a.jpg", ("nudity", "violates", 0.9), ("spam", "complies", 0.1)),
        result("b.jpg", ("nudity", "complies", 0.1), ("spam", "violates", 0.9)),
        result("c.jpg", ("nudity", "complies", 0.2)),
        result("d.jpg", ("nudity", "violates", 0.8)),
        result("e.jpg", ("nudity", "violates", 0.7)),
    ])
    out = runner.invoke(app, ["eval", "-p", str(predictions), "-p", str(perfect), "-l", str(labels),
                              "--json", "--bootstrap", "0"])
    assert out.exit_code == 0, out.output
    runs = json.loads(out.stdout)["runs"]
    assert runs["predictions"]["accuracy"] == pytest.approx(3 / 4)
    assert runs["perfect"]["accuracy"] == 1.0 and runs["perfect"]["coverage"] == 1.0
    table = runner.invoke(app, ["eval", "-p", str(predictions), "-p", str(perfect), "-l",
                                str(labels), "--bootstrap", "0"])
    assert "perfect" in table.stdout and "0.750" in table.stdout


def test_cli_bad_input_exits_2_with_the_line(write_jsonl, small_case) -> None:
    predictions, good_labels = small_case
    labels = write_jsonl("bad.jsonl", [{"image": "a", "rule_id": "r", "label": "violates"}, "[1]"])
    out = runner.invoke(app, ["eval", "-p", str(predictions), "-l", str(labels)])
    assert out.exit_code == 2
    assert "bad.jsonl:2: expected a JSON object" in out.stderr
    missing = runner.invoke(app, ["eval", "-p", "nope.jsonl", "-l", str(good_labels)])
    assert missing.exit_code == 2 and "nope.jsonl: cannot read" in missing.stderr


def test_cli_predictions_without_labels_is_a_usage_error(small_case) -> None:
    predictions, _ = small_case
    out = runner.invoke(app, ["eval", "-p", str(predictions)])
    assert out.exit_code == 2 and "--predictions and --labels go together" in out.stderr
