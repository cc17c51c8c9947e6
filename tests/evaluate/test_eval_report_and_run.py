"""Reports with embedded plots, `icm eval run` on the local engine, and light imports."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

from icm.cli.app import app
from icm.evaluate.meq import load_judgements, summarise_judgements
from icm.evaluate.paper_predictions import load_paper_predictions, paper_outcomes
from icm.evaluate.report import write_meq_report, write_verdict_report
from icm.evaluate.verdicts import evaluate_outcomes

runner = CliRunner()


def _embedded_pngs(page: str) -> list[Image.Image]:
    images = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        images.append(image)
    return images


def test_verdict_report_on_the_paper_sample(release: Path, tmp_path: Path) -> None:
    predictions = load_paper_predictions(release / "eval" / "icm_val_predictions_sample.json")
    evaluation = evaluate_outcomes(paper_outcomes(predictions), name="icm-llava", resamples=100)
    md, page = write_verdict_report([evaluation], tmp_path / "report")
    html = page.read_text("utf-8")
    images = _embedded_pngs(html)
    # confusion, per-category bars, reliability, threshold curve, coverage curve (no per-rule
    # bars: the paper judges one rule set, and a single bar would repeat the summary)
    assert len(images) == 5 and all(im.width > 300 and im.height > 200 for im in images)
    assert "<td>accuracy</td><td>0.986 [" in html  # 138/140 with its interval
    assert "whole_normal" in html
    markdown = md.read_text("utf-8")
    linked = re.findall(r"\]\((plots/[^)]+\.png)\)", markdown)
    assert len(linked) == 5 and all((md.parent / p).is_file() for p in linked)
    assert "| accuracy | 0.986 [" in markdown


def test_meq_report(release: Path, tmp_path: Path) -> None:
    summary = summarise_judgements(load_judgements(release / "eval" / "meq_judge"))
    md, page = write_meq_report(summary, tmp_path)
    html = page.read_text("utf-8")
    assert len(_embedded_pngs(html)) == 2
    assert "<td>accuracy</td><td>77.4</td>" in html  # 1470 / 19
    assert "MEQ (mean accuracy / 100) | 0.774" in md.read_text("utf-8")


# -- icm eval run: a small labelled set from package images, judged by the real local engine --


def _text_image(text: str) -> Image.Image:
    image = Image.new("RGB", (640, 200), "white")
    ImageDraw.Draw(image).text((20, 70), text, fill="black", font=ImageFont.load_default(size=40))
    return image


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    from skimage import data

    folder = tmp_path / "dataset"
    (folder / "img").mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(folder / "img" / "astronaut.png")
    Image.fromarray(data.coffee()).save(folder / "img" / "coffee.png")
    _text_image("call +1 555-123-4567").save(folder / "img" / "spam.png")
    _text_image("Lovely weather today").save(folder / "img" / "plain.png")
    labels = [
        ("img/astronaut.png", "spam-contact", "complies", "photo"),
        ("img/coffee.png", "spam-contact", "complies", "photo"),
        ("img/spam.png", "spam-contact", "violates", "text"),
        ("img/plain.png", "spam-contact", "complies", "text"),
        # the local engine has no detector for a self-harm picture: uncertain, not covered
        ("img/astronaut.png", "self-harm", "complies", "photo"),
        # no such file: an error record, not covered
        ("img/gone.png", "spam-contact", "violates", "text"),
    ]
    (folder / "labels.jsonl").write_text("".join(
        json.dumps({"image": i, "rule_id": r, "label": lab, "category": c}) + "\n"
        for i, r, lab, c in labels))
    return folder


def test_eval_run_on_the_local_engine(dataset: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    out = runner.invoke(app, ["eval", "run", "--backend", "local", "--policy", "general",
                              "--dataset", str(dataset), "--json", "--report", str(report),
                              "--bootstrap", "100"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    spam = data["per_rule"]["spam-contact"]
    # 5 spam-contact labels: 4 judged and all right (the phone number found by OCR, the others
    # clean), gone.png an error
    assert (spam["n"], spam["judged"], spam["accuracy"]) == (5, 4, 1.0)
    assert spam["confusion"] == {"tp": 1, "fp": 0, "fn": 0, "tn": 3}
    assert spam["uncovered"] == {"uncertain": 0, "error": 1, "missing": 0}
    # overall: 6 labels, 4 judged; self-harm uncertain and gone.png an error
    assert data["coverage"] == pytest.approx(4 / 6)
    assert data["uncovered"] == {"uncertain": 1, "error": 1, "missing": 0}
    assert data["accuracy_all"] == pytest.approx(4 / 6)
    assert data["per_category"]["text"]["n"] == 3
    predictions = [json.loads(x) for x in (report / "predictions-local.jsonl").read_text().splitlines()]
    assert sorted(p["image"] for p in predictions) == sorted(
        ["img/astronaut.png", "img/coffee.png", "img/spam.png", "img/plain.png", "img/gone.png"])
    assert (report / "report.html").is_file()

    # the written predictions compare side by side with a second file through plain `icm eval`
    compared = runner.invoke(app, ["eval", "-p", str(report / "predictions-local.jsonl"), "-p",
                                   str(report / "predictions-local.jsonl"), "-l",
                                   str(dataset / "labels.jsonl"), "--json", "--bootstrap", "0"])
    assert compared.exit_code == 0, compared.output
    assert len(json.loads(compared.stdout)["runs"]) == 2


def test_eval_run_rejects_labels_for_rules_the_policy_lacks(dataset: Path) -> None:
    labels = dataset / "labels.jsonl"
    labels.write_text(labels.read_text() + json.dumps(
        {"image": "img/coffee.png", "rule_id": "no-such-rule", "label": "complies"}) + "\n")
    out = runner.invoke(app, ["eval", "run", "--policy", "general", "--dataset", str(dataset)])
    assert out.exit_code == 2
    assert "rules not in policy general: no-such-rule" in out.stderr
