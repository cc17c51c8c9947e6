"""The one registry of model specs: every kind resolves through it, capabilities are declared."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

from icm.backends.base import EXTRAS, REGISTRY, BackendError, ModelKind, load_backend, load_model
from icm.llm import LLMError


def test_every_spec_users_write_has_one_entry() -> None:
    assert {name for name, kinds in REGISTRY.items() if ModelKind.backend in kinds} == {
        "local", "transformers", "openai", "vllm"}
    assert {name for name, kinds in REGISTRY.items() if ModelKind.chat in kinds} == {"openai", "llama-cpp"}
    assert set(EXTRAS) == set(REGISTRY)


@pytest.mark.parametrize("name", ["local", "transformers", "openai"])
def test_backend_capabilities_are_declared_attributes(name: str) -> None:
    module, _, cls = REGISTRY[name][ModelKind.backend].partition(":")
    backend = getattr(importlib.import_module(module), cls)
    for capability in ("supports_images", "supports_logprobs", "supports_generation"):
        assert isinstance(getattr(backend, capability), bool)
    assert backend.supports_generation is (name != "local")


def test_vllm_is_registered_and_names_its_extra_where_it_is_not_installed() -> None:
    assert REGISTRY["vllm"][ModelKind.backend] == "icm.backends.vllm_engine:VLLMBackend"
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: the missing-extra message cannot be shown")
    with pytest.raises(BackendError, match=r"'vllm' needs packages that are not installed \(vllm\).*"
                       r"icm-assistant\[vllm\]"):
        load_backend("vllm:/models/any")


def test_a_name_of_another_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(BackendError, match="unknown backend 'llama-cpp'; known: local, openai, transformers, vllm"):
        load_backend("llama-cpp:smollm2")
    with pytest.raises(LLMError, match="unknown chat model 'transformers'; known: llama-cpp, openai"):
        load_model("transformers:/models/x", ModelKind.chat)
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        load_backend("nope")


def test_local_refuses_model_keywords_by_name() -> None:
    with pytest.raises(BackendError, match="cannot take these arguments.*explain"):
        load_backend("local", explain="all")
