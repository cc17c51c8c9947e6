"""The Backend protocol and the one registry that resolves every model spec (``local``,
``transformers:DIR``, ``openai:MODEL@URL``, ``vllm:DIR``, ``llama-cpp:PATH.gguf`` ...)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from icm.errors import ModelError, ModelTimeout
from icm.llm import Chat, ChatModel, LLMError
from icm.policy.schema import Policy
from icm.results import BackendInfo, RuleVerdict
from icm.validation import read_yaml_mapping

if TYPE_CHECKING:  # numpy and Pillow stay out of `icm --help`
    from icm.media import DecodedImage


class ModelKind(StrEnum):
    """What a caller needs a model for."""

    #: judges an image under a policy: a :class:`Backend` (``icm moderate``, ``--mllm``)
    backend = "backend"
    #: answers a conversation in text: an :class:`icm.llm.ChatModel` (``--llm``, ``--judge``)
    chat = "chat"


#: The one registry of model specs: name -> kind -> "module:Class". A spec is ``name`` or
#: ``name:argument`` (a model path, ``MODEL@URL`` ...). Classes are imported only when chosen;
#: what each can do beyond its kind is a declared attribute (``supports_images``,
#: ``supports_logprobs``, ``supports_generation``).
REGISTRY: dict[str, dict[ModelKind, str]] = {
    "local": {ModelKind.backend: "icm.backends.local.engine:LocalBackend"},
    "transformers": {ModelKind.backend: "icm.backends.transformers:TransformersBackend"},
    "openai": {ModelKind.backend: "icm.backends.openai_compat:OpenAIBackend",
               ModelKind.chat: "icm.backends.chat.openai:OpenAIChat"},
    "vllm": {ModelKind.backend: "icm.backends.vllm_engine:VLLMBackend"},
    "llama-cpp": {ModelKind.chat: "icm.backends.chat.llama_cpp:LlamaCppModel"},
}
#: the extra that installs what each name needs
EXTRAS: dict[str, str] = {"local": "local", "transformers": "hf", "openai": "openai", "vllm": "vllm",
                          "llama-cpp": "data"}


class BackendError(ModelError):
    """A backend that cannot be created or cannot judge (missing extra, bad model, server down)."""


class BackendTimeout(BackendError, ModelTimeout):
    """The model or its server did not answer in time (an image's result gets code ``timeout``)."""


class Explain(StrEnum):
    """Which rules a model backend writes an explanation for (``--explain``)."""

    all = "all"
    violations = "violations"
    none = "none"


@runtime_checkable
class Backend(Protocol):
    """Turns (image, policy) into one verdict per rule."""

    name: str
    supports_images: bool
    supports_logprobs: bool
    #: whether it is a :class:`GenerativeBackend` (the data engine's explainer needs one)
    supports_generation: bool
    #: whether ``judge_batch`` puts several images in one model call (worth waiting to batch)
    batches_images: bool
    # Optional ``parallel_images: int``: images a caller should keep in flight (the Moderator's
    # default workers; 1 where it is absent). The local engine asks for one per core.

    def info(self) -> BackendInfo: ...

    def prepare(self, policy: Policy) -> None:
        """Load whatever the policy needs (detectors, weights), once, before the first image."""

    def judge(self, image: DecodedImage, policy: Policy) -> list[RuleVerdict]:
        """One RuleVerdict per rule of the policy, in the policy's order."""
        ...

    def judge_batch(self, images: Sequence[DecodedImage], policy: Policy) -> list[Judged]:
        """``judge`` for several images at once (one model call where the backend can batch), in
        order; an image that could not be judged gets its exception in its place, and the others
        are still judged."""
        ...

    def close(self) -> None: ...


#: One image's outcome in a batch: its verdicts, or why it could not be judged.
Judged = list[RuleVerdict] | Exception


def judge_each(
    judge: Callable[[DecodedImage, Policy], list[RuleVerdict]], images: Sequence[DecodedImage], policy: Policy
) -> list[Judged]:
    """``judge_batch`` for a backend that judges one image at a time (``judge`` is its
    ``judge``): each failure stays its image's own."""
    outcomes: list[Judged] = []
    for image in images:
        try:
            outcomes.append(judge(image, policy))
        except Exception as exc:  # noqa: BLE001 - the caller records it as that image's error
            outcomes.append(exc)
    return outcomes


class GenerativeBackend(Backend, Protocol):
    """A backend whose ``supports_generation`` is true: it also talks about an image."""

    def chat_about(self, image: DecodedImage) -> Chat:
        """A conversation with the model about one image (e.g. the data engine's explainer)."""
        ...


def split_spec(spec: str) -> tuple[str, str | None]:
    """``name:argument`` -> (name, argument); ``name`` -> (name, None)."""
    name, _, argument = spec.partition(":")
    return name.strip(), (argument.strip() or None)


def check_spec(spec: str, kind: ModelKind | str) -> str:
    """The ``module:Class`` a spec names for this kind, or the error of an unknown name. Nothing is
    imported: a run whose models load elsewhere (Ray workers) checks its specs with this first."""
    kind = ModelKind(kind)
    name, _ = split_spec(spec)
    target = REGISTRY.get(name, {}).get(kind)
    if target is None:
        known = sorted(n for n, kinds in REGISTRY.items() if kind in kinds)
        what = "backend" if kind is ModelKind.backend else "chat model"
        failed: type[ModelError] = BackendError if kind is ModelKind.backend else LLMError
        raise failed(f"unknown {what} {name!r}; known: {', '.join(known)}")
    return target


def load_model(spec: str, kind: ModelKind | str, **options: Any) -> Any:
    """Resolve a spec (``local``, ``transformers:/path``, ``openai:model@url``, ``llama-cpp:smollm2``
    ...) into a model of the given kind, with its keywords checked before anything loads."""
    kind = ModelKind(kind)
    failed: type[ModelError] = BackendError if kind is ModelKind.backend else LLMError
    name, argument = split_spec(spec)
    module_name, _, class_name = check_spec(spec, kind).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise failed(
            f"{name!r} needs packages that are not installed ({exc.name}); "
            f"install the matching extra, e.g. pip install 'icm-assistant[{EXTRAS.get(name, name)}]'"
        ) from exc
    cls = getattr(module, class_name)
    args = (argument,) if argument is not None else ()
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as exc:
        raise failed(f"{'backend' if kind is ModelKind.backend else 'model'} {name!r} cannot take these "
                     f"arguments: {exc}") from exc
    return cls(*args, **options)


def load_backend(spec: str | Backend, **options: Any) -> Backend:
    """Resolve ``local``, ``transformers:/path``, ``openai:model@url`` ... into a Backend."""
    if not isinstance(spec, str):
        return spec
    backend: Backend = load_model(spec, ModelKind.backend, **options)
    return backend


def load_chat_model(spec: str, **options: Any) -> ChatModel:
    """Resolve ``llama-cpp:PATH.gguf``, ``llama-cpp:smollm2``, ``openai:MODEL@URL`` into a chat model."""
    model: ChatModel = load_model(spec, ModelKind.chat, **options)
    return model


def load_backend_options(path: Path) -> dict[str, Any]:
    """Backend keywords from a YAML mapping (``images: false``, ``timeout: 30`` ...), checked later
    against the backend's constructor by :func:`load_backend`."""
    return read_yaml_mapping(path, "backend options", BackendError,
                             shape="backend options are a YAML mapping of keyword: value")
