"""Choice and score questions on /v1/decisions, answered by the tiny VLM through ``icm serve`` and
read with the official openai client; each answer checked against the label probabilities of the
same question computed directly (its own full forward pass, no shared prefix)."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import torch
from serve.live import LiveServer, data_url, png_bytes, settings_for

from icm.backends.choices import ChoiceQuestion, choice_labels, choice_prompt
from icm.media import load_image
from icm.policy.load import load_policy

QUESTIONS = [
    {"type": "choice", "name": "answer", "instructions": "Is there a cat?",
     "choices": [{"value": "Yes"}, {"value": "No"}, {"value": True, "description": "a cat and a dog"}]},
    {"type": "score", "name": "risk", "instructions": "How risky is the image?",
     "levels": [{"label": "low"}, {"label": "medium", "description": "some risk"}, {"label": "high"}]},
]


def _direct(backend, image, question: ChoiceQuestion) -> tuple[tuple[str, ...], list[float]]:
    """The question alone through the processor and one forward: softmax over its labels' ids."""
    labels = choice_labels(backend.processor.tokenizer, question.values)
    prompt = choice_prompt(load_policy("icm-r1"), question, labels)
    encoded = backend._encode(backend._see(image), [("user", prompt)])
    with torch.inference_mode():
        logits = backend.model(**encoded).logits[0, -1].float()
    ids = [i for (i,) in labels.ids]  # the tiny vocabulary has one spelling per word
    return labels.labels, torch.softmax(logits[ids], dim=0).tolist()


def test_choice_and_score_questions_from_the_tiny_vlm_through_the_openai_client(
    tiny_llava_dir: Path, sqlite_url: str, tmp_path: Path
) -> None:
    options = tmp_path / "backend.yaml"
    options.write_text("explain: none\n")
    settings = settings_for(sqlite_url, tmp_path, policies=["icm-r1"], backend=f"transformers:{tiny_llava_dir}",
                            backend_options=options)
    server = LiveServer(settings).start()
    policy = load_policy("icm-r1")
    rule = policy.rules[0].id
    data = png_bytes(11)
    try:
        client = openai.OpenAI(api_key=server.key("moderate"), base_url=server.url + "/v1", max_retries=0)
        decision = client.decisions.create(
            model="icm-r1",
            input=[{"role": "user", "content": [{"type": "input_image", "image_url": data_url(data)}]}],
            questions=[{"type": "predicate", "name": rule, "instructions": "the rule"}, *QUESTIONS],  # type: ignore[list-item]
        )
        alone = client.decisions.create(  # choice questions alone: judged with the whole policy
            model="icm-r1",
            input=[{"role": "user", "content": [{"type": "input_image", "image_url": data_url(data)}]}],
            questions=[QUESTIONS[0]],  # type: ignore[list-item]
        )
    finally:
        server.stop()
    predicate, choice, score = decision.answers
    assert predicate.type == "predicate" and choice.type == "choice" and score.type == "score"

    from icm.backends.transformers import TransformersBackend

    backend = TransformersBackend(str(tiny_llava_dir), explain="none")
    (tmp_path / "image.png").write_bytes(data)
    image = load_image(tmp_path / "image.png")
    # the values are single tokens of their own, so they are the labels (True as "true")
    labels, expected = _direct(backend, image, ChoiceQuestion("Is there a cat?", ("Yes", "No", "true"),
                                                              ("", "", "a cat and a dog")))
    assert labels == ("Yes", "No", "true")
    assert [p.value for p in choice.probabilities] == ["Yes", "No", True]  # typed as asked
    assert [p.probability for p in choice.probabilities] == pytest.approx(expected, abs=1e-4)
    best = max(range(3), key=lambda i: expected[i])
    assert choice.choice == ["Yes", "No", True][best] and choice.confidence == pytest.approx(expected[best], abs=1e-4)
    assert [p.probability for p in alone.answers[0].probabilities] == pytest.approx(expected, abs=1e-4)

    # levels that are no words of the vocabulary are labelled A, B, C
    labels, expected = _direct(backend, image, ChoiceQuestion("How risky is the image?", ("low", "medium", "high"),
                                                              ("", "some risk", "")))
    assert labels == ("A", "B", "C")
    assert [(p.label, p.value) for p in score.probabilities] == [("low", 0), ("medium", 1), ("high", 2)]
    assert [p.probability for p in score.probabilities] == pytest.approx(expected, abs=1e-4)
    assert score.score == pytest.approx(expected[1] + 2 * expected[2], abs=1e-4)
    assert score.confidence == pytest.approx(max(expected), abs=1e-4)
    assert sum(p.probability for p in score.probabilities) == pytest.approx(1.0, abs=1e-6)

    # the predicate answer is the rule's p(violates), as the rule alone scores it
    (verdict,) = backend.judge(image, policy.model_copy(update={"rules": [policy.rules[0]]}))
    assert predicate.probability == pytest.approx(verdict.probability, abs=1e-4)


