"""Scoring one image's K rule questions over one shared prefix: the prefix (the image and the
policy text) runs once, and the K rule-specific suffixes are packed side by side over its KV
cache with a block-diagonal attention mask (:func:`score_questions`), several images at a time.
The result equals each question scored alone by a full forward pass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from icm.backends.scoring import AnswerTokens, common_prefix_length, two_way_probability

#: Processor outputs that run along the token axis, cut together with ``input_ids``.
_PER_TOKEN = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")

def answer_probabilities(last_logits: torch.Tensor, answer: AnswerTokens) -> list[float]:
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


def shared_prefix(ids: Sequence[Sequence[int]], image_token_id: int | None) -> int | None:
    """How many leading tokens one image's questions (their token ids) share: the longest common
    prefix, each question keeping at least one token of its own to score; None when they share
    none, or when an image token (where ``image_token_id`` is known) falls after it."""
    if len(ids) < 2:
        return None
    common = min(common_prefix_length(ids), min(len(t) for t in ids) - 1)
    if common <= 0:
        return None
    if image_token_id is not None and any(image_token_id in list(t[common:]) for t in ids):
        return None
    return common


def prefix_of(encoded: Mapping[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """The first ``length`` tokens of an encoded question (image tensors whole)."""
    return {k: (v[:, :length] if k in _PER_TOKEN else v) for k, v in encoded.items()}


def split_questions(
    encoded: Sequence[Mapping[str, torch.Tensor]], image_token_id: int | None
) -> Questions | None:
    """The shared prefix and the rule suffixes of one image's fully encoded questions, or None
    when they cannot share one (a single question, no common prefix, no known image token, or
    image tokens after it)."""
    if image_token_id is None:
        return None
    ids = [e["input_ids"][0] for e in encoded]
    prefix = shared_prefix([t.tolist() for t in ids], image_token_id)
    if prefix is None:
        return None
    return Questions(prefix=prefix_of(encoded[0], prefix), suffixes=[t[prefix:] for t in ids])


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


def stack_inputs(prefixes: Sequence[Mapping[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
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
    read: Callable[[int, int, torch.Tensor], Any] | None = None,
) -> list[list[Any]]:
    """p(violates) for every rule question of several images: each image's prefix runs once (all
    images in one forward), then the rule suffixes run over the prefixes' KV cache.
    ``read(image, question, logits)`` turns a question's next-token logits into its answer
    (default: p(Yes) of ``answer``), so other questions can share the prefix
    (:mod:`icm.backends.choices`).

    No work goes to padding: an image's suffixes are packed side by side into a few rows, each
    token at its own position (prefix length + offset in its suffix) and seeing only the prefix
    and the earlier tokens of its own suffix (a block-diagonal attention mask); rows are nearly
    full, so padding them to the longest is small. At most ``rule_batch`` questions go into one
    suffix forward. The result equals each question scored alone by a full forward pass.
    """
    prefixes = [q.prefix for q in questions]
    lengths = [q.prefix_length for q in questions]
    longest = max(lengths)
    inputs = stack_inputs(prefixes, pad_token_id)
    cache = model(**inputs, use_cache=True, logits_to_keep=1).cache  # the prefix's logits are not needed
    # Multimodal-RoPE models (Qwen2-VL) number text after an image from a per-image offset.
    deltas = getattr(getattr(model, "model", model), "rope_deltas", None)
    device = inputs["input_ids"].device
    dtype = next(model.parameters()).dtype
    blocked = torch.finfo(dtype).min
    items = [(b, k) for b, q in enumerate(questions) for k in range(len(q.suffixes))]
    results: list[list[Any]] = [[float("nan")] * len(q.suffixes) for q in questions]
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
        if read is None:
            for (_, _, b, k), p in zip(last, answer_probabilities(picked, answer), strict=True):
                results[b][k] = p
        else:
            for (_, _, b, k), row in zip(last, picked, strict=True):
                results[b][k] = read(b, k, row)
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
            for p in answer_probabilities(model(**e, logits_to_keep=1).logits[:, -1, :], answer)
        ]
    return score_questions(model, [questions], answer, rule_batch=rule_batch, pad_token_id=pad_token_id)[0]
