"""The transformers backend on a tiny random LLaVA (and Qwen2-VL at the model level)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from icm import Moderator
from icm.backends.base import BackendError, load_backend
from icm.backends.packing import score_prompts
from icm.backends.scoring import AnswerTokens, common_prefix_length
from icm.backends.transformers import TransformersBackend
from icm.cli.app import app
from icm.media import load_image
from icm.policy.load import load_policy
from icm.results import Verdict


@pytest.fixture(scope="module")
def backend(tiny_llava_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_llava_dir), explain="none")


def hand_probability(model_dir: Path, image_path: Path, question: str) -> float:
    """p(Yes) computed here from the model's own logits, without the backend's code."""
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(model_dir)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    frame = load_image(image_path).frames[0]
    inputs = processor(text=[text], images=[Image.fromarray(frame)], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    yes = processor.tokenizer.convert_tokens_to_ids("Yes")
    no = processor.tokenizer.convert_tokens_to_ids("No")
    ey, en = math.exp(float(logits[yes])), math.exp(float(logits[no]))
    return ey / (ey + en)


def test_probabilities_are_the_softmax_of_the_yes_no_logits(
    backend: TransformersBackend, tiny_llava_dir: Path, astronaut: Path
) -> None:
    policy = load_policy("icm-r1")
    verdicts = backend.judge(load_image(astronaut), policy)
    questions = backend.prompts.verdict_prompts(policy, [])
    assert [v.rule_id for v in verdicts] == [r.id for r in policy.rules]
    for verdict, question in zip(verdicts[:2], questions[:2], strict=True):
        expected = hand_probability(tiny_llava_dir, astronaut, question)
        assert verdict.probability == pytest.approx(expected, abs=1e-4)
        assert verdict.verdict is (Verdict.violates if expected > 0.5 else Verdict.complies)


def test_shared_prefix_gives_the_same_probabilities_as_independent_passes(
    tiny_llava_dir: Path, astronaut: Path
) -> None:
    image, policy = load_image(astronaut), load_policy("icm-r1")
    shared = TransformersBackend(str(tiny_llava_dir), explain="none", batch_size=2)
    alone = TransformersBackend(str(tiny_llava_dir), explain="none", share_prefix=False)
    p_shared = [v.probability for v in shared.judge(image, policy)]
    p_alone = [v.probability for v in alone.judge(image, policy)]
    assert p_shared == pytest.approx(p_alone, abs=2e-4)


def test_common_prefix_length() -> None:
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5, 6], [5, 6]]) == 2
    assert common_prefix_length([[1], [2]]) == 0


def test_moderator_end_to_end_with_explanations(tiny_llava_dir: Path, astronaut: Path) -> None:
    moderator = Moderator(
        "icm-r1", backend=f"transformers:{tiny_llava_dir}", explain="all", max_new_tokens=16
    )
    result = moderator.moderate(astronaut)
    assert result.error is None
    assert result.backend.name == "transformers"
    assert result.backend.models["prompts"] == "verdict.v1,explain.v1,reask.v1"
    assert len(result.verdicts) == len(moderator.policy.rules)
    for verdict in result.verdicts:
        assert verdict.probability is not None and 0.0 <= verdict.probability <= 1.0
        # A random model writes no valid JSON: the scored verdict stands, the failure is said
        # and both raw answers (first try and re-ask) are kept for audit.
        assert "could not be used" in verdict.explanation
        assert verdict.raw is not None and "\n---\n" in verdict.raw


def test_cli_moderate_with_a_model_directory(tiny_llava_dir: Path, astronaut: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["moderate", str(astronaut), "--policy", "icm-r1", "--backend",
         f"transformers:{tiny_llava_dir}", "--explain", "none", "--format", "jsonl", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["backend"]["name"] == "transformers"
    assert all(v["probability"] is not None for v in record["verdicts"])
    assert all(v["raw"] is None for v in record["verdicts"])  # --explain none: nothing generated


def test_backend_keywords_from_python_and_yaml(tiny_llava_dir: Path, astronaut: Path, tmp_path: Path) -> None:
    moderator = Moderator("icm-r1", f"transformers:{tiny_llava_dir}", dtype="float32", with_signals=True,
                          explain="none", batch_size=2)
    result = moderator.moderate(astronaut)
    assert result.error is None
    assert result.backend.models["prompts"].startswith("verdict_with_signals.v1,")
    options = tmp_path / "options.yaml"
    options.write_text("dtype: float32\nbatch_sise: 4\n")
    args = ["moderate", str(astronaut), "--policy", "icm-r1", "--backend", f"transformers:{tiny_llava_dir}",
            "--format", "jsonl", "--quiet", "--backend-options", str(options)]
    typo = CliRunner().invoke(app, args)
    assert typo.exit_code == 2
    assert "cannot take these arguments" in typo.output and "batch_sise" in typo.output


def test_cli_rejects_explain_for_the_local_backend(astronaut: Path) -> None:
    result = CliRunner().invoke(app, ["moderate", str(astronaut), "--explain", "all"])
    assert result.exit_code == 2
    assert "cannot take these arguments" in result.output


def test_non_finite_logits_are_uncertain_never_complies(
    backend: TransformersBackend, astronaut: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = backend.model.forward

    def broken(*args: object, **kwargs: object) -> object:
        output = real(*args, **kwargs)
        output.logits = torch.full_like(output.logits, float("nan"))
        return output

    monkeypatch.setattr(backend.model, "forward", broken)
    verdicts = backend.judge(load_image(astronaut), load_policy("icm-r1"))
    assert {v.verdict for v in verdicts} == {Verdict.uncertain}
    assert all(v.raw for v in verdicts)


def test_a_tokenizer_that_maps_spaced_answer_words_to_unknown_scores(tmp_path: Path, astronaut: Path) -> None:
    # A word-level vocabulary: " Yes" and " No" both encode to <unk>. That is no answer token, and
    # the bare spellings "Yes" and "No" are distinct single tokens, so the model scores.
    from backends.tiny_vlm import save_tiny_llava

    model_dir = save_tiny_llava(tmp_path / "spaced", spaced_words_unknown=True)
    backend = TransformersBackend(str(model_dir), explain="none")
    tokenizer = backend.processor.tokenizer
    unknown = tokenizer.unk_token_id
    assert tokenizer.encode(" Yes", add_special_tokens=False) == [unknown]
    assert tokenizer.encode(" No", add_special_tokens=False) == [unknown]
    assert backend.answer.yes_ids == (tokenizer.convert_tokens_to_ids("Yes"),)
    assert backend.answer.no_ids == (tokenizer.convert_tokens_to_ids("No"),)
    verdicts = backend.judge(load_image(astronaut), load_policy("icm-r1"))
    assert all(v.probability is not None and v.verdict is not Verdict.uncertain for v in verdicts)


def test_bad_paths_and_options_are_backend_errors(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="no model directory"):
        load_backend(f"transformers:{tmp_path / 'missing'}")
    with pytest.raises(BackendError, match="cannot load"):
        load_backend(f"transformers:{tmp_path}")
    with pytest.raises(BackendError, match="cannot take these arguments"):
        load_backend(f"transformers:{tmp_path}", colour="blue")


def test_peft_lora_directory_is_a_model_path(tiny_llava_dir: Path, tmp_path: Path, astronaut: Path) -> None:
    import peft
    from transformers import LlavaForConditionalGeneration

    base = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir)
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False
    )
    adapted = peft.get_peft_model(base, config)
    adapter_dir = tmp_path / "adapter"
    adapted.save_pretrained(adapter_dir)
    assert json.loads((adapter_dir / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ] == str(tiny_llava_dir)

    tuned = TransformersBackend(str(adapter_dir), explain="none")
    assert tuned.info().models["adapter"] == str(adapter_dir)
    assert tuned.info().models["model"] == str(tiny_llava_dir)
    image, policy = load_image(astronaut), load_policy("icm-r1")
    plain = TransformersBackend(str(tiny_llava_dir), explain="none")
    tuned_p = [v.probability for v in tuned.judge(image, policy)]
    plain_p = [v.probability for v in plain.judge(image, policy)]
    assert tuned_p != plain_p  # the adapter's (non-zero) weights are applied


def test_qwen2_vl_scoring_at_model_level() -> None:
    """Qwen2-VL's processor needs torchvision (not installable here): inputs are built by hand."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    image_token = 60
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": 64, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "bos_token_id": 1,
            "eos_token_id": 2,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 1, 1],
                                "rope_theta": 10000.0},
        },
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2,
                       "patch_size": 2, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=image_token, video_token_id=61, vision_start_token_id=62,
        vision_end_token_id=63,
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config).eval()
    patches = torch.randn(16, 3 * 2 * 2 * 2)  # a 4x4 grid of 2x2 patches, 2 frames deep

    def encode(rule_tokens: list[int]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([[3, 4, 62, *[image_token] * 4, 63, 5, 6, 7, *rule_tokens]])
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": (ids == image_token).long(),
            "pixel_values": patches,
            "image_grid_thw": torch.tensor([[1, 4, 4]]),
        }

    encoded = [encode([8, 9, 10]), encode([11, 12]), encode([13, 14, 15, 16, 17])]
    answer = AnswerTokens("Yes", "No", (20, 22), (21,))
    shared = score_prompts(model, encoded, answer, image_token_id=image_token, rule_batch=2)
    alone = score_prompts(model, encoded, answer, share_prefix=False, image_token_id=image_token)
    assert shared == pytest.approx(alone, abs=1e-5)
    with torch.no_grad():
        logits = model(**encoded[1]).logits[0, -1]
    yes = torch.logsumexp(logits[[20, 22]], 0)
    expected = float(torch.softmax(torch.stack([yes, logits[21]]), 0)[0])
    assert shared[1] == pytest.approx(expected, abs=1e-5)


