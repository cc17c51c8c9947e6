"""Tiny randomly initialised vision-language models, built offline from a config, for tests and
benchmarks. Nothing here downloads anything: the tokenizer is a WordLevel vocabulary built from the
prompts themselves, the image processor a CLIPImageProcessor at 8x8 pixels."""

from __future__ import annotations

from pathlib import Path

from icm.backends.transformers import LLAVA_CHAT_TEMPLATE
from icm.policy.load import load_policy
from icm.prompts import render

IMAGE_TOKEN = "<image>"
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", IMAGE_TOKEN]


def _vocabulary() -> list[str]:
    from tokenizers.pre_tokenizers import Whitespace

    texts = ["USER : ASSISTANT : Yes No yes no { } [ ] \" , true false"]
    for name in ("icm-r1", "general"):
        policy = load_policy(name)
        facts = ["fact"]
        for rule in policy.rules:
            texts.append(render("verdict", policy=policy, rule=rule))
            texts.append(render("verdict_with_signals", policy=policy, rule=rule, facts=facts))
        texts.append(render("explain", policy=policy, rules=policy.rules, facts=facts, schema="{}"))
    texts.append("A B C D")  # the letters that label choice questions (icm.backends.choices)
    words: dict[str, None] = {}
    for text in texts:
        for word, _ in Whitespace().pre_tokenize_str(text):
            words.setdefault(word, None)
    return SPECIAL + [w for w in words if w not in SPECIAL]


def build_processor(image_size: int = 8, spaced_words_unknown: bool = False):  # -> LlavaProcessor
    """``spaced_words_unknown``: split before spaces and keep them, so that " Yes" (with its space)
    is no word of the vocabulary and encodes to the unknown token, while "Yes" is one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPImageProcessorPil, LlavaProcessor, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(_vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = (pre_tokenizers.Split(" ", behavior="merged_with_next") if spaced_words_unknown
                             else pre_tokenizers.Whitespace())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=2,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )


def build_tiny_llava(seed: int = 0, layers: int = 2, hidden: int = 32, image_size: int = 8,
                     spaced_words_unknown: bool = False):
    """(model, processor): a LLaVA with a CLIP vision tower and a Llama language model.

    The image becomes (image_size / 2) ** 2 tokens: 16 at 8 px, 576 (LLaVA-1.5's count) at 48 px.
    """
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    processor = build_processor(image_size, spaced_words_unknown)
    tokenizer = processor.tokenizer
    config = LlavaConfig(
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=4,
            intermediate_size=37,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=CLIPVisionConfig(
            image_size=image_size,
            patch_size=2,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            projection_dim=32,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    return model, processor


def save_tiny_llava(directory: Path, seed: int = 0, **options: int) -> Path:
    model, processor = build_tiny_llava(seed, **options)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
