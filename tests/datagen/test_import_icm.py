"""`icm data import-icm` on the release sample: counts a person can check by reading the files."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import ICM_RELEASE
from typer.testing import CliRunner

from icm.cli.app import app
from icm.datagen.dataset import read_samples
from icm.datagen.importers.icm_release import ReleaseError, import_icm_release
from icm.datagen.sample import Sample
from icm.policy.categories import category_from_filename

KINDS = {"yes_no", "what", "how", "multiple_choice", "explanation"}


def test_category_from_release_file_names() -> None:
    assert category_from_filename("upper_bust_202207201106175520_v2.jpg.txt") == "upper_bust"
    assert category_from_filename("bite_finger_20231122110742_1537.JPEG.txt") == "bite_finger"
    assert category_from_filename("sexy_imagetext_202401170000000159.jpg") == "sexy_imagetext"
    assert category_from_filename("holiday.jpg") is None


def test_import_counts_match_the_files() -> None:
    samples, report = import_icm_release(ICM_RELEASE / "raw")
    counts = report.as_dict()
    kept = counts["kept"]
    # 105 images, 3 per category (README of the fixtures), 35 categories.
    assert (counts["images"], counts["categories"]) == (105, 35)
    # 105 reason files; wearing_bras_20231207094925_232.JPG.txt is empty (0 bytes): 104 explanations
    # read, and 6 loop (a run of 10 to 22 words said twice: looping as icm.repetition defines it for
    # evaluation too): 98 kept.
    assert counts["read"]["explanation"] == 104
    assert kept["explanation"] == 98
    assert counts["images_without_text"] == {"reason": 1, "qa": 0, "mc": 0}
    # Raw rows (see test_tables): 680 yes/no, 238 what, 240 how, 511 multiple choice. Kept rows plus
    # rows rejected as duplicate or unanswerable add back up to them.
    assert counts["read"] == {"explanation": 104, "yes_no": 680, "what": 238, "how": 240, "multiple_choice": 511}
    kept_qa = kept["yes_no"] + kept["what"] + kept["how"]
    kept_mc = kept["multiple_choice"]
    rejected = counts["rejected"]
    assert kept_qa + kept_mc + rejected["duplicate question"] + rejected["unanswerable question"] + rejected[
        "duplicate choices"] == 680 + 238 + 240 + 511
    assert sum(counts["read"].values()) == sum(kept.values()) + rejected["total"]
    # Unanswerable rows, found by reading: answers saying "not specified in the description" (6)
    # and "A white object (unknown)" (1).
    assert rejected["unanswerable question"] == 7
    assert kept["yes_no"] == 653 and kept["multiple_choice"] == 506
    assert len(samples) == kept_qa + kept_mc + kept["explanation"]
    assert Counter(s.meta.kind.value for s in samples) == Counter(kept)


def _published_layout(root: Path, copies: int = 5) -> Path:
    """The paper's repository as published: explanations in reason/1/ .. reason/5/, the same file names."""
    release = root / "data" / "ICM-Instruct_data_generation_pipeline" / "prepare_jsons_for_training"
    for n in range(1, copies + 1):
        shutil.copytree(ICM_RELEASE / "raw" / "reason", release / "reason" / str(n))
    for folder in ("qa", "mc"):
        shutil.copytree(ICM_RELEASE / "raw" / folder, release / folder)
    return release


def _records(samples: list[Sample]) -> list[dict[str, Any]]:
    """The samples' records without the name of the file each explanation came from."""
    records = [s.to_record() for s in samples]
    for record in records:
        record["meta"]["extra"].pop("file", None)
    return records


def test_numbered_copies_of_the_published_repository_count_once(tmp_path: Path) -> None:
    flat, flat_report = import_icm_release(ICM_RELEASE / "raw")
    release = _published_layout(tmp_path)
    # The repository's root and its prepare_jsons_for_training/ folder read the same.
    for given in (tmp_path, release):
        samples, report = import_icm_release(given)
        counts = report.as_dict()
        assert counts["read"] == flat_report.as_dict()["read"]
        assert counts["kept"] == flat_report.as_dict()["kept"]
        assert counts["read"]["explanation"] == 104
        # Five identical copies of 104 explanations: 4 x 104 duplicates; the empty file is empty in each.
        assert counts["duplicate_copies"] == 4 * 104
        assert counts["images_without_text"]["reason"] == 1
        assert _records(samples) == _records(flat)
    explanation = next(s for s in samples if s.meta.kind == "explanation")
    assert explanation.meta.extra["file"] == f"reason/1/{explanation.meta.image_id}.txt"


def test_copies_that_differ_are_each_an_explanation(tmp_path: Path) -> None:
    release = _published_layout(tmp_path)
    name = "upper_bust_202207201106175520_v2.jpg"
    first = (release / "reason" / "1" / f"{name}.txt").read_text(encoding="utf-8")
    (release / "reason" / "3" / f"{name}.txt").write_text(first.replace("woman", "person"), encoding="utf-8")
    (release / "reason" / "4" / f"{name}.txt").write_text("", encoding="utf-8")  # an empty copy is no explanation
    samples, report = import_icm_release(release)
    counts = report.as_dict()
    # 104 + the differing copy read; the 6 that loop (see test_import_counts_match_the_files) rejected
    assert counts["read"]["explanation"] == 105 and counts["kept"]["explanation"] == 99
    assert counts["duplicate_copies"] == 4 * 104 - 2  # copy 3 differs, copy 4 is empty
    mine = [s for s in samples if s.meta.kind == "explanation" and s.meta.image_id == name]
    assert [s.meta.extra["file"] for s in mine] == [f"reason/1/{name}.txt", f"reason/3/{name}.txt"]
    assert "woman" in mine[0].messages[-1].text and "woman" not in mine[1].messages[-1].text


