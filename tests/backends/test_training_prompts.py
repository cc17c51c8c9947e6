"""A fine-tuned model is asked in the words it was trained on: the prompt of a verdict sample that
the data engine writes is the prompt every verdict-scoring backend asks for the same image and
rule, and for the transformers backend the same tokens, through the chat template."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
from helpers import sample_image

from icm.backends.base import REGISTRY, ModelKind, load_backend
from icm.datagen.records import ExplainedImage
from icm.datagen.stages.augment import explanation_samples, verdict_samples
from icm.explanation import ImageExplanation, RuleExplanation
from icm.media import load_image
from icm.policy.categories import policy_labels
from icm.policy.load import load_policy
from icm.policy.schema import Policy

FAMILY = ("icm-r1", "icm-r2")
CRITERIA = ["bare-legs"]


def _record(image: Path, policy: Policy) -> ExplainedImage:
    labels = policy_labels(policy, CRITERIA)
    entries = [RuleExplanation(rule_id=r.id, criteria_met=[c.id for c in r.criteria if c.id in CRITERIA],
                               violates=labels[r.id], conclusion=f"Rule {r.id} is considered.")
               for r in policy.rules]
    explanation = ImageExplanation(description="A cat on a sofa.", implicit_content="Calm.", rules=entries)
    return ExplainedImage(image_id=image.name, path=str(image), label="whole_leg", criteria=CRITERIA,
                          sha256="0" * 64, labels=labels, explanation=explanation, attempts=1, tokens=0,
                          model="test", prompt="describe.v1")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    photo = sample_image("chelsea")
    photo.thumbnail((64, 64))
    path = tmp_path_factory.mktemp("prompts") / "chelsea.png"
    photo.save(path)
    return path


def _trained_questions(image: Path) -> dict[str, list[str]]:
    """policy id -> the user text of its verdict samples, in the policy's rule order."""
    family = [load_policy(name) for name in FAMILY]
    samples = verdict_samples(_record(image, family[0]), family, image.name)
    asked: dict[str, list[str]] = {}
    for sample in samples:
        assert sample.meta.policy is not None
        asked.setdefault(sample.meta.policy, []).append(sample.messages[0].text)
    return asked


def _scoring_backends() -> list[str]:
    return sorted(name for name, kinds in REGISTRY.items() if ModelKind.backend in kinds and name != "local")


def test_every_model_backend_is_covered() -> None:
    """A new verdict-scoring backend must be added to the checks below."""
    assert _scoring_backends() == ["openai", "transformers", "vllm"]


def test_openai_asks_what_the_verdict_samples_were_trained_on(image: Path) -> None:
    backend = load_backend("openai:some-vlm@http://127.0.0.1:9/v1")  # no request is made
    try:
        for policy_id, trained in _trained_questions(image).items():
            assert list(backend._questions(load_policy(policy_id), [])) == trained
    finally:
        backend.close()


def test_vllm_asks_what_the_verdict_samples_were_trained_on(image: Path) -> None:
    """Without vLLM installed here the class cannot be imported: its source must then leave the
    questions to ModelBackend (which the transformers and openai checks run)."""
    path = Path(importlib.util.find_spec("icm.backends").origin).parent / "vllm_engine.py"  # type: ignore[arg-type, union-attr]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "VLLMBackend")
    assert [ast.unparse(b) for b in cls.bases] == ["ModelDirectoryBackend"]
    overridden = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert not overridden & {"_questions", "_judge_together", "judge"}
    if importlib.util.find_spec("vllm") is None:
        return
    from icm.backends.model import ModelBackend
    from icm.backends.vllm_engine import VLLMBackend

    backend = VLLMBackend.__new__(VLLMBackend)
    ModelBackend.__init__(backend)  # the prompts, without loading a model
    for policy_id, trained in _trained_questions(image).items():
        assert backend._questions(load_policy(policy_id), []) == trained


def test_transformers_asks_the_trained_tokens(image: Path, tiny_llava_dir: Path) -> None:
    """Token for token: the training collator's prompt (everything before the assistant's answer)
    is what the backend encodes for each rule, with and without the shared prefix."""
    from transformers import AutoProcessor

    from icm.train.sft import ConversationCollator

    collator = ConversationCollator(AutoProcessor.from_pretrained(tiny_llava_dir))
    shared = load_backend(f"transformers:{tiny_llava_dir}", explain="none")
    alone = load_backend(f"transformers:{tiny_llava_dir}", explain="none", share_prefix=False)
    frames = shared._see(load_image(image))
    for policy_id, trained in _trained_questions(image).items():
        policy = load_policy(policy_id)
        expected = []
        for text in trained:
            record = {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]},
                                   {"role": "assistant", "content": [{"type": "text", "text": "Yes"}]}],
                      "images": [str(image)]}
            batch = collator([record])
            labels = batch["labels"][0].tolist()
            start = next(i for i, label in enumerate(labels) if label != -100)
            expected.append(batch["input_ids"][0][:start].tolist())
        questions = shared._questions(policy, [])
        packed = shared._encode_questions(frames, questions)
        prefix = packed.prefix["input_ids"][0].tolist()
        assert [prefix + s.tolist() for s in packed.suffixes] == expected
        one_by_one = alone._encode_questions(frames, alone._questions(policy, []))
        assert [e["input_ids"][0].tolist() for e in one_by_one] == expected


def test_explanation_samples_ask_what_the_backends_ask(image: Path) -> None:
    policy = load_policy(FAMILY[0])
    backend = load_backend("openai:some-vlm@http://127.0.0.1:9/v1")
    try:
        json_sample = explanation_samples(_record(image, policy), policy, image.name, relax=False)[0]
        assert json_sample.messages[0].text == backend.prompts.explain_prompt(policy, list(policy.rules), [])
    finally:
        backend.close()
