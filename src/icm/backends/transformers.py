"""TransformersBackend: a local vision-language model (base or fine-tuned) through transformers.

``transformers:PATH`` takes any image-text-to-text model directory that
``AutoModelForImageTextToText`` loads (LLaVA, LLaVA-OneVision, Qwen2/2.5-VL, Idefics3/SmolVLM ...)
or a PEFT adapter directory, whose base model is read from its ``adapter_config.json``.

Each rule's verdict is p(violates) from the first answer token's Yes/No logits. The K questions
of one image share the image and the policy text: the image is processed once, that prefix runs
once, and the K rule-specific suffixes are packed side by side over its KV cache
(:func:`icm.backends.packing.score_questions`), several images at a time where they are judged
together.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from icm.backends.base import BackendError
from icm.backends.model import ModelDirectoryBackend, resolve_model_path, verdict_from_probability
from icm.backends.options import TransformersOptions
from icm.backends.packing import Questions, prefix_of, score_prompts, score_questions, shared_prefix, split_questions
from icm.backends.scoring import answer_tokens_for
from icm.llm import Chat, FunctionChat, Generation, JsonSchema, Turn
from icm.media import DecodedImage, pick_frames
from icm.policy.schema import Policy
from icm.prompts.moderation import chat_turns
from icm.results import RuleVerdict

#: LLaVA-1.5's conversation format ("USER: <image>\n... ASSISTANT: ...</s>") as a Jinja chat
#: template, for LLaVA processors assembled offline (the tiny models the tests and benchmarks build
#: from a config carry it; released LLaVA checkpoints ship their own)
LLAVA_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}USER: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n"
    "{% else %}ASSISTANT: {{ m['content'][0]['text'] }}</s>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


class TransformersBackend(ModelDirectoryBackend):
    """A local VLM: verdicts from Yes/No logits, explanations by generation where asked.

    Options (:class:`~icm.backends.options.TransformersOptions`): device, dtype, explain,
    with_signals, threshold, share_prefix, rule_batch (or batch_size), image_batch, max_tokens (or
    max_new_tokens),
    max_frames, yes, no.
    """

    name = "transformers"
    options_model = TransformersOptions
    options: TransformersOptions

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
        self.image_batch = self.options.image_batch or (1 if self.device.type == "cpu" else 8)
        self.batches_images = self.image_batch > 1  # one image per forward gains nothing from waiting
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
        return self._score_batch([seen], [prompts], policy)[0]

    def _score_batch(
        self, seen: Sequence[list[Image.Image]], prompts: Sequence[list[str]], policy: Policy
    ) -> list[list[RuleVerdict]]:
        """Each image encoded once; up to ``image_batch`` images' prefixes in one forward, their
        rule suffixes packed over the prefixes' KV cache (:func:`score_questions`)."""
        with self._lock:  # one forward pass at a time; torch already uses every core
            prepared = [self._encode_questions(frames, asked) for frames, asked in zip(seen, prompts, strict=True)]
            scores: list[list[float]] = [[] for _ in prepared]
            shared = [(i, q) for i, q in enumerate(prepared) if isinstance(q, Questions)]
            for start in range(0, len(shared), self.image_batch):
                group = shared[start : start + self.image_batch]
                try:
                    scored = self._score_questions([q for _, q in group])
                except ValueError:  # images whose inputs cannot be stacked (sizes differ): one by one
                    scored = [self._score_questions([q])[0] for _, q in group]
                for (i, _), p in zip(group, scored, strict=True):
                    scores[i] = p
            for i, q in enumerate(prepared):
                if not isinstance(q, Questions):
                    scores[i] = score_prompts(self.model, q, self.answer, share_prefix=False)
        return [
            [verdict_from_probability(rule.id, p, self.options.threshold)
             for rule, p in zip(policy.rules, probabilities, strict=True)]
            for probabilities in scores
        ]

    def _score_questions(self, questions: list[Questions]) -> list[list[float]]:
        return score_questions(
            self.model, questions, self.answer, rule_batch=self.options.rule_batch, pad_token_id=self.pad_token_id
        )

    def _encode_questions(self, frames: list[Image.Image], prompts: list[str]) -> Questions | list[dict[str, Any]]:
        """One image's rule questions, the image processed once: the first question through the
        processor, every question's text through the tokenizer alone; the suffixes after their
        common prefix are the rules'. Each question fully encoded where they share no prefix (or
        with ``share_prefix`` off)."""
        if not self.options.share_prefix or len(prompts) < 2:
            return [self._encode(frames, [("user", p)]) for p in prompts]
        chats = [self._chat_text(frames, [("user", p)]) for p in prompts]
        first = self._encode(frames, [("user", prompts[0])], chat=chats[0])
        texts = self.processor.tokenizer(chats)["input_ids"]
        common = shared_prefix(texts, self.image_token_id)
        ids = first["input_ids"][0]
        tail = texts[0][common:] if common is not None else []
        length = len(ids) - len(tail)
        if common is None or length <= 0 or ids[length:].tolist() != tail:
            # The processor does more than expand image tokens here: encode each question fully.
            rest = zip(prompts[1:], chats[1:], strict=True)
            encoded = [first] + [self._encode(frames, [("user", p)], chat=c) for p, c in rest]
            return split_questions(encoded, self.image_token_id) or encoded
        return Questions(
            prefix=prefix_of(first, length),
            suffixes=[torch.tensor(t[common:], dtype=ids.dtype, device=ids.device) for t in texts],
        )

    def _chat(self, seen: list[Image.Image]) -> Chat:
        """Greedy generation; a schema is not enforced while decoding here (the answer is validated)."""

        def answer(turns: Sequence[Turn], schema: JsonSchema | None, max_tokens: int | None) -> Generation:
            with self._lock:
                return self._generate(seen, turns, max_tokens or self.options.max_tokens)

        return FunctionChat(answer)

    def _chat_text(self, frames: list[Image.Image], turns: Sequence[Turn]) -> str:
        """The conversation chat-formatted through the processor's template."""
        messages = chat_turns(turns, len(frames))
        return str(self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def _encode(self, frames: list[Image.Image], turns: Sequence[Turn], chat: str | None = None) -> dict[str, Any]:
        """Chat-format the conversation (unless ``chat`` is given) and run the processor on it."""
        text = chat if chat is not None else self._chat_text(frames, turns)
        batch = self.processor(text=[text], images=frames, return_tensors="pt")
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
