"""Labels files: one reader for evaluation and calibration, errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icm.errors import InputError
from icm.labels import ANY_RULE, Label, LabelFileError, load_labels, write_labels


def _write(path: Path, *lines: object) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_labels_are_read_as_written_and_written_back(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "labels.jsonl",
        {"image": "img/a.jpg", "rule_id": "nudity", "label": " Violates ", "category": "upper_bust"},
        "",
        {"image": "b.jpg", "rule_id": ANY_RULE, "label": "complies", "category": ""},
    )
    labels = load_labels(path)
    assert labels == [Label("img/a.jpg", "nudity", True, "upper_bust"), Label("b.jpg", "*", False)]
    assert [lb.verdict for lb in labels] == ["violates", "complies"]
    assert labels[1].to_record() == {"image": "b.jpg", "rule_id": "*", "label": "complies"}
    copy = tmp_path / "copy.jsonl"
    write_labels(labels, copy)
    assert load_labels(copy) == labels


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], r"labels.jsonl:1: not valid JSON"),
        ([{"image": "a.jpg", "rule_id": "r"}], r"labels.jsonl:1: missing label"),
        ([{"image": "a.jpg", "rule_id": "r", "label": "unsafe"}], r"labels.jsonl:1: label must be"),
        ([{"image": "a.jpg", "rule_id": "r", "label": "violates"}] * 2,
         r"labels.jsonl:2: duplicate label for image 'a.jpg' and rule 'r' \(first on line 1\)"),
        ([""], r"labels.jsonl: no labels"),
    ],
)
def test_bad_labels_files_name_the_line(tmp_path: Path, lines: list[object], message: str) -> None:
    path = _write(tmp_path / "labels.jsonl", *lines)
    with pytest.raises(LabelFileError, match=message):
        load_labels(path)


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="cannot read"):
        load_labels(tmp_path / "labels.jsonl")


def test_a_wing_reads_labels_with_its_own_input_error(tmp_path: Path) -> None:
    class WingInputError(InputError):
        pass

    path = _write(tmp_path / "labels.jsonl", {"image": "a.jpg", "rule_id": "r", "label": "maybe"})
    with pytest.raises(WingInputError, match=r"labels.jsonl:1: label must be"):
        load_labels(path, error=WingInputError)
    with pytest.raises(WingInputError, match="cannot read"):
        load_labels(tmp_path / "none.jsonl", error=WingInputError)
