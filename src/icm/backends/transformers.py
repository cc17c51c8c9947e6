"""TransformersBackend: a local vision-language model (base or fine-tuned) through transformers.

``transformers:PATH`` takes any image-text-to-text model directory that
``AutoModelForImageTextToText`` loads (LLaVA, LLaVA-OneVision, Qwen2/2.5-VL, Idefics3/SmolVLM ...)
or a PEFT adapter directory, whose base model is read from its ``adapter_config.json``.

Each rule's verdict is p(violates) from the first answer token's Yes/No logits. The K questions
of one image share the image and the policy text, so that prefix is encoded once and its KV cache
is reused by a single batched pass over the K rule-specific suffixes.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from icm.backends.base import BackendError
from icm.backends.model import ModelDirectoryBackend, resolve_model_path, verdict_from_probability
from icm.backends.options import TransformersOptions
from icm.backends.scoring import AnswerTokens, answer_tokens_for, common_prefix_length, two_way_probability
from icm.llm import Chat, FunctionChat, Generation, JsonSchema, Turn
from icm.media import DecodedImage, pick_frames
from icm.policy.schema import Policy
from icm.results import RuleVerdict

#: Processor outputs that run along the token axis, cut together with ``input_ids``.
_PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")

_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _answer_probabilities(last_logits: torch.Tensor, answer: AnswerTokens) -> list[float]:
    """p(Yes) for each row of next-token logits (NaN where the logits are not finite)."""
    rows = last_logits[:, list(answer.all_ids)].float().tolist()
    n_yes = len(answer.yes_ids)
    probabilities = []
    for row in rows:
        try:
            probabilities.append(two_way_probability(row[:n_yes], row[n_yes:]))
        except ValueError:
            probabilities.append(float("nan"))
    return probabilities


@torch.inference_mode()
def score_prompts(
    model: Any,
    encoded: Sequence[Mapping[str, torch.Tensor]],
    answer: AnswerTokens,
    *,
    share_prefix: bool = True,
    batch_size: int = 16,
    image_token_id: int | None = None,
    pad_token_id: int = 0,
) -> list[float]:
    """p(violates) for each encoded prompt (one image's K rule questions, batch size 1 each).

    With ``share_prefix`` the longest common token prefix (which must hold every image token)
    runs once; its KV cache is copied to ``batch_size`` rows and the rule-specific suffixes run
    in one batched pass each. Otherwise each prompt is its own forward pass.
    """
    ids = [e["input_ids"][0] for e in encoded]
    prefix = common_prefix_length([t.tolist() for t in ids])
    prefix = min(prefix, min(len(t) for t in ids) - 1)  # every prompt keeps a token to score
    images_in_prefix = image_token_id is not None and not any(
        bool((t[prefix:] == image_token_id).any()) for t in ids
    )
    if not (share_prefix and len(encoded) > 1 and prefix > 0 and images_in_prefix):
        return [
            p for e in encoded for p in _answer_probabilities(model(**e).logits[:, -1, :], answer)
        ]
    first = encoded[0]
    prefix_inputs = {k: (v[:, :prefix] if k in _PER_TOKEN else v) for k, v in first.items()}
    cache = model(**prefix_inputs, use_cache=True).cache
    probabilities: list[float] = []
    for start in range(0, len(ids), batch_size):
        suffixes = [t[prefix:] for t in ids[start : start + batch_size]]
        lengths = torch.tensor([len(s) for s in suffixes])
        batch = torch.full((len(suffixes), int(lengths.max())), pad_token_id, dtype=ids[0].dtype)
        for row, suffix in enumerate(suffixes):
            batch[row, : len(suffix)] = suffix
        rows_cache = copy.deepcopy(cache)
        rows_cache.batch_repeat_interleave(len(suffixes))
        # Right padding and no attention mask: a real token never attends to the pads after it,
        # and positions simply continue from the cached prefix.
        logits = model(input_ids=batch.to(ids[0].device), cache=rows_cache, use_cache=True).logits
        last = logits[torch.arange(len(suffixes)), lengths.to(logits.device) - 1, :]
        probabilities.extend(_answer_probabilities(last, answer))
    return probabilities


class TransformersBackend(ModelDirectoryBackend):
    """A local VLM: verdicts from Yes/No logits, explanations by generation where asked.

    Options (:class:`~icm.backends.options.TransformersOptions`): device, dtype, explain,
    with_signals, threshold, share_prefix, batch_size, max_tokens (or max_new_tokens),
    max_frames, yes, no.
    """

    name = "transformers"
    options_model = TransformersOptions
    options: TransformersOptions
    batches_images = True

    def __init__(self, path: str, **options: Any) -> None:
        """``path``: a model directory, or a PEFT adapter directory (its base model is loaded)."""
        super().__init__(**options)
        self._lock = threading.Lock()
        device = self.options.device
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        if self.options.dtype == "auto":
            self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            self.dtype = _DTYPES[self.options.dtype]
        self.model_path, self.adapter_path = resolve_model_path(path)
        self.model, self.processor = self._load()
        tokenizer = self.processor.tokenizer
        self.answer = answer_tokens_for(tokenizer, self.options.yes, self.options.no)
        self.image_token_id: int | None = getattr(self.model.config, "image_token_id", None)
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else tokenizer.eos_token_id or 0)

    def _load(self) -> tuple[Any, Any]:
        processor_dir = self.model_path
        if self.adapter_path is not None and any(
            (self.adapter_path / f).exists() for f in ("processor_config.json", "tokenizer.json")
        ):
            processor_dir = str(self.adapter_path)
        try:
            processor = AutoProcessor.from_pretrained(processor_dir)
            model = AutoModelForImageTextToText.from_pretrained(self.model_path, dtype=self.dtype)
            if self.adapter_path is not None:
                from peft import PeftModel

                # Merged once at load: inference then runs at the base model's speed.
                model = PeftModel.from_pretrained(model, str(self.adapter_path)).merge_and_unload()
        except ImportError as exc:
            raise BackendError(
                f"loading {self.model_path} needs {exc.name!r}: pip install 'icm-assistant[hf]'"
            ) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(
                f"cannot load a vision-language model from {self.model_path}: {exc}"
            ) from exc
        model = model.to(self.device)  # type: ignore[arg-type]  # transformers' stub is too narrow
        return model.eval(), processor

    def _see(self, image: DecodedImage) -> list[Image.Image]:
        return [Image.fromarray(f) for f in pick_frames(image, self.options.max_frames)]

    def _score(self, seen: list[Image.Image], prompts: list[str], policy: Policy) -> list[RuleVerdict]:
        with self._lock:  # one forward pass at a time; torch already uses every core
            encoded = [self._encode(seen, [("user", p)]) for p in prompts]
            probabilities = score_prompts(
                self.model,
                encoded,
                self.answer,
                share_prefix=self.options.share_prefix,
                batch_size=self.options.batch_size,
                image_token_id=self.image_token_id,
                pad_token_id=self.pad_token_id,
            )
        return [
            verdict_from_probability(rule.id, p, self.options.threshold)
            for rule, p in zip(policy.rules, probabilities, strict=True)
        ]

    def _chat(self, seen: list[Image.Image]) -> Chat:
        """Greedy generation; a schema is not enforced while decoding here (the answer is validated)."""

        def answer(turns: Sequence[Turn], schema: JsonSchema | None, max_tokens: int | None) -> Generation:
            with self._lock:
                return self._generate(seen, turns, max_tokens or self.options.max_tokens)

        return FunctionChat(answer)

    def _encode(self, frames: list[Image.Image], turns: Sequence[Turn]) -> dict[str, Any]:
        """Chat-format the conversation through the processor's template and tokenize it."""
        messages: list[dict[str, Any]] = []
        for i, (role, text) in enumerate(turns):
            content: list[dict[str, Any]] = [{"type": "image"} for _ in frames] if i == 0 else []
            content.append({"type": "text", "text": text})
            messages.append({"role": role, "content": content})
        chat = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        batch = self.processor(text=[chat], images=frames, return_tensors="pt")
        return {
            k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in batch.items()
        }

    @torch.inference_mode()
    def _generate(self, frames: list[Image.Image], turns: Sequence[Turn], max_tokens: int) -> Generation:
        inputs = self._encode(frames, turns)
        output = self.model.generate(
            **inputs,
            max_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=self.pad_token_id,
        )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        text = str(self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True))
        return Generation(text, tokens=int(output.shape[1]))

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
