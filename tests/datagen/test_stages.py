"""The data engine's stages one by one: typed records in and out, one protocol, the on-disk cache
format, and the per-stage counts the report and the exit status are built from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import sample_image

from icm.datagen.cache import StageCache
from icm.datagen.config import GenerateConfig
from icm.datagen.pipeline import Pipeline, shortfalls
from icm.datagen.records import (
    AnsweredImage,
    ExplainedImage,
    LabelledImage,
    MultipleChoice,
    Question,
    QuestionedImage,
    QuestionSet,
)
from icm.datagen.stages.augment import AugmentStage
from icm.datagen.stages.base import StageReport
from icm.datagen.stages.explain import ExplainStage, LocalExplainer
from icm.datagen.stages.filter import ExplanationFilter, QuestionFilter
from icm.datagen.stages.qa import explanation_text
from icm.policy import load_policy

POLICY = load_policy("icm-r1")
#: The keys of the explain stage's cache entries as the data engine has always written them: a
#: cache from an earlier run stays valid (and a resumed run finds it).
EXPLAIN_KEYS = {"image_id", "path", "label", "criteria", "sha256", "labels", "explanation", "attempts", "tokens",
                "model", "prompt"}


@pytest.fixture(scope="module")
def explainer() -> LocalExplainer:
    return LocalExplainer()


@pytest.fixture()
def chelsea(tmp_path: Path) -> LabelledImage:
    path = tmp_path / "whole_leg" / "chelsea.jpg"
    path.parent.mkdir()
    sample_image("chelsea").save(path)
    return LabelledImage(image_id="whole_leg/chelsea.jpg", path=path, label="whole_leg", criteria=("bare-legs",))


def test_the_pipeline_is_a_list_of_stages_in_order(tmp_path: Path, explainer: LocalExplainer) -> None:
    pipeline = Pipeline(GenerateConfig(images=tmp_path, out=tmp_path / "out"))
    stages = pipeline.stages(explainer, llm=None)  # type: ignore[arg-type]  # qa is not run here
    assert [s.name for s in stages] == ["explain", "filter_explanations", "qa", "filter_questions", "augment"]
    assert [s.calls_model for s in stages] == [True, False, True, False, False]


def test_records_flow_typed_from_image_to_samples(tmp_path: Path, explainer: LocalExplainer,
                                                   chelsea: LabelledImage) -> None:
    explained = ExplainStage(explainer, POLICY, StageCache(tmp_path / "cache", "explain")).run(chelsea)
    assert isinstance(explained.record, ExplainedImage) and explained.outputs == 1
    assert explained.record.labels["exposed-skin"] is True  # bare legs break R1's exposed-skin rule
    kept = ExplanationFilter().run(explained.record)
    assert isinstance(kept.record, ExplainedImage)
    questions = QuestionSet(
        image_id=chelsea.image_id, explanation_text=explanation_text(kept.record.explanation),
        questions=[Question(type="yes_no", question="Is there a cat?", answer="Yes.")],
        multiple_choice=[], form="json", tokens=0, model="scripted", prompt="qa.v1",
    )
    filtered = QuestionFilter().run(AnsweredImage(image=kept.record, questions=questions))
    assert isinstance(filtered.record, QuestionedImage) and len(filtered.record.questions) == 1
    family = [load_policy(f"icm-r{i}") for i in range(1, 5)]
    samples = AugmentStage(POLICY, family, tmp_path).run(filtered.record)
    assert samples.record is not None and samples.outputs == len(samples.record)
    kinds = [s.meta.kind for s in samples.record]
    assert kinds.count("verdict") == sum(len(p.rules) for p in family) and kinds.count("yes_no") == 1
    assert samples.record[0].images == ["whole_leg/chelsea.jpg"]  # relative to the dataset directory


def test_the_explain_cache_keeps_its_format_and_a_stale_entry_is_recomputed(
    tmp_path: Path, explainer: LocalExplainer, chelsea: LabelledImage
) -> None:
    stage = ExplainStage(explainer, POLICY, StageCache(tmp_path / "cache", "explain"))
    first = stage.run(chelsea)
    entry = next((tmp_path / "cache" / "explain").glob("*.json"))
    written = json.loads(entry.read_text())
    assert set(written) == EXPLAIN_KEYS
    again = stage.run(chelsea)
    assert again.cached and again.record == first.record
    entry.write_text(json.dumps({**written, "explanation": "not an explanation"}))  # another version's shape
    recomputed = stage.run(chelsea)
    assert not recomputed.cached and recomputed.record == first.record
    assert json.loads(entry.read_text()) == written  # and written back whole


def test_an_image_whose_answer_is_cached_is_not_decoded_again(
    tmp_path: Path, explainer: LocalExplainer, chelsea: LabelledImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache is keyed by the file's bytes: a resumed run hashes each image, it does not decode it."""
    import icm.datagen.stages.explain as explain

    stage = ExplainStage(explainer, POLICY, StageCache(tmp_path / "cache", "explain"))
    first = stage.run(chelsea)
    decoded: list[object] = []
    monkeypatch.setattr(explain, "load_image", lambda *args, **kw: decoded.append(args))
    again = stage.run(chelsea)
    assert again.cached and again.record == first.record
    assert decoded == []


