"""VLLMBackend: in-process vLLM on a GPU, as ``vllm:PATH``. Importable only where vllm is installed.

The K rule questions of an image go to ``LLM.chat`` as one batch; vLLM's automatic prefix caching
encodes the shared image and policy prefix once. Verdicts come from the first token's
log-probabilities of exactly the answer tokens (``logprob_token_ids``); explanations from
structured outputs with the explanation's JSON schema, validated with pydantic and re-asked once,
their length kept inside the model's context. A PEFT adapter directory is served as a LoRA on its
base model. What is asked of vLLM is worked out in :mod:`icm.backends.vllm_config`.

Written against vLLM 0.33 (``LLM.chat(..., tokenization_kwargs=...)``, ``SamplingParams(
logprob_token_ids=..., structured_outputs=...)``, ``StructuredOutputsParams``).
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Sequence
from typing import Any

from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest
from vllm.sampling_params import StructuredOutputsParams

from icm.backends.base import BackendError
from icm.backends.model import (
    ModelDirectoryBackend,
    data_urls,
    resolve_model_path,
    uncertain,
    verdict_from_probability,
)
from icm.backends.options import VLLMOptions
from icm.backends.scoring import answer_tokens_for, probability_from_token_logprobs
from icm.backends.vllm_config import (
    adds_bos,
    bos_problem,
    engine_arguments,
    generation_budget,
    scoring_arguments,
)
from icm.llm import Chat, FunctionChat, Generation, JsonSchema, LLMError, Turn, chat_messages
from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.results import RuleVerdict


class VLLMBackend(ModelDirectoryBackend):
    """A VLM run by vLLM in this process.

    ``path``: a model directory (or hub id vLLM can reach), or a PEFT adapter directory. Options
    (:class:`~icm.backends.options.VLLMOptions`): explain, with_signals, threshold, dtype,
    max_model_len, gpu_memory_utilization, prefix_caching, enforce_eager, load_format (passed to
    ``vllm.LLM``), max_tokens, max_frames, max_image_side, max_image_bytes, yes, no.
    """

    name = "vllm"
    options_model = VLLMOptions
    options: VLLMOptions
    batches_images = True

    def __init__(self, path: str, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.Lock()
        self.model_path, self.adapter_path = resolve_model_path(path)
        adapter = None
        self._lora: LoRARequest | None = None
        if self.adapter_path is not None:
            adapter = json.loads((self.adapter_path / "adapter_config.json").read_text("utf-8"))
        arguments = engine_arguments(self.options, adapter)  # refuses what vLLM cannot serve, first
        if self.adapter_path is not None:
            self._lora = LoRARequest("icm-adapter", 1, str(self.adapter_path))
        self.llm: Any = LLM(model=self.model_path, **arguments)
        tokenizer = self.llm.get_tokenizer()
        self.answer = answer_tokens_for(tokenizer, self.options.yes, self.options.no)
        self.context: int | None = int(self.llm.llm_engine.model_config.max_model_len)
        hf_config = self.llm.llm_engine.model_config.hf_config
        self._image_tokens = int(getattr(hf_config, "image_seq_length", 0) or 0)
        self._bos_id: int | None = getattr(tokenizer, "bos_token_id", None)
        sample = tokenizer.apply_chat_template(
            [{"role": "user", "content": "?"}], add_generation_prompt=True, tokenize=False
        )
        self._add_bos = adds_bos(str(sample), getattr(tokenizer, "bos_token", None))
        self._tokenization = {"add_special_tokens": self._add_bos}
        self._checked_bos = False

    def _see(self, image: DecodedImage) -> list[str]:
        return data_urls(image, self.options)

    def _score(self, seen: list[str], prompts: list[str], policy: Policy) -> list[RuleVerdict]:
        return self._score_batch([seen], [prompts], policy)[0]

    def _score_batch(
        self, seen: Sequence[list[str]], prompts: Sequence[list[str]], policy: Policy
    ) -> list[list[RuleVerdict]]:
        """Every image's rule questions in one ``LLM.chat`` call: vLLM schedules them together and
        its prefix cache shares each image's prefix among that image's rules."""
        conversations = [
            chat_messages([("user", p)], urls) for urls, questions in zip(seen, prompts, strict=True) for p in questions
        ]
        scoring = SamplingParams(**scoring_arguments(self.answer))
        with self._lock:
            outputs = self.llm.chat(
                conversations, sampling_params=scoring, lora_request=self._lora, use_tqdm=False,
                tokenization_kwargs=self._tokenization,
            )
        if not self._checked_bos and outputs:
            problem = bos_problem(list(outputs[0].prompt_token_ids or []), self._bos_id, self._add_bos)
            if problem is not None:
                raise BackendError(f"vLLM's prompt differs from the model's chat format: {problem}")
            self._checked_bos = True
        per_image = len(policy.rules)
        return [self._verdicts(outputs[i : i + per_image], policy) for i in range(0, len(outputs), per_image)]

    def _verdicts(self, outputs: Sequence[Any], policy: Policy) -> list[RuleVerdict]:
        verdicts = []
        for rule, output in zip(policy.rules, outputs, strict=True):
            completion = output.outputs[0]
            first = completion.logprobs[0] if completion.logprobs else {}
            logprobs = {token_id: lp.logprob for token_id, lp in first.items()}
            try:
                p = probability_from_token_logprobs(logprobs, self.answer)
            except ValueError:
                p = float("nan")
            if p is None:
                verdicts.append(uncertain(
                    rule.id, f"vLLM returned no log-probability for {self.answer.yes_word} or "
                    f"{self.answer.no_word}.", completion.text,
                ))
            else:
                verdicts.append(verdict_from_probability(rule.id, p, self.options.threshold))
        return verdicts

    def _prompt_tokens(self, turns: Sequence[Turn], images: int) -> int:
        """The chat-formatted conversation's length in tokens, the image tokens included."""
        tokenizer = self.llm.get_tokenizer()
        text = tokenizer.apply_chat_template(
            [{"role": role, "content": content} for role, content in turns], add_generation_prompt=True,
            tokenize=False,
        )
        return len(tokenizer.encode(text, add_special_tokens=self._add_bos)) + images * self._image_tokens

    def _chat(self, seen: list[str]) -> Chat:
        """Generation with vLLM's structured outputs where a schema is given."""

        def answer(turns: Sequence[Turn], schema: JsonSchema | None, max_tokens: int | None) -> Generation:
            budget = generation_budget(
                self._prompt_tokens(turns, len(seen)), self.context, max_tokens or self.options.max_tokens
            )
            params = SamplingParams(
                max_tokens=budget,
                temperature=0.0,
                structured_outputs=StructuredOutputsParams(json=schema) if schema is not None else None,
            )
            try:
                with self._lock:
                    outputs = self.llm.chat(
                        [chat_messages(turns, seen)], sampling_params=params, lora_request=self._lora,
                        use_tqdm=False, tokenization_kwargs=self._tokenization,
                    )
            except ValueError as exc:  # e.g. a prompt longer than the context after all
                raise LLMError(f"vLLM refused the request: {exc}") from exc
            completion = outputs[0].outputs[0]
            return Generation(str(completion.text), tokens=len(completion.token_ids or ()))

        return FunctionChat(answer)

    def close(self) -> None:
        """Shut the engine down and give its GPU memory back (the KV cache and the weights)."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        del llm, engine
        gc.collect()
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except (ImportError, AssertionError, RuntimeError):
            pass  # nothing was initialised, or this vLLM has no such helpers
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
