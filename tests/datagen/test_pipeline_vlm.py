"""The explain stage through a real (tiny, randomly initialised) VLM: garbage answers are
regenerated once, then rejected by reason; nothing crashes and nothing is kept."""

from __future__ import annotations

from pathlib import Path

from backends.tiny_vlm import save_tiny_llava
from helpers import sample_image

from icm.datagen.cache import StageCache
from icm.datagen.stages.explain import ExplainStage, LabelledImage, LocalExplainer, VLMExplainer, load_explainer
from icm.media import load_image
from icm.policy import load_policy


def test_random_vlm_answers_are_rejected_after_one_retry(tmp_path: Path) -> None:
    model = save_tiny_llava(tmp_path / "tiny")
    explainer = VLMExplainer(f"transformers:{model}")
    stage = ExplainStage(explainer, load_policy("icm-r1"), StageCache(tmp_path / "cache", "explain"))
    path = tmp_path / "astronaut.jpg"
    sample_image("astronaut").save(path)
    item = LabelledImage(image_id="a", path=path, label="upper_normal", criteria=())
    result = stage.run(item, load_image(path))
    assert result.record is None and result.rejected == "explanation unreadable"
    again = stage.run(item, load_image(path))
    assert again.cached and again.rejected == "explanation unreadable"  # the rejection is cached too
    cached = next((tmp_path / "cache" / "explain").glob("*.json")).read_text()
    assert '"answers"' in cached  # both raw answers are kept for audit


def test_explainers_resolve_through_the_backend_registry(tmp_path: Path) -> None:
    local = load_explainer("local")
    assert isinstance(local, LocalExplainer) and local.spec == "local"
    model = save_tiny_llava(tmp_path / "tiny")
    explainer = load_explainer(f"transformers:{model}")
    assert isinstance(explainer, VLMExplainer)
    assert explainer.spec == f"transformers:{model}"  # the cache key names the model, not only its kind


class ScriptedExplainer:
    """An explainer (the stage's Explainer protocol, implemented here) that answers from a script
    and records the conversations it was given."""

    spec = "scripted"

    def __init__(self, answers: list[str]) -> None:
        self.answers = iter(answers)
        self.conversations: list[list[tuple[str, str]]] = []

    def about(self, image, policy, labels, criteria):  # type: ignore[no-untyped-def]
        from icm.llm import FunctionChat, Generation

        def chat(turns, schema, max_tokens):  # type: ignore[no-untyped-def]
            self.conversations.append(list(turns))
            return Generation(next(self.answers), tokens=7)

        return FunctionChat(chat)


def _explanation(policy, violates: bool) -> str:  # type: ignore[no-untyped-def]
    from icm.explanation import ImageExplanation, RuleExplanation

    rules = [RuleExplanation(rule_id=r.id, criteria_met=[], violates=violates, conclusion="Seen.")
             for r in policy.rules]
    return ImageExplanation(description="d", implicit_content="i", rules=rules).model_dump_json()


def test_a_conclusion_that_contradicts_the_label_is_re_asked_then_rejected(tmp_path: Path) -> None:
    policy = load_policy("icm-r1")
    path = tmp_path / "astronaut.jpg"
    sample_image("astronaut").save(path)
    image = load_image(path)
    item = LabelledImage(image_id="a", path=path, label="upper_normal", criteria=())  # complies with all
    wrong, right = _explanation(policy, violates=True), _explanation(policy, violates=False)

    explainer = ScriptedExplainer([wrong, right])
    result = ExplainStage(explainer, policy, StageCache(tmp_path / "ok", "explain")).run(item, image)
    assert result.record is not None and result.record.attempts == 2 and result.tokens == 14
    assert "contradicts what is known about the image" in explainer.conversations[1][2][1]

    explainer = ScriptedExplainer([wrong, wrong])
    result = ExplainStage(explainer, policy, StageCache(tmp_path / "bad", "explain")).run(item, image)
    assert result.record is None and result.rejected == "conclusion contradicts the label"
    cached = next((tmp_path / "bad" / "explain").glob("*.json")).read_text()
    assert cached.count('"rejected"') == 1 and '"answers"' in cached
