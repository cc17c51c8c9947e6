"""VLLMBackend: in-process vLLM on a GPU, as ``vllm:PATH``. Importable only where vllm is installed.

The K rule questions of an image go to ``LLM.chat`` as one batch; vLLM's automatic prefix caching
encodes the shared image and policy prefix once. Verdicts come from the first token's top-k
log-probabilities (by token id); explanations from structured outputs with the explanation's JSON
schema, validated with pydantic and re-asked once. A PEFT adapter directory is served as a LoRA on
its base model.

Written against vLLM's ``LLM.chat``, ``SamplingParams(logprobs=..., structured_outputs=...)`` and
``StructuredOutputsParams`` (vLLM 0.11 and later).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest
from vllm.sampling_params import StructuredOutputsParams

from icm.backends.model import ModelDirectoryBackend, resolve_model_path, uncertain, verdict_from_probability
from icm.backends.options import VLLMOptions
from icm.backends.scoring import answer_tokens_for, probability_from_token_logprobs
from icm.llm import Chat, FunctionChat, Generation, JsonSchema, Turn, chat_messages
from icm.media import DecodedImage, data_url, pick_frames
from icm.policy.schema import Policy
from icm.results import RuleVerdict


class VLLMBackend(ModelDirectoryBackend):
    """A VLM run by vLLM in this process.

    ``path``: a model directory (or hub id vLLM can reach), or a PEFT adapter directory. Options
    (:class:`~icm.backends.options.VLLMOptions`): explain, with_signals, threshold, dtype,
    max_model_len, gpu_memory_utilization (passed to ``vllm.LLM``), top_logprobs, max_tokens,
    max_frames, max_image_side, max_image_bytes, yes, no.
    """

    name = "vllm"
    options_model = VLLMOptions
    options: VLLMOptions

    def __init__(self, path: str, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.Lock()
        self.model_path, self.adapter_path = resolve_model_path(path)
        engine: dict[str, Any] = {}
        self._lora: LoRARequest | None = None
        if self.adapter_path is not None:
            adapter = json.loads((self.adapter_path / "adapter_config.json").read_text("utf-8"))
            engine = {"enable_lora": True, "max_lora_rank": int(adapter.get("r", 16))}
            self._lora = LoRARequest("icm-adapter", 1, str(self.adapter_path))
        self.llm = LLM(
            model=self.model_path,
            dtype=self.options.dtype,
            max_model_len=self.options.max_model_len,
            gpu_memory_utilization=self.options.gpu_memory_utilization,
            enable_prefix_caching=True,
            limit_mm_per_prompt={"image": self.options.max_frames},
            **engine,
        )
        self.answer = answer_tokens_for(self.llm.get_tokenizer(), self.options.yes, self.options.no)

    def _see(self, image: DecodedImage) -> list[str]:
        return [
            data_url(f, self.options.max_image_side, self.options.max_image_bytes)
            for f in pick_frames(image, self.options.max_frames)
        ]

    def _score(self, seen: list[str], prompts: list[str], policy: Policy) -> list[RuleVerdict]:
        conversations = [chat_messages([("user", p)], seen) for p in prompts]
        scoring = SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.options.top_logprobs)
        with self._lock:
            outputs = self.llm.chat(
                conversations, sampling_params=scoring, lora_request=self._lora, use_tqdm=False
            )
        verdicts = []
        for rule, output in zip(policy.rules, outputs, strict=True):
            completion = output.outputs[0]
            first = completion.logprobs[0] if completion.logprobs else {}
            top = {token_id: lp.logprob for token_id, lp in first.items()}
            try:
                p = probability_from_token_logprobs(top, self.answer)
            except ValueError:
                p = float("nan")
            if p is None:
                verdicts.append(uncertain(
                    rule.id,
                    f"Neither {self.answer.yes_word} nor {self.answer.no_word} is among the "
                    f"model's {self.options.top_logprobs} most likely first tokens.",
                    completion.text,
                ))
            else:
                verdicts.append(verdict_from_probability(rule.id, p, self.options.threshold))
        return verdicts

    def _chat(self, seen: list[str]) -> Chat:
        """Generation with vLLM's structured outputs where a schema is given."""

        def answer(turns: Sequence[Turn], schema: JsonSchema | None, max_tokens: int | None) -> Generation:
            params = SamplingParams(
                max_tokens=max_tokens or self.options.max_tokens,
                temperature=0.0,
                structured_outputs=StructuredOutputsParams(json=schema) if schema is not None else None,
            )
            with self._lock:
                outputs = self.llm.chat(
                    [chat_messages(turns, seen)], sampling_params=params, lora_request=self._lora,
                    use_tqdm=False,
                )
            completion = outputs[0].outputs[0]
            return Generation(str(completion.text), tokens=len(completion.token_ids or ()))

        return FunctionChat(answer)

    def close(self) -> None:
        self.llm = None