MALFORMED_QA = """\
Here are the questions:
| Type of Question | Question | Answer |
| --- | --- | --- |
| Yes/No | Is she smiling? | Yes. |
| Yes/No | Is the photo in colour or black and white? | Colour. |
| Yes/No |  | Yes. |
| Why | Why is she there? | To pose. |
| What | What is she wearing? | A red dress. |
| What | What is she wearing? | A red dress. |
"""
MALFORMED_MC = """\
| Question | Choices | Answer |
| --- | --- | --- |
| What is she wearing? |A. A dress |B. A coat |C. A bikini |D. A suit |A. |
| What is she holding? |A. A cup |B. A pen |C. A phone |D. A bag |. |
| What is the focus? |A - Her face |B - Her legs |C - A book |D - A couch |B. |
"""


def test_no_filter_keeps_every_row_read(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(ICM_RELEASE / "raw", raw)
    name = "upper_normal_2022072011061799999_v2.jpg"
    (raw / "qa" / f"{name}.txt").write_text(MALFORMED_QA, encoding="utf-8")
    (raw / "mc" / f"{name}.txt").write_text(MALFORMED_MC, encoding="utf-8")
    _, filtered = import_icm_release(raw)
    samples, unfiltered = import_icm_release(raw, filter=False)
    counts, everything = filtered.as_dict(), unfiltered.as_dict()
    # Three yes/no, two what and three multiple-choice rows more than the sample's files; the Why
    # row and the prose line hold no question of a known kind: not read, and counted apart.
    assert counts["read"] == everything["read"] == {
        "explanation": 104, "yes_no": 683, "what": 240, "how": 240, "multiple_choice": 514
    }
    assert counts["unread_lines"] == everything["unread_lines"] == {
        "total": 2, "not a table row": 1, "unknown question type": 1
    }
    assert counts["images_without_text"] == {"reason": 2, "qa": 0, "mc": 0}  # the new image has no explanation
    assert sum(counts["read"].values()) == sum(counts["kept"].values()) + counts["rejected"]["total"]
    rejected = counts["rejected"]
    assert (rejected["yes/no answer is neither yes nor no"], rejected["missing cells"]) == (1, 1)
    assert (rejected["answer is not a letter A-D"], rejected["not four choices A-D"]) == (1, 1)
    assert rejected["duplicate question"] == 42 + 1
    # Unfiltered: kept is read, malformed rows as written, no rejection.
    assert everything["kept"] == everything["read"] and everything["rejected"] == {"total": 0}
    assert everything["filtered"] is False and counts["filtered"] is True
    mine = [(s.meta.kind.value, s.messages[0].text, s.messages[-1].text) for s in samples if s.meta.image_id == name]
    assert ("yes_no", "Is the photo in colour or black and white?", "Colour.") in mine
    assert ("yes_no", "", "Yes.") in mine
    assert [m for m in mine if m[0] == "what"] == [("what", "What is she wearing?", "A red dress.")] * 2
    choices = [(prompt.splitlines()[:5], answer) for kind, prompt, answer in mine if kind == "multiple_choice"]
    assert choices[1] == (["What is she holding?", "A. A cup", "B. A pen", "C. A phone", "D. A bag"], ".")
    assert choices[2] == (["What is the focus?", "A. Her face", "B. Her legs", "C. A book", "D. A couch"], "B")


def test_a_folder_without_the_release_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="none of reason/, qa/, mc/"):
        import_icm_release(tmp_path)
    result = CliRunner().invoke(app, ["data", "import-icm", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "none of reason/, qa/, mc/" in result.output


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
    assert {"read", "kept", "rejected"} <= set(counts)
    assert set(counts["read"]) == set(counts["kept"]) == KINDS
    train, validation = read_samples(out, "train"), read_samples(out, "validation")
    assert len(train) + len(validation) == sum(counts["kept"][k] for k in KINDS)
    assert validation and not {s.meta.image_id for s in train} & {s.meta.image_id for s in validation}
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["policy"] == "icm-r1" and manifest["import"] == counts


def test_cli_reads_a_repository_clone_and_no_filter_keeps_every_row(tmp_path: Path) -> None:
    _published_layout(tmp_path / "ICM-Assistant")
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        app, ["data", "import-icm", str(tmp_path / "ICM-Assistant"), "--out", str(out), "--no-filter", "--json"]
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["kept"] == counts["read"] and counts["rejected"]["total"] == 0
    assert counts["read"]["explanation"] == 104 and counts["duplicate_copies"] == 4 * 104
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["import"] == counts
    written = sum(manifest["splits"][split]["samples"] for split in ("train", "validation"))
    assert written == sum(counts["read"].values())
