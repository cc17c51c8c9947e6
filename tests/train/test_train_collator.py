"""The collator: images capped, chat-formatted, loss on the assistant's tokens only; mixing; LoRA targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from backends.tiny_vlm import build_processor, build_tiny_llava
from helpers import sample_image

from icm.train.sft import IGNORE_INDEX, ConversationCollator, lora_targets, mix_records


@pytest.fixture(scope="module")
def processor():  # -> LlavaProcessor
    return build_processor()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    sample_image("astronaut").save(path)
    return str(path)


def turn(role: str, text: str, image: bool = False) -> dict:
    content = [{"type": "image"}] if image else []
    return {"role": role, "content": [*content, {"type": "text", "text": text}]}


def trained_tokens(processor, batch: dict, row: int) -> list[str]:
    labels = batch["labels"][row]
    return processor.tokenizer.convert_ids_to_tokens([int(t) for t in labels[labels != IGNORE_INDEX]])


def test_only_the_assistant_answer_and_its_end_token_carry_loss(processor, photo: str) -> None:
    example = {
        "messages": [turn("user", "Does the image violate this rule ? Answer Yes or No .", True),
                     turn("assistant", "Yes")],
        "images": [photo],
    }
    batch = ConversationCollator(processor)([example])
    assert trained_tokens(processor, batch, 0) == ["Yes", "</s>"]
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert int((ids == image_token).sum()) > 0
    assert bool((labels[ids == image_token] == IGNORE_INDEX).all())
    trained = labels != IGNORE_INDEX
    assert bool((labels[trained] == ids[trained]).all())


def test_every_assistant_turn_of_a_conversation_is_trained_and_no_user_turn(processor, photo: str) -> None:
    example = {
        "messages": [
            turn("user", "Does the image violate this rule ?", True),
            turn("assistant", "No"),
            turn("user", "Answer Yes or No ."),
            turn("assistant", "true"),
        ],
        "images": [photo],
    }
    batch = ConversationCollator(processor)([example])
    assert trained_tokens(processor, batch, 0) == ["No", "</s>", "true", "</s>"]


def test_padding_and_text_only_samples_in_one_batch(processor, photo: str) -> None:
    examples = [
        {"messages": [turn("user", "rule ?", True), turn("assistant", "No")], "images": [photo]},
        {"messages": [turn("user", "Does the image violate this rule ? Answer Yes or No ."),
                      turn("assistant", "Yes Yes")], "images": []},
    ]
    batch = ConversationCollator(processor)(examples)
    assert batch["input_ids"].shape[0] == 2 and "pixel_values" in batch
    assert trained_tokens(processor, batch, 0) == ["No", "</s>"]
    assert trained_tokens(processor, batch, 1) == ["Yes", "Yes", "</s>"]
    padding = batch["attention_mask"] == 0
    assert bool(padding.any()) and bool((batch["labels"][padding] == IGNORE_INDEX).all())


def test_images_are_capped_and_sequences_cut(processor, photo: str) -> None:
    collator = ConversationCollator(processor, max_length=12, max_image_side=64)
    assert max(collator._image(photo).size) == 64
    example = {"messages": [turn("user", "Answer Yes or No . " * 10), turn("assistant", "No")], "images": []}
    batch = collator([example])
    assert all(batch[k].shape[1] == 12 for k in ("input_ids", "attention_mask", "labels"))


def test_mixing_adds_general_samples_at_the_ratio_reproducibly() -> None:
    moderation = [{"id": f"m{i}"} for i in range(10)]
    general = [{"id": f"g{i}"} for i in range(3)]
    mixed = mix_records(moderation, [(general, 0.5)], seed=1)
    assert len(mixed) == 15
    assert sum(r["id"].startswith("g") for r in mixed) == 5  # the small set repeats
    assert {r["id"] for r in mixed if r["id"].startswith("g")} == {"g0", "g1", "g2"}
    assert mixed == mix_records(moderation, [(general, 0.5)], seed=1)
    assert mixed != mix_records(moderation, [(general, 0.5)], seed=2)


def test_lora_targets_the_language_model_only() -> None:
    import re

    model, _ = build_tiny_llava()
    pattern = re.compile(lora_targets(model))
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    targeted = [n for n in linear if pattern.fullmatch(n)]
    assert targeted and all(".language_model." in n for n in targeted)
    assert {n.rsplit(".", 1)[-1] for n in targeted} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }
    assert not [n for n in linear if ".language_model." in n and not pattern.fullmatch(n)]


def test_mix_sources_read_plain_messages_records(tmp_path: Path) -> None:
    from icm.train.config import MixSource
    from icm.train.sft import TrainError, load_mix_source

    sample_image("coffee").save(tmp_path / "a.png")  # images are checked when the data is read
    (tmp_path / "general.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
        '{"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]},'
        ' {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]}], "images": ["a.png"]}\n',
        encoding="utf-8",
    )
    records = load_mix_source(MixSource(path=tmp_path / "general.jsonl", ratio=1))
    assert records[0]["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}
    assert records[1]["images"] == [str((tmp_path / "a.png").resolve())]
    (tmp_path / "bad.jsonl").write_text('{"text": "no messages"}\n', encoding="utf-8")
    with pytest.raises(TrainError, match="bad.jsonl:1"):
        load_mix_source(MixSource(path=tmp_path / "bad.jsonl", ratio=1))
