"""The Backend protocol and the registry that resolves backends from strings like ``local``."""

from __future__ import annotations

import importlib
import inspect
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import yaml

from icm.errors import ModelError, ModelTimeout
from icm.policy.schema import Policy
from icm.results import BackendInfo, RuleVerdict

if TYPE_CHECKING:  # numpy and Pillow stay out of `icm --help`
    from icm.media import DecodedImage

#: name -> "module:Class". A spec is ``name`` or ``name:argument`` (a model path, a URL ...).
REGISTRY: dict[str, str] = {
    "local": "icm.backends.local.engine:LocalBackend",
    "transformers": "icm.backends.transformers:TransformersBackend",
    "openai": "icm.backends.openai_compat:OpenAIBackend",
    "vllm": "icm.backends.vllm_engine:VLLMBackend",
}


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

    def info(self) -> BackendInfo: ...

    def prepare(self, policy: Policy) -> None:
        """Load whatever the policy needs (detectors, weights), once, before the first image."""

    def judge(self, image: DecodedImage, policy: Policy) -> list[RuleVerdict]:
        """One RuleVerdict per rule of the policy, in the policy's order."""
        ...

    def close(self) -> None: ...


def parse_spec(spec: str) -> tuple[str, str | None]:
    name, _, argument = spec.partition(":")
    return name.strip(), (argument.strip() or None)


_MODEL_AT_URL = re.compile(r"^(?P<model>.+?)@(?P<url>https?://\S+)$")


def split_model_url(target: str) -> tuple[str, str | None]:
    """``MODEL@BASE_URL`` -> (model, base URL); ``MODEL`` -> (model, None), and the OpenAI client
    reads OPENAI_BASE_URL. The URL starts at the first ``@http(s)://``, so a URL with credentials
    in it stays whole. One parser for every OpenAI-compatible spec (backend, judge, text model)."""
    text = target.strip()
    match = _MODEL_AT_URL.match(text)
    model, base_url = (match["model"], match["url"]) if match else text.partition("@")[::2]
    if not model.strip():
        raise BackendError(f"no model name in {target!r}; write MODEL@BASE_URL")
    return model.strip(), (base_url.strip() or None)


def load_backend(spec: str | Backend, **options: Any) -> Backend:
    """Resolve ``local``, ``transformers:/path``, ``openai:model@url`` ... into a Backend."""
    if not isinstance(spec, str):
        return spec
    name, argument = parse_spec(spec)
    target = REGISTRY.get(name)
    if target is None:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(sorted(REGISTRY))}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} needs packages that are not installed ({exc.name}); "
            f"install the matching extra, e.g. pip install 'icm-assistant[{_extra_for(name)}]'"
        ) from exc
    cls = getattr(module, class_name)
    args = (argument,) if argument is not None else ()
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as exc:
        raise BackendError(f"backend {name!r} cannot take these arguments: {exc}") from exc
    backend: Backend = cls(*args, **options)
    return backend


def load_backend_options(path: Path) -> dict[str, Any]:
    """Backend keywords from a YAML mapping (``images: false``, ``timeout: 30`` ...), checked later
    against the backend's constructor by :func:`load_backend`."""
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BackendError(f"{path}: cannot read backend options: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise BackendError(f"{path}: backend options are a YAML mapping of keyword: value")
    return data


def _extra_for(name: str) -> str:
    return {"local": "local", "transformers": "hf", "vllm": "vllm", "openai": "openai"}.get(name, name)
