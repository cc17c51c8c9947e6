"""Inputs a user plausibly gets wrong: each is one clear error line and exit status 2, never a
traceback or a silent success."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import sample_image
from typer.testing import CliRunner

from icm.cli.app import app

runner = CliRunner()


def _one_clear_error(result, text: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert text in result.stderr, result.stderr


def test_resume_without_out_is_a_usage_error(tmp_path: Path) -> None:
    sample_image("coffee").save(tmp_path / "coffee.jpg")
    result = runner.invoke(app, ["moderate", str(tmp_path), "--resume", "-q"])
    _one_clear_error(result, "--resume continues an --out file")


@pytest.mark.parametrize("kind", ["empty folder", "folder of non-images", "header-only manifest"])
def test_no_images_to_moderate_is_a_usage_error(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "uploads"
    target.mkdir()
    if kind == "folder of non-images":
        (target / "notes.txt").write_text("not an image")
    elif kind == "header-only manifest":
        target = tmp_path / "manifest.csv"
        target.write_text("image,label\n")
    result = runner.invoke(app, ["moderate", str(target), "-q"])
    _one_clear_error(result, f"no images found in {target}")


def test_empty_stdin_is_not_an_error() -> None:
    result = runner.invoke(app, ["moderate", "-", "-q", "-f", "jsonl"], input="")
    assert result.exit_code == 0, result.output


def test_data_generate_with_an_unknown_explaining_model(tmp_path: Path) -> None:
    (tmp_path / "labelled" / "upper_normal").mkdir(parents=True)
    sample_image("coffee").save(tmp_path / "labelled" / "upper_normal" / "coffee.jpg")
    result = runner.invoke(app, [
        "data", "generate", "--images", str(tmp_path / "labelled"), "--out", str(tmp_path / "d"),
        "--mllm", "nosuch", "--limit", "1",
    ])
    _one_clear_error(result, "unknown backend 'nosuch'")


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


def _results(tmp_path: Path) -> Path:
    verdicts = [{"rule_id": "spam-contact", "verdict": "violates", "probability": 0.9}]
    return _write(tmp_path / "results.jsonl", [
        {"image": "photos/flyer.png", "verdicts": verdicts, "error": None},
        {"image": "photos/cat.jpg", "verdicts": [], "error": {"code": "x", "message": "y"}},
    ])


def test_eval_labels_with_a_rule_id_typo(tmp_path: Path) -> None:
    labels = _write(tmp_path / "labels.jsonl", [
        {"image": "photos/flyer.png", "rule_id": "spam-contactt", "label": "violates"},
    ])
    result = runner.invoke(app, ["eval", "-p", str(_results(tmp_path)), "-l", str(labels)])
    _one_clear_error(result, "rule 'spam-contactt' is in no result")
    assert "spam-contact," in result.stderr  # names the rules it could have meant


def test_eval_labels_whose_image_paths_match_no_result(tmp_path: Path) -> None:
    labels = _write(tmp_path / "labels.jsonl", [
        {"image": "flyer.png", "rule_id": "spam-contact", "label": "violates"},
    ])
    result = runner.invoke(app, ["eval", "-p", str(_results(tmp_path)), "-l", str(labels)])
    _one_clear_error(result, "none of its images is in")
    assert "'photos/flyer.png'" in result.stderr


def test_eval_labels_partly_missing_still_evaluate(tmp_path: Path) -> None:
    labels = _write(tmp_path / "labels.jsonl", [
        {"image": "photos/flyer.png", "rule_id": "spam-contact", "label": "violates"},
        {"image": "photos/dog.jpg", "rule_id": "spam-contact", "label": "complies"},
        {"image": "photos/cat.jpg", "rule_id": "*", "label": "complies"},
    ])
    result = runner.invoke(app, ["eval", "-p", str(_results(tmp_path)), "-l", str(labels),
                                 "--json", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["uncovered"] == {"uncertain": 0, "error": 1, "missing": 1}


def test_out_that_is_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    sample_image("coffee").save(tmp_path / "coffee.jpg")
    (tmp_path / "results").mkdir()
    result = runner.invoke(app, ["moderate", str(tmp_path / "coffee.jpg"), "-q",
                                 "--out", str(tmp_path / "results"), "--overwrite"])
    _one_clear_error(result, "cannot write")


def test_resume_onto_a_file_that_is_not_results_leaves_it_alone(tmp_path: Path) -> None:
    sample_image("coffee").save(tmp_path / "coffee.jpg")
    labels = _write(tmp_path / "labels.jsonl", [
        {"image": "coffee.jpg", "rule_id": "*", "label": "complies"},
    ])
    before = labels.read_text()
    result = runner.invoke(app, ["moderate", str(tmp_path / "coffee.jpg"), "-q",
                                 "--out", str(labels), "--resume"])
    _one_clear_error(result, "labels.jsonl:1: not a moderation result")
    assert labels.read_text() == before


def test_an_animation_too_costly_to_decode_gets_an_error_record_and_the_batch_goes_on(tmp_path: Path) -> None:
    from corpus import many_frames_on_a_huge_canvas

    sample_image("coffee").save(tmp_path / "coffee.jpg")
    (tmp_path / "frames.gif").write_bytes(many_frames_on_a_huge_canvas())  # 23 kB, 1000 frames of 4000x4000
    policy = Path(__file__).parents[1] / "serve" / "fast.yaml"
    result = runner.invoke(app, ["moderate", str(tmp_path), "-p", str(policy), "-f", "jsonl", "-q"])
    assert result.exit_code == 1, result.output  # one image could not be judged
    rows = {Path(r["image"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["frames.gif"]["error"]["code"] == "too_large"
    assert rows["frames.gif"]["decision"] == "review"  # never allow what was not judged
    assert rows["coffee.jpg"]["error"] is None and rows["coffee.jpg"]["verdicts"]
