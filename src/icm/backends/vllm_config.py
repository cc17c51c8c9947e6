"""What the vllm backend asks of vLLM, worked out without importing vllm (so it is tested here).

Written against vLLM 0.33: ``LLM(**engine_arguments(...))``; ``LLM.chat`` with
``tokenization_kwargs`` (offline chat no longer adds special tokens by itself, so a chat template
that does not write the BOS token needs the tokenizer to add it); ``SamplingParams(
logprob_token_ids=...)`` for exactly the answer tokens' log-probabilities (``logprobs=k`` above the
engine's ``max_logprobs`` fails every request, and a top-k cut biases the score); LoRA ranks from a
fixed list; adapters that save whole modules besides a classifier head are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from icm.backends.base import BackendError
from icm.backends.options import VLLMOptions
from icm.backends.scoring import AnswerTokens
from icm.llm import LLMError

#: The ranks vLLM's LoRA support accepts (``max_lora_rank``).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: ``modules_to_save`` entries vLLM serves beside a LoRA (a classification head); anything else
#: (LLaVA's projector, as our training config offers) is refused by vLLM.
SAVABLE_MODULES = frozenset({"classifier", "score"})


def lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds an adapter of rank ``rank``."""
    for allowed in LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise BackendError(f"LoRA rank {rank} is above vLLM's largest ({LORA_RANKS[-1]}): merge the adapter "
                       "into its base model (icm train --merge) and serve the merged directory")


def check_adapter(adapter_config: Mapping[str, Any]) -> None:
    """Refuse, with what to do instead, a PEFT adapter vLLM cannot serve as a LoRA."""
    saved = [m for m in adapter_config.get("modules_to_save") or [] if m not in SAVABLE_MODULES]
    if saved:
        raise BackendError(
            f"vLLM cannot serve a LoRA adapter that also saves whole modules ({', '.join(saved)}): merge it "
            "into its base model (icm train --merge, or PEFT's merge_and_unload) and serve the merged "
            "directory with vllm:DIR"
        )


def engine_arguments(options: VLLMOptions, adapter_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keywords of ``vllm.LLM`` (besides ``model``) for these options and adapter."""
    arguments: dict[str, Any] = {
        "dtype": options.dtype,
        "max_model_len": options.max_model_len,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "enable_prefix_caching": options.prefix_caching,
        "enforce_eager": options.enforce_eager,
        "load_format": options.load_format,
        "limit_mm_per_prompt": {"image": options.max_frames},
    }
    if adapter_config is not None:
        check_adapter(adapter_config)
        arguments |= {"enable_lora": True, "max_lora_rank": lora_rank(int(adapter_config.get("r", 16)))}
    return arguments


def scoring_arguments(answer: AnswerTokens) -> dict[str, Any]:
    """Keywords of the ``SamplingParams`` that score a rule: one greedy token and the
    log-probabilities of exactly the answer tokens."""
    return {"max_tokens": 1, "temperature": 0.0, "logprob_token_ids": list(answer.all_ids)}


def adds_bos(chat_text: str, bos_token: str | None) -> bool:
    """Whether the tokenizer must add special tokens to a chat-formatted prompt: where the
    tokenizer has a BOS token and the chat template does not write it itself (LLaVA-1.5)."""
    return bool(bos_token) and not chat_text.startswith(str(bos_token))


def bos_problem(prompt_token_ids: Sequence[int], bos_token_id: int | None, expected: bool) -> str | None:
    """What is wrong with the first prompt tokens (None: nothing): a prompt that should start with
    BOS and does not, or starts with it twice, scores differently from the model's training."""
    if bos_token_id is None or not expected:
        return None
    if not prompt_token_ids or prompt_token_ids[0] != bos_token_id:
        return f"the prompt does not start with the BOS token ({bos_token_id})"
    if len(prompt_token_ids) > 1 and prompt_token_ids[1] == bos_token_id:
        return f"the prompt starts with the BOS token ({bos_token_id}) twice"
    return None


def generation_budget(prompt_tokens: int, context: int | None, wanted: int) -> int:
    """Tokens an answer may have after a prompt of ``prompt_tokens`` in a context of ``context``
    (LLaVA-1.5: 4096): a long explanation prompt plus a re-ask must not overrun it."""
    if context is None:
        return wanted
    room = context - prompt_tokens
    if room < 1:
        raise LLMError(f"the prompt has {prompt_tokens} tokens, the model's context {context}: no room for an answer")
    return min(wanted, room)
