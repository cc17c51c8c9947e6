"""What the vllm backend asks of vLLM, checked without vllm (it does not install beside this torch)."""

from __future__ import annotations

import importlib.util

import pytest

from icm.backends.base import BackendError
from icm.backends.options import VLLMOptions, parse_options
from icm.backends.scoring import AnswerTokens, probability_from_token_logprobs
from icm.backends.vllm_config import (
    adds_bos,
    bos_problem,
    check_adapter,
    engine_arguments,
    generation_budget,
    lora_rank,
    scoring_arguments,
)
from icm.llm import LLMError


def test_engine_options_reach_vllm() -> None:
    options = parse_options("vllm", VLLMOptions, {"load_format": "dummy", "enforce_eager": True,
                                                  "max_model_len": 4096, "max_frames": 2})
    arguments = engine_arguments(options, None)
    assert arguments == {
        "dtype": "auto", "max_model_len": 4096, "gpu_memory_utilization": 0.9, "enable_prefix_caching": True,
        "enforce_eager": True, "load_format": "dummy", "limit_mm_per_prompt": {"image": 2},
    }
    off = engine_arguments(parse_options("vllm", VLLMOptions, {"prefix_caching": False}), None)
    assert off["enable_prefix_caching"] is False and off["load_format"] == "auto"


def test_top_logprobs_is_no_vllm_option_any_more() -> None:
    with pytest.raises(BackendError, match="unknown option 'top_logprobs'"):
        parse_options("vllm", VLLMOptions, {"top_logprobs": 5})


@pytest.mark.parametrize(("rank", "allowed"), [(1, 1), (2, 8), (8, 8), (12, 16), (100, 128), (300, 320), (512, 512)])
def test_lora_rank_rounds_up_to_one_vllm_accepts(rank: int, allowed: int) -> None:
    assert lora_rank(rank) == allowed


def test_adapters_vllm_cannot_serve_are_refused_with_the_way_out() -> None:
    with pytest.raises(BackendError, match="above vLLM's largest"):
        lora_rank(1024)
    with pytest.raises(BackendError, match=r"saves whole modules \(multi_modal_projector\).*icm train --merge"):
        engine_arguments(VLLMOptions(), {"r": 8, "modules_to_save": ["multi_modal_projector"]})
    check_adapter({"r": 8, "modules_to_save": ["classifier"]})  # a classification head is served
    arguments = engine_arguments(VLLMOptions(), {"r": 12, "modules_to_save": None})
    assert arguments["enable_lora"] is True and arguments["max_lora_rank"] == 16


def test_scoring_asks_for_exactly_the_answer_tokens() -> None:
    answer = AnswerTokens("Yes", "No", (3869, 8241), (1939,))
    arguments = scoring_arguments(answer)
    assert arguments == {"max_tokens": 1, "temperature": 0.0, "logprob_token_ids": [3869, 8241, 1939]}
    assert "logprobs" not in arguments  # a top-k above max_logprobs would fail every request
    # what vLLM returns for them: the exact log-probabilities, whatever their rank
    returned = {3869: -9.0, 8241: -11.0, 1939: -12.5, 450: -0.01}  # 450: the sampled token
    p = probability_from_token_logprobs(returned, answer)
    import math

    yes = math.log(math.exp(-9.0) + math.exp(-11.0))
    assert p == pytest.approx(math.exp(yes) / (math.exp(yes) + math.exp(-12.5)))


def test_bos_is_added_only_where_the_chat_template_does_not_write_it() -> None:
    assert adds_bos("USER: <image>\nIs it? ASSISTANT:", "<s>")  # LLaVA-1.5's template
    assert not adds_bos("<|begin_of_text|><|start_header_id|>user", "<|begin_of_text|>")
    assert not adds_bos("<|im_start|>user", None)  # Qwen: no BOS token at all
    assert bos_problem([1, 3148, 1001], 1, expected=True) is None
    assert bos_problem([3148, 1001], 1, expected=True) == "the prompt does not start with the BOS token (1)"
    assert bos_problem([1, 1, 3148], 1, expected=True) == "the prompt starts with the BOS token (1) twice"
    assert bos_problem([3148], 1, expected=False) is None


def test_generation_budget_keeps_prompt_and_answer_in_the_context() -> None:
    assert generation_budget(1000, 4096, 1024) == 1024
    assert generation_budget(3500, 4096, 1024) == 596  # a long explanation prompt plus a re-ask
    assert generation_budget(3500, None, 1024) == 1024
    with pytest.raises(LLMError, match="the prompt has 4100 tokens, the model's context 4096"):
        generation_budget(4100, 4096, 1024)


def test_the_plan_imports_without_vllm() -> None:
    import sys

    import icm.backends.vllm_config  # noqa: F401
    if importlib.util.find_spec("vllm") is None:  # here: torch 2.13 and vllm cannot share an environment
        assert "vllm" not in sys.modules