def test_a_batch_of_images_scores_as_each_image_alone(
    tiny_llava_dir: Path, astronaut: Path, tmp_path: Path
) -> None:
    from helpers import sample_image

    # two images per forward (the CPU's default is one, which judges each image alone)
    backend = TransformersBackend(str(tiny_llava_dir), explain="none", image_batch=2)
    assert backend.batches_images
    coffee = tmp_path / "coffee-batch.png"  # not beside the examples: they are counted there
    sample_image("coffee").save(coffee)
    images, policy = [load_image(astronaut), load_image(coffee)], load_policy("icm-r1")
    together = backend.judge_batch(images, policy)
    for image, outcome in zip(images, together, strict=True):
        assert not isinstance(outcome, Exception)
        alone = backend.judge(image, policy)
        assert [v.probability for v in outcome] == pytest.approx([v.probability for v in alone], abs=1e-4)


def test_packed_rule_suffixes_of_two_images_equal_separate_full_passes(
    backend: TransformersBackend, astronaut: Path, tmp_path: Path
) -> None:
    """The packed kernel (two images with prefixes of different lengths in one forward, each
    image's suffixes side by side in a row, questions split over forwards) equals K full passes."""
    from helpers import sample_image

    from icm.backends.model import PromptSet
    from icm.backends.packing import Questions, pack_rows, score_questions

    coffee = tmp_path / "coffee.png"
    sample_image("coffee").save(coffee)
    policy = load_policy("icm-r1")
    images = [backend._see(load_image(astronaut)), backend._see(load_image(coffee))]
    prompts = [  # prefixes of different lengths: the second lists known facts
        PromptSet(with_signals=False).verdict_prompts(policy, []),
        PromptSet(with_signals=True).verdict_prompts(policy, ["fact", "fact fact"]),
    ]
    questions = [backend._encode_questions(seen, p) for seen, p in zip(images, prompts, strict=True)]
    assert all(isinstance(q, Questions) for q in questions)
    assert questions[0].prefix_length != questions[1].prefix_length  # type: ignore[union-attr]
    lengths = [len(s) for s in questions[0].suffixes]  # type: ignore[union-attr]
    assert len(pack_rows(lengths)) < len(lengths)  # several suffixes share a row
    packed = score_questions(backend.model, questions, backend.answer, rule_batch=7)  # type: ignore[arg-type]
    for seen, image_prompts, scores in zip(images, prompts, packed, strict=True):
        full = [backend._encode(seen, [("user", p)]) for p in image_prompts]
        separate = score_prompts(backend.model, full, backend.answer, share_prefix=False)
        assert len(scores) == len(separate) == len(policy.rules)
        assert scores == pytest.approx(separate, abs=1e-4)


def test_an_image_is_processed_once_for_all_its_rules(
    tiny_llava_dir: Path, astronaut: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = TransformersBackend(str(tiny_llava_dir), explain="none")
    image_processor = backend.processor.image_processor
    real = image_processor.preprocess
    calls = []

    def counting(*args: object, **kwargs: object) -> object:  # a spy: the real preprocessing runs
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(image_processor, "preprocess", counting)
    policy = load_policy("icm-r1")
    verdicts = backend.judge(load_image(astronaut), policy)
    assert len(verdicts) == len(policy.rules) > 1
    assert len(calls) == 1
