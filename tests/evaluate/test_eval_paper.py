"""The paper's released validation predictions, imported and evaluated under R1.

Hand computation on fixtures/icm_release/eval/icm_val_predictions_sample.json (140 images,
35 categories x 4). Under R1 the 4 categories with "normal" in the name (lower_, middle_, upper_,
whole_normal) are negatives: 4 x 4 = 16; the other 31 x 4 = 124 are positives. The file's
sexy_score > 0.5 for 124 images. Reading the negatives, one scores above 0.5:
whole_normal_2022072011061710034 (0.8697) -> 1 FP; reading the positives, one scores below:
whole_leg_2022072011061710068 (0.2241) -> 1 FN. So TP = 124 - 1 = 123, TN = 16 - 1 = 15.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from icm.cli.app import app
from icm.evaluate.paper_predictions import (
    category_of,
    load_category_labels,
    load_paper_predictions,
    paper_outcomes,
)
from icm.evaluate.records import EvalInputError
from icm.evaluate.verdicts import evaluate_outcomes

runner = CliRunner()


@pytest.fixture
def paper_file(release: Path) -> Path:
    return release / "eval" / "icm_val_predictions_sample.json"


def test_categories_from_file_names() -> None:
    assert category_of("upper_bust_2022072011061710820_v2.jpg") == "upper_bust"
    assert category_of("bite_finger_20231122110742_1005.JPEG") == "bite_finger"
    assert category_of("sexy_imagetext_202401170000000025.jpg") == "sexy_imagetext"
    with pytest.raises(ValueError, match="no category prefix"):
        category_of("photo.jpg")


def test_r1_numbers_match_the_hand_computation(paper_file: Path) -> None:
    predictions = load_paper_predictions(paper_file)
    assert len(predictions) == 140 and len({p.category for p in predictions}) == 35
    ev = evaluate_outcomes(paper_outcomes(predictions, "R1"), resamples=500)
    o = ev.overall
    assert (o.confusion.tp, o.confusion.fp, o.confusion.fn, o.confusion.tn) == (123, 1, 1, 15)
    assert o.metrics["accuracy"] == pytest.approx(138 / 140)  # 0.9857; the paper reports 0.987
    assert o.metrics["precision"] == pytest.approx(123 / 124)
    assert o.metrics["recall"] == pytest.approx(123 / 124)
    assert o.metrics["balanced_accuracy"] == pytest.approx((123 / 124 + 15 / 16) / 2)
    # ROC-AUC: the negatives above some positive are 0.8697 (above the positives 0.8019,
    # 0.8056, 0.8222 and 0.2241) and 0.3775 (above 0.2241): 5 discordant pairs of 124 x 16
    assert o.roc_auc == pytest.approx(1 - 5 / 1984)
    # best F1: flag p >= 0.2241 -> TP 124, FP 2 (0.3775, 0.8697), FN 0 -> 248 / 250 = 0.992,
    # above the 246 / 248 = 0.9919 at 0.5
    assert o.best_f1_threshold is not None
    assert o.best_f1_threshold["threshold"] == pytest.approx(0.2240554492316947)
    assert o.best_f1_threshold["f1"] == pytest.approx(0.992)
    assert o.coverage == 1.0
    # per category: whole_normal and whole_leg each got 3 of 4 right, the rest 4 of 4
    wrong = {k: r.metrics["accuracy"] for k, r in ev.per_category.items()
             if r.metrics["accuracy"] != 1.0}
    assert wrong == {"whole_normal": 0.75, "whole_leg": 0.75}
    lo, hi = o.ci["accuracy"]  # type: ignore[misc]
    assert lo < 138 / 140 <= hi


def test_cli_import_then_eval(paper_file: Path, tmp_path: Path) -> None:
    out = runner.invoke(app, ["eval", "import-paper", str(paper_file), "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    first = json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])
    assert first["verdicts"][0]["rule_id"] == "icm-r1"
    evaluated = runner.invoke(app, ["eval", "-p", str(tmp_path / "predictions.jsonl"), "-l",
                                    str(tmp_path / "labels.jsonl"), "--json", "--bootstrap", "50"])
    assert evaluated.exit_code == 0, evaluated.output
    data = json.loads(evaluated.stdout)
    assert data["accuracy"] == pytest.approx(138 / 140)
    assert data["confusion"] == {"tp": 123, "fp": 1, "fn": 1, "tn": 15}
    assert data["per_category"]["whole_normal"]["accuracy"] == 0.75


def test_other_rule_sets_from_the_built_in_policies(paper_file: Path) -> None:
    predictions = load_paper_predictions(paper_file)
    # Under our icm-r2 (under 13, open market) 19 of the 35 categories comply, counted from the
    # category map: 4 *_normal, 4 *_shoulders_and_belly, 2 *_backless, 3 *_leg, bite_finger,
    # bite_lip, pout, tongue, sexy_kiss, wet. 4 images each: 76 negatives of 140.
    r2 = paper_outcomes(predictions, "R2")
    assert r2[0].label.rule_id == "icm-r2"
    assert sum(not o.label.violates for o in r2) == 76
    # The built-in icm-r1 agrees with the release's own R1 rule ("normal" complies) everywhere.
    from icm.evaluate.paper_predictions import builtin_category_labels, r1_label

    categories = {p.category for p in predictions}
    assert builtin_category_labels("R1", categories) == {c: r1_label(c) for c in categories}
    with pytest.raises(EvalInputError, match="no built-in rule set R9"):
        paper_outcomes(predictions, "R9")


def test_other_rule_sets_with_a_mapping(paper_file: Path, tmp_path: Path) -> None:
    predictions = load_paper_predictions(paper_file)
    # a mapping where only the three "leg" categories and the normals comply
    cats = sorted({p.category for p in predictions})
    mapping_file = tmp_path / "r2.json"
    mapping_file.write_text(json.dumps(
        {c: "complies" if ("normal" in c or c.endswith("_leg")) else "violates" for c in cats}))
    outcomes = paper_outcomes(predictions, "R2", load_category_labels(mapping_file))
    assert outcomes[0].label.rule_id == "icm-r2"
    # negatives now 16 + 3 leg categories x 4 = 28
    assert sum(not o.label.violates for o in outcomes) == 28
    del_one = {c: "violates" for c in cats[1:]}
    mapping_file.write_text(json.dumps(del_one))
    with pytest.raises(EvalInputError, match=f"categories missing from the mapping: {cats[0]}"):
        paper_outcomes(predictions, "R2", load_category_labels(mapping_file))


def test_corrupt_entries_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    good = {"image_name": "wet_20231122110742_1.jpg", "logit_yes": 2.0, "logit_no": 0.0,
            "sexy_score": 0.8807970779778823}  # 1 / (1 + e^-2)
    path.write_text(json.dumps([good, {**good, "image_name": "wet_20231122110742_2.jpg",
                                       "sexy_score": 0.3}]))
    with pytest.raises(EvalInputError, match="entry 1: sexy_score 0.3 disagrees"):
        load_paper_predictions(path)
    path.write_text(json.dumps([good, good]))
    with pytest.raises(EvalInputError, match="entry 1: duplicate image_name"):
        load_paper_predictions(path)
    path.write_text(json.dumps([{k: v for k, v in good.items() if k != "sexy_score"}]))
    assert load_paper_predictions(path)[0].probability == pytest.approx(0.8807970779778823)