def test_the_openai_backend_forwards_choice_questions_to_a_server_that_offers_decisions(
    tiny_llava_dir: Path, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """icm serve on the openai backend, whose server is icm serve on the tiny VLM: the questions go
    upstream in one decisions request, and the answers are the upstream model's probabilities
    for the image as the backend sent it (a JPEG data URL)."""
    import base64

    from icm.backends.model import data_urls
    from icm.backends.openai_compat import OpenAIBackend
    from icm.backends.transformers import TransformersBackend

    options = tmp_path / "backend.yaml"
    options.write_text("explain: none\n")
    upstream = LiveServer(settings_for(sqlite_url, tmp_path, policies=["icm-r1"],
                                       backend=f"transformers:{tiny_llava_dir}", backend_options=options)).start()
    try:
        monkeypatch.setenv("ICM_UPSTREAM_KEY", upstream.key("moderate"))
        remote = OpenAIBackend(f"icm-r1@{upstream.url}/v1", explain="none", scoring="decisions",
                               api_key_env="ICM_UPSTREAM_KEY", max_retries=0)
        (tmp_path / "front").mkdir()
        front = LiveServer(settings_for(f"sqlite:///{tmp_path / 'front' / 'icm.db'}", tmp_path / "front",
                                        policies=["icm-r1"]), backend=remote).start()
        try:
            client = openai.OpenAI(api_key=front.key("moderate"), base_url=front.url + "/v1", max_retries=0)
            data = png_bytes(12)
            decision = client.decisions.create(
                model="icm-r1",
                input=[{"role": "user", "content": [{"type": "input_image", "image_url": data_url(data)}]}],
                questions=QUESTIONS,  # type: ignore[arg-type]
            )
        finally:
            front.stop()
    finally:
        upstream.stop()
    choice, score = decision.answers
    assert choice.type == "choice" and score.type == "score"
    (tmp_path / "image.png").write_bytes(data)
    (sent,) = data_urls(load_image(tmp_path / "image.png"), remote.options)
    (tmp_path / "sent.jpg").write_bytes(base64.b64decode(sent.split(",", 1)[1]))
    backend = TransformersBackend(str(tiny_llava_dir), explain="none")
    image = load_image(tmp_path / "sent.jpg")
    _, expected = _direct(backend, image, ChoiceQuestion("Is there a cat?", ("Yes", "No", "true"),
                                                         ("", "", "a cat and a dog")))
    assert [p.probability for p in choice.probabilities] == pytest.approx(expected, abs=1e-4)
    assert [p.value for p in choice.probabilities] == ["Yes", "No", True]
    _, expected = _direct(backend, image, ChoiceQuestion("How risky is the image?", ("low", "medium", "high"),
                                                         ("", "some risk", "")))
    assert [p.probability for p in score.probabilities] == pytest.approx(expected, abs=1e-4)
    assert score.score == pytest.approx(expected[1] + 2 * expected[2], abs=1e-4)
