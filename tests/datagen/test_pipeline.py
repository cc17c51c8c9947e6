"""`icm data generate` end to end, offline: package images, the local engine standing in for the
MLLM, and a real small LLM (SmolLM2-135M through llama.cpp) writing the questions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import llama_server, render_text, sample_image
from typer.testing import CliRunner

from icm.backends.chat.llama_cpp import LlamaCppModel
from icm.cli.app import app
from icm.datagen.dataset import read_samples
from icm.datagen.pipeline import GenerateConfig, Pipeline, PipelineError
from icm.errors import IcmError
from icm.explanation import ImageExplanation
from icm.llm import Generation
from icm.policy import load_policy

COUNTS = {"yes_no": 2, "what": 1, "how": 1, "multiple_choice": 1}


@pytest.fixture(scope="module")
def smollm2() -> LlamaCppModel:
    return LlamaCppModel("smollm2")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    for label, names in {"upper_normal": ["astronaut", "coffee"], "whole_leg": ["chelsea"]}.items():
        (root / label).mkdir()
        for name in names:
            sample_image(name).save(root / label / f"{name}.jpg")
    (root / "sexy_imagetext").mkdir()
    render_text("SEXY hot girls").save(root / "sexy_imagetext" / "flyer.png")
    (root / "sexy_imagetext" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return root


def config(images: Path, out: Path, **overrides: object) -> GenerateConfig:
    return GenerateConfig(images=images, out=out, qa_counts=COUNTS, validation=0.3, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def generated(labelled: Path, smollm2: LlamaCppModel, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("generated")
    report = Pipeline(config(labelled, out), llm=smollm2).run()
    return out, report


def test_every_item_is_accounted_for(generated) -> None:  # type: ignore[no-untyped-def]
    _, report = generated
    stages = report["stages"]
    assert stages["explain"]["in"] == 5
    assert stages["explain"]["rejected"] == {"image unreadable (not_an_image)": 1}
    assert stages["explain"]["out"] == 4 == stages["filter_explanations"]["in"]
    assert stages["qa"]["tokens"] > 0  # the LLM really ran
    questions = stages["filter_questions"]
    assert questions["in"] == questions["out"] + sum(questions["rejected"].values())
    assert questions["in"] <= 4 * sum(COUNTS.values())  # the bounded schema caps what is asked


def test_policy_augmentation_recomputes_labels_per_rule_set(generated) -> None:  # type: ignore[no-untyped-def]
    out, _ = generated
    samples = read_samples(out, "train") + read_samples(out, "validation")
    verdicts = [s for s in samples if s.meta.kind == "verdict"]
    family = [load_policy(f"icm-r{i}") for i in range(1, 5)]
    assert len(verdicts) == 4 * sum(len(p.rules) for p in family)  # 4 images x every rule of R1..R4
    answer = {(s.meta.image_id, s.meta.policy, s.meta.rule_id): s.messages[-1].text for s in verdicts}
    cat = "whole_leg/chelsea.jpg"
    assert answer[(cat, "icm-r1", "exposed-skin")] == "Yes"  # bare legs break the under-13 conservative set
    assert {v for (i, p, _), v in answer.items() if i == cat and p == "icm-r4"} == {"No"}  # and not R4
    text = "sexy_imagetext/flyer.png"
    assert answer[(text, "icm-r1", "suggestive-text-symbols")] == "Yes"
    assert {v for (i, _, _), v in answer.items() if i == "upper_normal/coffee.jpg"} == {"No"}
    # The verdict prompt is the one the model backends ask at inference.
    assert "Does the image violate this rule? Answer Yes or No." in verdicts[0].messages[0].text


def test_explanations_are_valid_grounded_json_and_relaxed_variants_flip(generated) -> None:  # type: ignore[no-untyped-def]
    out, _ = generated
    samples = read_samples(out, "train") + read_samples(out, "validation")
    structured = [s for s in samples if s.meta.kind == "explanation" and s.meta.extra.get("format") == "json"]
    for sample in structured:
        explanation = ImageExplanation.model_validate_json(sample.messages[-1].text)
        relaxed = sample.meta.extra.get("augmentation") == "relaxed"
        assert any(r.violates for r in explanation.rules) == (sample.meta.label == "violates")
        if relaxed:
            assert sample.meta.label == "complies" and sample.meta.extra["dropped_rules"]
    flyer = next(s for s in structured if s.meta.image_id == "sexy_imagetext/flyer.png")
    assert "SEXY" in flyer.messages[-1].text.upper()  # the description cites the text OCR read
    assert any(s.meta.extra.get("augmentation") == "relaxed" for s in structured)


def test_splits_by_image_and_every_layout_loads(generated) -> None:  # type: ignore[no-untyped-def]
    out, _ = generated
    train, validation = read_samples(out, "train"), read_samples(out, "validation")
    assert not {s.meta.image_id for s in train} & {s.meta.image_id for s in validation}
    for split, samples in (("train", train), ("validation", validation)):
        llava = json.loads((out / "llava" / f"{split}.json").read_text())
        sharegpt = json.loads((out / "sharegpt" / f"{split}.json").read_text())
        assert len(llava) == len(sharegpt) == len(samples)
        if samples:
            assert llava[0]["conversations"][0]["value"].startswith("<image>\n")
            assert (out / llava[0]["image"]).resolve().exists()  # image paths are relative to the dataset


def test_export_loads_in_datasets_and_trl(generated) -> None:  # type: ignore[no-untyped-def]
    from datasets import load_dataset
    from PIL import Image
    from trl.data_utils import is_conversational, prepare_multimodal_messages

    out, _ = generated
    rows = load_dataset("json", data_files=str(out / "train.jsonl"), split="train")
    assert set(rows.column_names) >= {"messages", "images", "meta"}
    row = rows[0]
    assert is_conversational(row)
    images = [Image.open(out / p) for p in row["images"]]
    messages = prepare_multimodal_messages(row["messages"], images=images)
    assert messages[0]["content"][0]["type"] == "image"
    assert messages[-1]["role"] == "assistant"


def test_resume_after_an_interrupted_stage(labelled: Path, smollm2: LlamaCppModel, tmp_path: Path) -> None:
    class Interrupted(RuntimeError):
        pass

    class StopsAfterOne:
        """The real model, killed after its first answer (as a crash or Ctrl-C would)."""

        spec = smollm2.spec

        def __init__(self) -> None:
            self.calls = 0

        def complete(self, prompt: str, *, schema: dict | None = None, max_tokens: int = 768) -> Generation:
            self.calls += 1
            if self.calls > 1:
                raise Interrupted
            return smollm2.complete(prompt, schema=schema, max_tokens=max_tokens)

    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        Pipeline(config(labelled, out), llm=StopsAfterOne()).run()
    with pytest.raises(PipelineError, match="--resume"):
        (out / "train.jsonl").write_text("")  # a dataset in the way is never overwritten silently
        Pipeline(config(labelled, out), llm=smollm2).run()
    report = Pipeline(config(labelled, out, resume=True), llm=smollm2).run()
    assert report["stages"]["explain"]["cached"] == 4  # every explanation survived the crash
    assert report["stages"]["qa"]["cached"] == 1  # the one answer given before it


def test_cli_reports_and_refuses_unknown_labels(labelled: Path, tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    (odd / "cats").mkdir(parents=True)
    sample_image("chelsea").save(odd / "cats" / "c.jpg")
    result = CliRunner().invoke(app, ["data", "generate", "--images", str(odd), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "labels not in the label map" in result.output and "cats" in result.output
    (tmp_path / "map.yaml").write_text("cats: []\n")
    result = CliRunner().invoke(app, ["data", "generate", "--images", str(odd), "--out", str(tmp_path / "o"),
                                      "--label-map", str(tmp_path / "map.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kinds"]["verdict"] == sum(len(load_policy(f"icm-r{i}").rules) for i in range(1, 5))
    assert (tmp_path / "o" / "report.json").exists()


def test_a_failing_model_rejects_its_items_and_the_run_goes_on(labelled: Path, tmp_path: Path) -> None:
    # A real model whose context cannot hold the Q-A prompt: every call fails inside llama.cpp.
    cramped = LlamaCppModel("smollm2", context=128)
    out = tmp_path / "out"
    report = Pipeline(config(labelled, out), llm=cramped).run()
    qa = report["stages"]["qa"]
    assert qa["rejected"] == {"model error": 4} and qa["out"] == 0
    assert len(qa["errors"]) >= 1 and "context" in qa["errors"][0]
    assert report["kinds"]["verdict"] > 0  # explanations and verdict samples are still exported
    # Failures are not cached: a resumed run asks the model again.
    again = Pipeline(config(labelled, out, resume=True), llm=cramped).run()
    assert again["stages"]["qa"]["cached"] == 0 and again["stages"]["explain"]["cached"] == 4


@pytest.fixture(scope="module")
def cramped_server() -> Iterator[str]:
    """A real server whose context cannot hold the Q-A or the explain prompt: every call fails."""
    with llama_server(context=128) as url:
        yield url


def test_cli_exits_1_naming_the_reasons_when_every_question_call_fails(labelled: Path, cramped_server: str,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["data", "generate", "--images", str(labelled), "--out", str(out),
                                      "--llm", f"openai:smollm2@{cramped_server}", "--json"])
    assert result.exit_code == 1, result.output
    assert "qa: 0 of 4 images came through; rejected: model error (4)" in result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["problems"][0].startswith("qa: 0 of 4")
    # What was produced is still written: explanations and verdicts of all four images.
    assert report["kinds"]["verdict"] > 0 and json.loads((out / "report.json").read_text()) == report
    assert (out / "train.jsonl").stat().st_size > 0


def test_cli_exits_1_when_no_sample_was_written(labelled: Path, cramped_server: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "generate", "--images", str(labelled), "--out", str(tmp_path / "o"),
                                      "--mllm", f"openai:smollm2@{cramped_server}"])
    assert result.exit_code == 1, result.output
    assert "no samples were written" in result.stderr
    assert "explain: 0 of 5 images came through; rejected: model error (4), image unreadable" in result.stderr


def test_a_healthy_run_reports_ok(generated) -> None:  # type: ignore[no-untyped-def]
    _, report = generated
    assert report["ok"] is True and report["problems"] == []


@pytest.mark.parametrize(("option", "message"), [("mllm", "unknown backend 'trasformers'"),
                                                  ("llm", "unknown chat model 'opnai'")])
def test_a_misspelt_model_fails_before_the_work_is_fanned_out(labelled: Path, tmp_path: Path, option: str,
                                                              message: str) -> None:
    """With the model stages on workers (Ray), the models load there; their names are still
    checked here first, so a typo is one error at the start, not a failure after the first stage."""
    fanned: list[str] = []

    def fan_out(factory, items, tick):  # type: ignore[no-untyped-def]
        fanned.append(factory.args[1])
        return []

    spec = {"mllm": "trasformers:/models/llava", "llm": "opnai:gpt@http://127.0.0.1:9/v1"}[option]
    with pytest.raises(IcmError, match=message):
        Pipeline(config(labelled, tmp_path / "o", **{option: spec}), fan_out=fan_out).run()
    assert fanned == []