def test_a_new_wording_of_the_re_ask_is_not_answered_from_the_cache(
    tmp_path: Path, explainer: LocalExplainer, chelsea: LabelledImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    import icm.datagen.stages.explain as explain

    cache = StageCache(tmp_path / "cache", "explain")
    assert not ExplainStage(explainer, POLICY, cache).run(chelsea).cached
    assert ExplainStage(explainer, POLICY, cache).run(chelsea).cached
    monkeypatch.setattr(explain, "template_id", lambda name: "reask.v9" if name == "reask" else f"{name}.v1")
    assert not ExplainStage(explainer, POLICY, cache).run(chelsea).cached


def test_an_unreadable_image_is_rejected_by_its_code(tmp_path: Path, explainer: LocalExplainer) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    item = LabelledImage(image_id="broken.jpg", path=broken, label="upper_normal", criteria=())
    result = ExplainStage(explainer, POLICY, StageCache(tmp_path / "cache", "explain")).run(item)
    assert result.record is None and result.rejected == "image unreadable (not_an_image)"
    assert result.outputs == 0 and result.error is not None and "broken.jpg" in result.error


def test_the_question_filter_accounts_for_every_question(tmp_path: Path, explainer: LocalExplainer,
                                                          chelsea: LabelledImage) -> None:
    record = ExplainStage(explainer, POLICY, StageCache(tmp_path / "cache", "explain")).run(chelsea).record
    assert record is not None
    choices = {"A": "A cat", "B": "A dog", "C": "A bird", "D": "A fish"}
    questions = QuestionSet(
        image_id=record.image_id, explanation_text=explanation_text(record.explanation),
        questions=[Question(type="yes_no", question="Is it a photo?", answer="Yes."),
                   Question(type="yes_no", question="Is it a photo?", answer="No."),  # duplicate
                   Question(type="yes_no", question="Is it large?", answer="Maybe")],  # neither yes nor no
        multiple_choice=[MultipleChoice.model_validate({"question": "What animal?", "choices": choices,
                                                        "answer": "A"}),
                         MultipleChoice.model_validate({"question": " ", "choices": choices, "answer": "B"})],
        form="json", tokens=0, model="scripted", prompt="qa.v1",
    )
    result = QuestionFilter().run(AnsweredImage(image=record, questions=questions))
    assert result.inputs == 5 and result.outputs == 2
    assert result.rejections == {"duplicate question": 1, "yes/no answer is neither yes nor no": 1,
                                 "empty question": 1}
    assert result.inputs == result.outputs + sum(result.rejections.values())
    unanswered = QuestionFilter().run(AnsweredImage(image=record, questions=None))
    assert unanswered.record is not None and (unanswered.inputs, unanswered.outputs) == (0, 0)


def _report(inputs: int, outputs: int, **rejected: int) -> StageReport:
    report = StageReport(inputs=inputs, outputs=outputs)
    report.rejected.update(rejected)
    return report


def test_a_stage_that_passes_on_under_5_percent_of_its_images_is_a_shortfall() -> None:
    healthy = {"explain": _report(100, 100), "filter_explanations": _report(100, 97), "qa": _report(97, 5)}
    assert shortfalls(healthy) == []  # 5 of 97 is above 5%
    starved = {**healthy, "qa": _report(97, 4, **{"model error": 90, "questions unreadable": 3})}
    assert shortfalls(starved) == ["qa: 4 of 97 images came through; rejected: model error (90), "
                                   "questions unreadable (3)"]
    # The question filter counts questions, and a bad question writer is not a failed run.
    assert shortfalls({**healthy, "filter_questions": _report(300, 0)}) == []
    assert shortfalls({"explain": _report(0, 0)}) == []  # nothing asked of a stage is no shortfall
