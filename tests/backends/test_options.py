"""The model backends' options: one typed object per backend, shared fields, misspellings named."""

from __future__ import annotations

import pytest

from icm.backends.base import BackendError, Explain
from icm.backends.options import (
    ModelOptions,
    OpenAIOptions,
    TransformersOptions,
    VLLMOptions,
    parse_options,
)
from icm.llm import OutputMode


def test_the_shared_fields_are_declared_once() -> None:
    shared = set(ModelOptions.model_fields)
    assert {"explain", "with_signals", "threshold", "max_frames", "max_tokens", "yes", "no"} <= shared
    for options in (TransformersOptions, OpenAIOptions, VLLMOptions):
        assert issubclass(options, ModelOptions) and shared <= set(options.model_fields)


def test_defaults_and_values_are_typed() -> None:
    given = {"explain": "all", "timeout": 30, "response_format": "json_object"}
    options = parse_options("openai", OpenAIOptions, given)
    assert options.explain is Explain.all and options.response_format is OutputMode.json_object
    assert options.timeout == 30.0 and options.max_concurrency == 8
    transformers = parse_options("transformers", TransformersOptions, {"max_new_tokens": 16, "dtype": "bfloat16"})
    assert transformers.max_tokens == 16  # the keyword the backend always took still works


def test_batch_size_is_the_old_name_of_rule_batch() -> None:
    old = parse_options("transformers", TransformersOptions, {"batch_size": 3})
    assert old.rule_batch == 3 and old.image_batch is None
    new = parse_options("transformers", TransformersOptions, {"rule_batch": 5, "image_batch": 4})
    assert (new.rule_batch, new.image_batch) == (5, 4)


@pytest.mark.parametrize(
    ("model", "given", "message"),
    [
        (TransformersOptions, {"colour": "blue"}, "unknown option 'colour' \\(known: explain, with_signals"),
        (OpenAIOptions, {"max_concurency": 2}, "unknown option 'max_concurency'"),
        (VLLMOptions, {"device": "cuda"}, "unknown option 'device'"),  # a transformers option
        (ModelOptions, {"threshold": 1.5}, "threshold: Input should be less than 1"),
        (TransformersOptions, {"dtype": "int4"}, "dtype: Input should be 'auto', 'float32'"),
        (OpenAIOptions, {"response_format": "xml"}, "response_format: Input should be 'json_schema'"),
        (OpenAIOptions, {"images": False}, "set with_signals=True"),
        (VLLMOptions, {"gpu_memory_utilization": 0}, "gpu_memory_utilization: Input should be greater than 0"),
        (OpenAIOptions, {"max_concurrency": 0}, "max_concurrency: Input should be greater than or equal to 1"),
    ],
)
def test_bad_options_are_refused_by_name(model: type[ModelOptions], given: dict[str, object],
                                         message: str) -> None:
    with pytest.raises(BackendError, match="backend 'b' cannot take these arguments: .*" + message):
        parse_options("b", model, given)
