"""TransformersBackend: a local vision-language model (base or fine-tuned) through transformers.

``transformers:PATH`` takes any image-text-to-text model directory that
``AutoModelForImageTextToText`` loads (LLaVA, LLaVA-OneVision, Qwen2/2.5-VL, Idefics3/SmolVLM ...)
or a PEFT adapter directory, whose base model is read from its ``adapter_config.json``.

Each rule's verdict is p(violates) from the first answer token's Yes/No logits. The K questions
of one image share the image and the policy text: the image is processed once, that prefix runs
once, and the K rule-specific suffixes are packed side by side over its KV cache
(:func:`score_questions`), several images at a time where they are judged together.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from icm.prompts.moderation import chat_turns
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


@dataclass
class Questions:
    """One image's K rule questions: the shared prefix (image inputs included, batch of one) and
    each rule's suffix (1-D token ids, at least one token each)."""

    prefix: dict[str, torch.Tensor]
    suffixes: list[torch.Tensor]

    @property
    def prefix_length(self) -> int:
        return int(self.prefix["input_ids"].shape[1])


def split_questions(
    encoded: Sequence[Mapping[str, torch.Tensor]], image_token_id: int | None
) -> Questions | None:
    """The shared prefix and the rule suffixes of one image's fully encoded questions, or None
    when they cannot share one (a single question, no common prefix, or image tokens after it)."""
    ids = [e["input_ids"][0] for e in encoded]
    prefix = common_prefix_length([t.tolist() for t in ids])
    prefix = min(prefix, min(len(t) for t in ids) - 1)  # every question keeps a token to score
    if len(encoded) < 2 or prefix <= 0 or image_token_id is None:
        return None
    if any(bool((t[prefix:] == image_token_id).any()) for t in ids):
        return None
    first = encoded[0]
    return Questions(
        prefix={k: (v[:, :prefix] if k in _PER_TOKEN else v) for k, v in first.items()},
        suffixes=[t[prefix:] for t in ids],
    )


def pack_rows(lengths: Sequence[int]) -> list[list[int]]:
    """Suffix indices grouped into rows of nearly equal length: about four suffixes per row, each
    suffix (longest first) going to the row that is shortest so far.

    Rows are padded to the longest one, so balanced rows waste little; each row's tokens also
    attend to the row's other suffixes (masked off), so rows are kept a few suffixes short.
    """
    if not lengths:
        return []
    count = max(1, round(len(lengths) / 4))
    rows: list[list[int]] = [[] for _ in range(count)]
    filled = [0] * count
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        shortest = filled.index(min(filled))
        rows[shortest].append(i)
        filled[shortest] += lengths[i]
    return rows


