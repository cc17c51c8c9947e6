"""`icm data import-icm` on the release sample: counts a person can check by reading the files."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ICM_RELEASE
from typer.testing import CliRunner

from icm.cli.app import app
from icm.datagen.dataset import read_samples
from icm.datagen.importers.icm_release import import_icm_release
from icm.policy.categories import category_from_filename


def test_category_from_release_file_names() -> None:
    assert category_from_filename("upper_bust_202207201106175520_v2.jpg.txt") == "upper_bust"
    assert category_from_filename("bite_finger_20231122110742_1537.JPEG.txt") == "bite_finger"
    assert category_from_filename("sexy_imagetext_202401170000000159.jpg") == "sexy_imagetext"
    assert category_from_filename("holiday.jpg") is None


def test_import_counts_match_the_files() -> None:
    samples, report = import_icm_release(ICM_RELEASE / "raw")
    counts = report.as_dict()
    # 105 images, 3 per category (README of the fixtures), 35 categories.
    assert (counts["images"], counts["categories"]) == (105, 35)
    # 105 reason files; wearing_bras_20231207094925_232.JPG.txt is empty (0 bytes), and 6 loop (a run
    # of 10 to 22 words said twice: looping as icm.repetition defines it for evaluation too): 98.
    assert counts["explanation"] == 98
    assert counts["rejected"]["empty explanation"] == 1
    assert counts["rejected"]["degenerate repetition"] == 6
    # Raw rows (see test_tables): 680 yes/no, 238 what, 240 how, 511 multiple choice. Kept rows plus
    # rows rejected as duplicate or unanswerable add back up to them.
    kept_qa = counts["yes_no"] + counts["what"] + counts["how"]
    kept_mc = counts["multiple_choice"]
    rejected = counts["rejected"]
    assert kept_qa + kept_mc + rejected["duplicate question"] + rejected["unanswerable question"] + rejected[
        "duplicate choices"] == 680 + 238 + 240 + 511
    # Unanswerable rows, found by reading: answers saying "not specified in the description" (6)
    # and "A white object (unknown)" (1).
    assert rejected["unanswerable question"] == 7
    assert counts["yes_no"] == 653 and counts["multiple_choice"] == 506
    assert len(samples) == kept_qa + kept_mc + counts["explanation"]


def test_labels_follow_the_rule_set() -> None:
    r1, _ = import_icm_release(ICM_RELEASE / "raw", policy="icm-r1")
    r4, _ = import_icm_release(ICM_RELEASE / "raw", policy="icm-r4")
    label = lambda samples, category: {s.meta.label for s in samples if s.meta.category == category}  # noqa: E731
    # Under R1 (under 13, conservative) only the *_normal categories comply.
    assert label(r1, "whole_leg") == {"violates"} and label(r1, "upper_normal") == {"complies"}
    # Under R4 (over 13, open) bare legs comply.
    assert label(r4, "whole_leg") == {"complies"}
    explanation = next(s for s in r1 if s.meta.kind == "explanation" and s.meta.category == "whole_leg")
    assert "violates exposed-skin" in explanation.messages[-1].text
    mc = next(s for s in r1 if s.meta.kind == "multiple_choice")
    assert mc.messages[-1].text in {"A", "B", "C", "D"}
    assert "\nA. " in mc.messages[0].text and "\nD. " in mc.messages[0].text


def test_cli_json_and_dataset_splits_by_image(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        app, ["data", "import-icm", str(ICM_RELEASE / "raw"), "--out", str(out), "--json", "--validation", "0.2"]
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert {"yes_no", "what", "how", "multiple_choice", "explanation", "rejected"} <= set(counts)
    train, validation = read_samples(out, "train"), read_samples(out, "validation")
    assert len(train) + len(validation) == sum(counts[k] for k in ("yes_no", "what", "how", "multiple_choice",
                                                                   "explanation"))
    assert validation and not {s.meta.image_id for s in train} & {s.meta.image_id for s in validation}
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["policy"] == "icm-r1" and manifest["import"] == counts
