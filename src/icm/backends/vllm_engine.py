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
from typing import Any

from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest
from vllm.sampling_params import StructuredOutputsParams

from icm.backends.base import Explain
from icm.backends.scoring import probability_from_token_logprobs, resolve_answer_tokens
from icm.backends.vlm import (
    ModelDirectoryBackend,
    attach_explanations,
    chat_messages,
    data_url,
    explain_with_reask,
    explanation_schema,
    pick_frames,
    resolve_model_path,
    rules_to_explain,
    uncertain,
    verdict_from_probability,
)
from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.results import RuleVerdict


class VLLMBackend(ModelDirectoryBackend):
    """A VLM run by vLLM in this process."""

    name = "vllm"
    supports_images = True
    supports_logprobs = True

    def __init__(
        self,
        path: str,
        *,
        explain: Explain | str = Explain.violations,
        with_signals: bool = False,
        threshold: float = 0.5,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        top_logprobs: int = 20,
        max_tokens: int = 1024,
        max_frames: int = 1,
        max_image_side: int = 1024,
        max_image_bytes: int = 4_000_000,
        yes: str = "Yes",
        no: str = "No",
    ) -> None:
        """
        Args:
            path: a model directory (or hub id vLLM can reach), or a PEFT adapter directory.
            explain: which rules get a written explanation: all, violations or none.
            with_signals: run the local engine first and give its findings as known facts.
            threshold: a rule is violated when p(violates) is above this.
            dtype, max_model_len, gpu_memory_utilization: passed to ``vllm.LLM``.
            top_logprobs: how many first-token alternatives to read the answer words from.
            max_tokens: length limit of an explanation.
            max_frames, max_image_side, max_image_bytes: what is sent of each image.
            yes, no: the answer words.
        """
        self._setup_judging(explain, with_signals, threshold)
        self.top_logprobs = top_logprobs
        self.max_tokens = max_tokens
        self.max_frames = max_frames
        self.max_image_side = max_image_side
        self.max_image_bytes = max_image_bytes
        self._lock = threading.Lock()
        self.model_path, self.adapter_path = resolve_model_path(path)
        options: dict[str, Any] = {}
        self._lora: LoRARequest | None = None
        if self.adapter_path is not None:
            adapter = json.loads((self.adapter_path / "adapter_config.json").read_text("utf-8"))
            options = {"enable_lora": True, "max_lora_rank": int(adapter.get("r", 16))}
            self._lora = LoRARequest("icm-adapter", 1, str(self.adapter_path))
        self.llm = LLM(
            model=self.model_path,
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            limit_mm_per_prompt={"image": max_frames},
            **options,
        )
        tokenizer = self.llm.get_tokenizer()
        self.answer = resolve_answer_tokens(
            lambda text: tokenizer.encode(text, add_special_tokens=False), yes, no
        )

    def judge(self, image: DecodedImage, policy: Policy) -> list[RuleVerdict]:
        urls = [
            data_url(f, self.max_image_side, self.max_image_bytes)
            for f in pick_frames(image, self.max_frames)
        ]
        facts = self._facts(image, policy) if self._facts is not None else []
        conversations = [
            chat_messages([("user", p)], urls) for p in self.prompts.verdict_prompts(policy, facts)
        ]
        scoring = SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.top_logprobs)
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
                    f"model's {self.top_logprobs} most likely first tokens.",
                    completion.text,
                ))
            else:
                verdicts.append(verdict_from_probability(rule.id, p, self.threshold))
        rules = rules_to_explain(self.explain, policy, verdicts)
        if rules:
            explanation, raw, error = explain_with_reask(
                lambda turns: self._generate(chat_messages(turns, urls)),
                self.prompts.explain_prompt(policy, rules, facts),
                rules,
            )
            attach_explanations(verdicts, rules, explanation, raw, error)
        return verdicts

    def _generate(self, messages: list[dict[str, Any]]) -> str:
        params = SamplingParams(
            max_tokens=self.max_tokens,
            temperature=0.0,
            structured_outputs=StructuredOutputsParams(json=explanation_schema()),
        )
        with self._lock:
            outputs = self.llm.chat(
                [messages], sampling_params=params, lora_request=self._lora, use_tqdm=False
            )
        return str(outputs[0].outputs[0].text)

    def close(self) -> None:
        self.llm = None
