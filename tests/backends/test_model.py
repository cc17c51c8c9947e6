"""What the model backends share: verdicts, attached explanations, frames and data URLs, model paths."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import explanation_json

from icm.backends.base import BackendError, Explain
from icm.backends.model import (
    ModelBackend,
    attach_explanations,
    data_urls,
    resolve_model_path,
    rules_to_explain,
    verdict_from_probability,
)
from icm.errors import ModelError
from icm.explanation import ImageExplanation, parse_explanation
from icm.llm import FunctionChat, Generation, UnreadableAnswer, ask_validated
from icm.media import DecodedImage, data_url, pick_frames
from icm.policy.load import load_policy
from icm.results import BackendInfo, Verdict

POLICY = load_policy("icm-r1")
RULES = POLICY.rules[:2]


def test_two_bad_answers_keep_the_verdict_and_the_raw_text() -> None:
    garbage = FunctionChat(lambda turns, schema, max_tokens: Generation("garbage"))
    with pytest.raises(UnreadableAnswer) as raised:
        ask_validated(garbage, "explain", ImageExplanation)
    explanation, raw, error = None, raised.value.raw or "", str(raised.value)
    verdicts = [verdict_from_probability("exposed-skin", 0.9, 0.5),
                verdict_from_probability("intimate-focus", 0.2, 0.5)]
    attach_explanations(verdicts, RULES, explanation, raw, error)
    assert verdicts[0].verdict is Verdict.violates and verdicts[0].probability == 0.9
    assert verdicts[0].raw == "garbage\n---\ngarbage"
    assert "could not be used" in verdicts[0].explanation


def test_explanations_are_attached_and_disagreement_is_flagged() -> None:
    verdicts = [verdict_from_probability("exposed-skin", 0.9, 0.5),
                verdict_from_probability("intimate-focus", 0.7, 0.5),
                verdict_from_probability("nudity", 0.1, 0.5)]
    explanation = parse_explanation(explanation_json(), RULES)
    attach_explanations(verdicts, RULES, explanation, explanation_json(), None)
    assert verdicts[0].explanation == "Her shoulders are bare."
    assert [e.criterion for e in verdicts[0].evidence] == ["shoulders-belly"]
    assert "concludes the opposite" in verdicts[1].explanation
    assert verdicts[2].explanation == "" and verdicts[2].raw is None  # not asked about


def test_rules_to_explain() -> None:
    verdicts = [verdict_from_probability(r.id, 0.9 if i == 1 else 0.1, 0.5)
                for i, r in enumerate(POLICY.rules)]
    assert rules_to_explain(Explain.none, POLICY, verdicts) == []
    assert [r.id for r in rules_to_explain(Explain.violations, POLICY, verdicts)] == [
        POLICY.rules[1].id
    ]
    assert len(rules_to_explain(Explain.all, POLICY, verdicts)) == len(POLICY.rules)


def test_nan_probability_is_uncertain() -> None:
    verdict = verdict_from_probability("nudity", float("nan"), 0.5)
    assert verdict.verdict is Verdict.uncertain and verdict.raw


def test_data_url_respects_the_size_limit() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    url = data_url(noise, max_side=1024, max_bytes=200_000)
    assert url.startswith("data:image/jpeg;base64,") and len(url) <= 200_000
    from io import BytesIO

    from PIL import Image

    decoded = Image.open(BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert max(decoded.size) < 1024
    with pytest.raises(ValueError, match="does not fit"):
        data_url(noise, max_side=1024, max_bytes=100)


def test_data_urls_of_an_image_that_cannot_fit_are_that_images_backend_error() -> None:
    from icm.backends.options import VLLMOptions

    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    image = DecodedImage("noise.png", "0", "PNG", 400, 300, 1, [noise], [0])
    assert len(data_urls(image, VLLMOptions())) == 1
    with pytest.raises(BackendError, match="does not fit"):  # the same for openai and vllm
        data_urls(image, VLLMOptions(max_image_bytes=100))


def test_pick_frames_spreads_over_an_animation() -> None:
    frames = [np.full((16, 16, 3), i, dtype=np.uint8) for i in range(8)]
    image = DecodedImage("a.gif", "0", "GIF", 16, 16, 8, frames, list(range(8)))
    assert [int(f[0, 0, 0]) for f in pick_frames(image, 3)] == [0, 4, 7]
    assert len(pick_frames(image, 1)) == 1


def test_resolve_model_path(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    assert resolve_model_path(str(model)) == (str(model), None)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "../model"}))
    assert resolve_model_path(str(adapter)) == (str(adapter / "../model"), adapter)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/m"}))
    assert resolve_model_path(str(adapter)) == ("org/m", adapter)  # a hub id, left to the loader
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(BackendError, match="base_model_name_or_path"):
        resolve_model_path(str(adapter))


class Brightness(ModelBackend):
    """A stand-in model at the hook boundary (no model can run in this test): p(violates) is the
    image's mean brightness, and a black image makes the model fail, alone or in a batch."""

    name = "brightness"
    batches_images = True

    def __init__(self) -> None:
        super().__init__(explain="none")
        self.batches: list[int] = []

    def info(self) -> BackendInfo:
        return BackendInfo(name=self.name)

    def close(self) -> None:
        pass

    def _see(self, image: DecodedImage) -> float:
        return float(image.frames[0].mean()) / 255

    def _score_batch(self, seen, prompts, policy):  # type: ignore[no-untyped-def]
        self.batches.append(len(seen))
        if 0.0 in seen:
            raise ModelError("the model failed on a black image")
        return [[verdict_from_probability(r.id, p, 0.5) for r in policy.rules] for p in seen]


def _flat(value: int) -> DecodedImage:
    frame = np.full((16, 16, 3), value, dtype=np.uint8)
    return DecodedImage(f"{value}.png", str(value), "PNG", 16, 16, 1, [frame], [0])


def test_a_failed_batch_is_judged_again_one_by_one() -> None:
    backend = Brightness()
    images = [_flat(204), _flat(0), _flat(51)]
    outcomes = backend.judge_batch(images, POLICY)
    assert backend.batches == [3, 1, 1, 1]  # the batch, then each image alone
    assert isinstance(outcomes[1], ModelError)
    assert [v.probability for v in outcomes[0]] == [0.8] * len(POLICY.rules)  # type: ignore[union-attr]
    assert [v.verdict for v in outcomes[2]] == [Verdict.complies] * len(POLICY.rules)  # type: ignore[union-attr]
    backend.batches.clear()
    assert backend.judge_batch([images[0], images[2]], POLICY) == [outcomes[0], outcomes[2]]
    assert backend.batches == [2]  # no failure: one call for both