def _stack_inputs(prefixes: Sequence[Mapping[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Several images' prefixes as one right-padded batch: token tensors padded, image tensors
    concatenated along their first axis (a ValueError where the images' shapes do not allow it)."""
    longest = max(int(p["input_ids"].shape[1]) for p in prefixes)
    batch: dict[str, torch.Tensor] = {}
    for key in prefixes[0]:
        values = [p[key] for p in prefixes]
        if key in _PER_TOKEN:
            fill = pad_token_id if key == "input_ids" else 0
            padded = values[0].new_full((len(values), longest), fill)
            for row, v in enumerate(values):
                padded[row, : v.shape[1]] = v[0]
            batch[key] = padded
        else:
            try:
                batch[key] = torch.cat(values)
            except RuntimeError as exc:
                raise ValueError(f"images cannot share a batch: {key} {exc}") from exc
    mask = torch.zeros_like(batch["input_ids"])
    for row, p in enumerate(prefixes):
        mask[row, : p["input_ids"].shape[1]] = 1
    batch["attention_mask"] = mask
    return batch


@torch.inference_mode()
def score_questions(
    model: Any,
    questions: Sequence[Questions],
    answer: AnswerTokens,
    *,
    rule_batch: int = 64,
    pad_token_id: int = 0,
) -> list[list[float]]:
    """p(violates) for every rule question of several images: each image's prefix runs once (all
    images in one forward), then the rule suffixes run over the prefixes' KV cache.

    No work goes to padding: an image's suffixes are packed side by side into a few rows, each
    token at its own position (prefix length + offset in its suffix) and seeing only the prefix
    and the earlier tokens of its own suffix (a block-diagonal attention mask); rows are nearly
    full, so padding them to the longest is small. At most ``rule_batch`` questions go into one
    suffix forward. The result equals each question scored alone by a full forward pass.
    """
    prefixes = [q.prefix for q in questions]
    lengths = [q.prefix_length for q in questions]
    longest = max(lengths)
    inputs = _stack_inputs(prefixes, pad_token_id)
    cache = model(**inputs, use_cache=True, logits_to_keep=1).cache  # the prefix's logits are not needed
    # Multimodal-RoPE models (Qwen2-VL) number text after an image from a per-image offset.
    deltas = getattr(getattr(model, "model", model), "rope_deltas", None)
    device = inputs["input_ids"].device
    dtype = next(model.parameters()).dtype
    blocked = torch.finfo(dtype).min
    items = [(b, k) for b, q in enumerate(questions) for k in range(len(q.suffixes))]
    results: list[list[float]] = [[float("nan")] * len(q.suffixes) for q in questions]
    chunks = [items[i : i + rule_batch] for i in range(0, len(items), rule_batch)]
    for n, chunk in enumerate(chunks):
        # rows: (image, [(rule, suffix)]) with each image's suffixes packed into a few rows
        rows: list[tuple[int, list[int]]] = []
        for b in dict.fromkeys(b for b, _ in chunk):
            ks = [k for bb, k in chunk if bb == b]
            for row in pack_rows([len(questions[b].suffixes[k]) for k in ks]):
                rows.append((b, [ks[i] for i in row]))
        width = max(sum(len(questions[b].suffixes[k]) for k in ks) for b, ks in rows)
        tokens = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.full((len(rows), 1, width, longest + width), blocked, dtype=dtype)
        last: list[tuple[int, int, int, int]] = []  # (row, column, image, rule)
        for r, (b, ks) in enumerate(rows):
            mask[r, 0, :, : lengths[b]] = 0.0  # every token (pads too: they stay finite) sees the prefix
            positions[r, :] = lengths[b]
            start = 0
            for k in ks:
                suffix = questions[b].suffixes[k]
                end = start + len(suffix)
                tokens[r, start:end] = suffix
                positions[r, start:end] = lengths[b] + torch.arange(len(suffix))
                block = torch.triu(torch.full((len(suffix), len(suffix)), blocked, dtype=dtype), diagonal=1)
                mask[r, 0, start:end, longest + start : longest + end] = block
                last.append((r, end - 1, b, k))
                start = end
        row_images = torch.tensor([b for b, _ in rows], device=device)
        rows_cache = cache if n == len(chunks) - 1 else copy.deepcopy(cache)
        rows_cache.batch_select_indices(row_images)
        position_ids = positions.to(device)
        if isinstance(deltas, torch.Tensor):
            position_ids = (position_ids + deltas.to(device)[row_images]).unsqueeze(0).expand(3, -1, -1)
        # Only the columns where some suffix ends go through the (vocabulary-wide) output head.
        columns = sorted({c for _, c, *_ in last})
        logits = model(
            input_ids=tokens.to(device), attention_mask=mask.to(device), position_ids=position_ids,
            cache=rows_cache, use_cache=True, logits_to_keep=torch.tensor(columns, device=device),
        ).logits
        picked = logits[torch.tensor([r for r, *_ in last]), torch.tensor([columns.index(c) for _, c, *_ in last]), :]
        for (_, _, b, k), p in zip(last, _answer_probabilities(picked, answer), strict=True):
            results[b][k] = p
    return results


@torch.inference_mode()
def score_prompts(
    model: Any,
    encoded: Sequence[Mapping[str, torch.Tensor]],
    answer: AnswerTokens,
    *,
    share_prefix: bool = True,
    rule_batch: int = 64,
    image_token_id: int | None = None,
    pad_token_id: int = 0,
) -> list[float]:
    """p(violates) for each fully encoded question of one image (batch of one each).

    With ``share_prefix`` the longest common token prefix (which must hold every image token)
    runs once and the suffixes are scored over it (:func:`score_questions`); otherwise each
    question is its own forward pass.
    """
    questions = split_questions(encoded, image_token_id) if share_prefix else None
    if questions is None:
        return [
            p for e in encoded
            for p in _answer_probabilities(model(**e, logits_to_keep=1).logits[:, -1, :], answer)
        ]
    return score_questions(model, [questions], answer, rule_batch=rule_batch, pad_token_id=pad_token_id)[0]


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
        common = min(common_prefix_length(texts), min(len(t) for t in texts) - 1)
        ids = first["input_ids"][0]
        tail = texts[0][common:]
        length = len(ids) - len(tail)
        in_suffix = self.image_token_id is not None and any(self.image_token_id in t[common:] for t in texts)
        if common <= 0 or length <= 0 or in_suffix or ids[length:].tolist() != tail:
            # The processor does more than expand image tokens here: encode each question fully.
            rest = zip(prompts[1:], chats[1:], strict=True)
            encoded = [first] + [self._encode(frames, [("user", p)], chat=c) for p, c in rest]
            return split_questions(encoded, self.image_token_id) or encoded
        return Questions(
            prefix={k: (v[:, :length] if k in _PER_TOKEN else v) for k, v in first.items()},
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
