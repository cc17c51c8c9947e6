"""The explain stage through a real (tiny, randomly initialised) VLM: garbage answers are
regenerated once, then rejected by reason; nothing crashes and nothing is kept."""

from __future__ import annotations

from pathlib import Path

from backends.tiny_vlm import save_tiny_llava
from helpers import sample_image

from icm.datagen.cache import StageCache
from icm.datagen.stages.explain import ExplainStage, LabelledImage, VLMExplainer
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
