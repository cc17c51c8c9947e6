"""The options of the model backends, one typed object each, sharing what they have in common.

``Moderator("icm-r1", "transformers:DIR", dtype="bfloat16", with_signals=True)`` and
``--backend-options FILE.yaml`` both end here: keywords are validated against the backend's
options model, and a misspelt one is refused by name. Nothing here imports a model library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from icm.backends.base import BackendError, Explain
from icm.llm import OutputMode

O = TypeVar("O", bound="ModelOptions")  # noqa: E741 - the usual name of a TypeVar


class ModelOptions(BaseModel):
    """What every model backend (transformers, openai, vllm) takes."""

    model_config = ConfigDict(extra="forbid")

    explain: Explain = Field(Explain.violations, description="which rules get a written explanation: all, "
                             "violations or none")
    with_signals: bool = Field(False, description="run the local engine first and give its findings as known facts")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="a rule is violated when p(violates) is above this")
    max_frames: int = Field(1, ge=1, description="frames of an animated image shown to the model (evenly spaced)")
    max_tokens: int = Field(1024, ge=1, description="length limit of an explanation")
    yes: str = Field("Yes", min_length=1, description="the answer word for 'violates'")
    no: str = Field("No", min_length=1, description="the answer word for 'complies'")


class ImageUrlOptions(ModelOptions):
    """Backends that send each image as a data URL."""

    max_image_side: int = Field(1024, ge=1, description="longest side of each image sent, in pixels")
    max_image_bytes: int = Field(4_000_000, ge=1, description="largest data URL of each image sent")


class TransformersOptions(ModelOptions):
    """``transformers:PATH``: a local VLM."""

    device: str = Field("auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on CPU")
    share_prefix: bool = Field(True, description="encode the image and policy prefix once for all rules of an image")
    rule_batch: int = Field(64, ge=1, validation_alias=AliasChoices("rule_batch", "batch_size"),
                            description="rule questions scored per forward pass (also batch_size, its old name)")
    image_batch: int | None = Field(None, ge=1, description="images whose questions share one forward pass, "
                                    "when several are judged together (the service's batches); default 8 on "
                                    "an accelerator, 1 on the CPU (where batching images gains nothing)")
    max_tokens: int = Field(512, ge=1, validation_alias=AliasChoices("max_tokens", "max_new_tokens"),
                            description="length limit of an explanation (also max_new_tokens)")


class OpenAIOptions(ImageUrlOptions):
    """``openai:MODEL@BASE_URL``: any OpenAI-compatible server."""

    images: bool = Field(True, description="send the image; false for a text-only model judging from with_signals")
    scoring: Literal["auto", "decisions", "chat"] = Field(
        "auto", description="decisions: one /v1/decisions request per image, one predicate per rule; chat: one "
        "chat request per rule, first-token logprobs; auto: decisions where the server offers them (asked once "
        "per server and remembered)")
    logprobs: bool = Field(True, description="ask for first-token top logprobs (off for servers that reject them)")
    top_logprobs: int = Field(20, ge=1, description="how many alternatives of the first token to read")
    response_format: OutputMode = Field(
        OutputMode.json_schema, description="output mode of explanations: json_schema, json_object or none; a server "
        "that rejects it is asked without one")
    max_concurrency: int = Field(8, ge=1, description="requests in flight at once, across all images")
    timeout: float = Field(60.0, gt=0, description="seconds per request")
    max_retries: int = Field(3, ge=0, description="retries with exponential backoff")
    api_key_env: str = Field("OPENAI_API_KEY", description="the environment variable holding the API key")

    @model_validator(mode="after")
    def _sees_something(self) -> OpenAIOptions:
        if not self.images and not self.with_signals:
            # A verdict the model gave without seeing the image, or anything about it, is a guess.
            raise ValueError(
                "images=False sends the model nothing about the image: set with_signals=True so a "
                "text-only model judges from the local engine's findings"
            )
        return self


class VLLMOptions(ImageUrlOptions):
    """``vllm:PATH``: vLLM in this process, on a GPU."""

    dtype: str = Field("auto", description="passed to vllm.LLM")
    max_model_len: int | None = Field(None, ge=1, description="the context length (passed to vllm.LLM; default: "
                                      "the model's)")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="passed to vllm.LLM")
    prefix_caching: bool = Field(True, description="automatic prefix caching: the image and policy prefix is "
                                 "encoded once for all rules (vllm.LLM's enable_prefix_caching)")
    enforce_eager: bool = Field(False, description="no CUDA graphs: faster start, slower decoding (vllm.LLM)")
    load_format: str = Field("auto", description="vllm.LLM's load_format; dummy: random weights (benchmarks)")


def parse_options(backend: str, model: type[O], given: Mapping[str, Any]) -> O:
    """Validate a backend's keywords; a misspelt or bad one is a :class:`BackendError` naming it."""
    try:
        return model.model_validate(dict(given))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "options"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown option {where!r} (known: {', '.join(model.model_fields)})")
            else:
                problems.append(f"{where}: {error['msg']}")
        raise BackendError(f"backend {backend!r} cannot take these arguments: {'; '.join(problems)}") from exc
