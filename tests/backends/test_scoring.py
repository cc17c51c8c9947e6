"""Yes/No token resolution, two-way probabilities, top-logprob and text fallbacks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icm.backends.scoring import (
    AnswerTokens,
    ScoringError,
    answer_tokens_for,
    parse_yes_no,
    probability_from_token_logprobs,
    probability_from_top_logprobs,
    resolve_answer_tokens,
    two_way_probability,
)


def encoder(vocab: dict[str, list[int]]):
    return lambda text: vocab.get(text, [99, 98])


def test_both_spellings_of_a_word_count() -> None:
    tokens = resolve_answer_tokens(encoder({"Yes": [5], " Yes": [6], "No": [7], " No": [7]}))
    assert tokens.yes_ids == (5, 6)
    assert tokens.no_ids == (7,)


def test_a_word_that_is_not_one_token_is_a_clear_error() -> None:
    with pytest.raises(ScoringError, match="'Violates' is not a single token"):
        resolve_answer_tokens(encoder({"No": [7]}), yes="Violates")


def test_colliding_words_are_an_error() -> None:
    with pytest.raises(ScoringError, match="share token ids"):
        resolve_answer_tokens(encoder({"Yes": [5], "No": [5]}))


def test_the_unknown_token_is_never_an_answer_token() -> None:
    # a word-level vocabulary: " Yes" and " No" are no words of it, both encode to <unk> (1)
    tokens = resolve_answer_tokens(encoder({"Yes": [5], " Yes": [1], "No": [7], " No": [1]}), unknown_id=1)
    assert (tokens.yes_ids, tokens.no_ids) == ((5,), (7,))


def test_a_spelling_both_words_share_is_dropped_and_the_distinct_ones_kept() -> None:
    tokens = resolve_answer_tokens(encoder({"Yes": [5], " Yes": [9], "No": [7], " No": [9]}))
    assert (tokens.yes_ids, tokens.no_ids) == ((5,), (7,))


def test_a_word_left_with_only_the_unknown_token_is_a_clear_error() -> None:
    with pytest.raises(ScoringError, match=r"'Yes' is not a single token .*\(the unknown token\)"):
        resolve_answer_tokens(encoder({"Yes": [1], " Yes": [1], "No": [7], " No": [1]}), unknown_id=1)


def test_answer_tokens_of_a_real_word_level_tokenizer() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "Yes": 1, "No": 2, "Maybe": 3}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_next")  # keeps the space
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    assert tokenizer.encode(" Yes", add_special_tokens=False) == [0]  # the premise: <unk>
    tokens = answer_tokens_for(tokenizer)
    assert (tokens.yes_ids, tokens.no_ids) == ((1,), (2,))
    with pytest.raises(ScoringError, match="'Violates' is not a single token"):
        answer_tokens_for(tokenizer, yes="Violates")


def test_two_way_probability_is_the_softmax_over_the_two() -> None:
    assert two_way_probability([2.0], [0.0]) == pytest.approx(1 / (1 + math.exp(-2.0)))
    # two spellings: their probability mass adds up
    assert two_way_probability([0.0, 0.0], [0.0]) == pytest.approx(2 / 3)
    assert two_way_probability([1000.0], [-1000.0]) == 1.0
    assert two_way_probability([-math.inf], [0.0]) == 0.0


@given(st.floats(-50, 50), st.floats(-50, 50))
def test_two_way_probability_is_symmetric(a: float, b: float) -> None:
    assert two_way_probability([a], [b]) + two_way_probability([b], [a]) == pytest.approx(1.0)


def test_non_finite_logits_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        two_way_probability([math.nan], [0.0])


def test_top_logprobs() -> None:
    top = {"Yes": math.log(0.6), " No": math.log(0.2), "The": math.log(0.1)}
    assert probability_from_top_logprobs(top) == pytest.approx(0.75)
    # only one word listed: the absent one is bounded by the smallest listed logprob
    assert probability_from_top_logprobs({"no": math.log(0.8), "I": math.log(0.1)}) == (
        pytest.approx(0.1 / 0.9)
    )
    assert probability_from_top_logprobs({"The": -0.1, "I": -3.0}) is None
    assert probability_from_top_logprobs({}) is None


def test_token_logprobs_by_id() -> None:
    answer = AnswerTokens("Yes", "No", (5, 6), (7,))
    top = {5: math.log(0.3), 6: math.log(0.3), 7: math.log(0.2), 9: math.log(0.1)}
    assert probability_from_token_logprobs(top, answer) == pytest.approx(0.75)
    assert probability_from_token_logprobs({9: -0.1}, answer) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Yes", True), (" yes.", True), ("No, it does not.", False), ("**No**", False),
     ("I cannot help with that.", None), ("", None), ("Maybe", None),
     ("The answer is yes", None)],
)
def test_parse_yes_no(text: str, expected: bool | None) -> None:
    assert parse_yes_no(text) is expected
