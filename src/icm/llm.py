"""The one way to call a chat model: the chat protocol, the output mode, JSON extraction and the re-ask.

Every model call that wants an answer in a schema goes through :func:`ask_validated`: the model
is asked (with the schema as ``response_format`` where its output mode allows), the first JSON
object in the answer is validated against a pydantic model, and on failure the model is re-asked
once with the reason; every raw answer is kept for audit.

Output modes (the request's ``response_format``), chosen explicitly, as pydantic-ai does:

- ``json_schema``: constrained decoding to the pydantic model's JSON Schema (vLLM, SGLang, OpenAI,
  Ollama, llama.cpp's own server);
- ``json_object``: any JSON object (llama-cpp-python's server and older APIs);
- ``none``: no constraint; the schema is in the prompt, validation and the re-ask do the rest.

The concrete chat models live beside the backends and resolve from specs through
:func:`icm.backends.base.load_model`: ``openai:MODEL@URL``
(:class:`icm.backends.chat.openai.OpenAIChat`) and ``llama-cpp:PATH.gguf`` / ``llama-cpp:smollm2``
(:class:`icm.backends.chat.llama_cpp.LlamaCppModel`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from icm.errors import ModelError, ModelOutputError, ModelTimeout
from icm.prompts import render
from icm.validation import describe_validation_error


class OutputMode(StrEnum):
    """How a request asks for JSON: its ``response_format``."""

    json_schema = "json_schema"
    json_object = "json_object"
    none = "none"


Role = Literal["system", "user", "assistant"]
#: one turn of a conversation: (role, text)
Turn = tuple[Role, str]
JsonSchema = dict[str, Any]
T = TypeVar("T", bound=BaseModel)


class LLMError(ModelError):
    """A chat model that cannot be loaded, or a request to it that failed."""


class LLMTimeout(LLMError, ModelTimeout):
    """A chat model (or its server) that did not answer in time."""


class UnreadableAnswer(ModelOutputError):
    """The model's answer, and its answer to the re-ask, cannot be read as the schema.

    ``str()`` is the reason the last answer failed; :attr:`error` is that failure itself.
    """

    def __init__(self, error: ModelOutputError, answers: list[str], tokens: int) -> None:
        super().__init__(str(error), raw=join_answers(answers))
        self.error = error
        self.answers = answers
        self.tokens = tokens


@dataclass
class Generation:
    """A model's answer and the tokens it cost (0 where the model does not say)."""

    text: str
    tokens: int = 0


class Chat(Protocol):
    """Anything that answers a conversation: what :func:`ask_validated` talks to."""

    def chat(
        self, turns: Sequence[Turn], *, schema: JsonSchema | None = None, max_tokens: int | None = None
    ) -> Generation:
        """The next assistant turn. ``schema``: the answer's JSON Schema, used as the output mode allows."""
        ...


class ChatModel(Chat, Protocol):
    """A chat model resolved from a spec (``openai:...``, ``llama-cpp:...``)."""

    #: the spec it was resolved from (cache keys); ``name``: the model as results name it
    spec: str
    name: str
    supports_images: bool
    output_mode: OutputMode

    def complete(self, prompt: str, *, schema: JsonSchema | None = None, max_tokens: int = 768) -> Generation:
        """One user turn, one answer."""
        ...


@dataclass
class FunctionChat:
    """A :class:`Chat` made of a function, e.g. a model backend's generation bound to one image."""

    function: Callable[[Sequence[Turn], JsonSchema | None, int | None], Generation]

    def chat(
        self, turns: Sequence[Turn], *, schema: JsonSchema | None = None, max_tokens: int | None = None
    ) -> Generation:
        return self.function(turns, schema, max_tokens)


# -- JSON in an answer ----------------------------------------------------------------------

_DECODER = json.JSONDecoder()


def iter_json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every top-level JSON object in a model's answer, in order: bare, fenced or inside prose."""
    start = text.find("{")
    while start != -1:
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            yield value
        start = text.find("{", end)


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in a model's answer; :class:`ModelOutputError` when there is none."""
    for value in iter_json_objects(text):
        return value
    raise ModelOutputError("the answer holds no JSON object", raw=text)


def parse_json_as(text: str, schema: type[T], error: type[ModelOutputError] = ModelOutputError) -> T:
    """The first JSON object in ``text`` that validates as ``schema``.

    Raises ``error`` (a :class:`ModelOutputError`) with a reason written for the re-ask.
    """
    problem: str | None = None
    for value in iter_json_objects(text):
        try:
            return schema.model_validate(value)
        except ValidationError as exc:
            problem = problem or f"the JSON does not match the schema ({describe_validation_error(exc, 'answer')})"
    raise error(problem or "the answer holds no JSON object", raw=text)


def join_answers(answers: Sequence[str]) -> str:
    """Several raw answers (first try, re-ask) as one audit string."""
    return "\n---\n".join(answers)


# -- the re-ask -----------------------------------------------------------------------------


@dataclass
class Validated(Generic[T]):
    """A validated answer, with every raw answer it took (for audit) and the tokens spent."""

    value: T
    answers: list[str] = field(default_factory=list)
    tokens: int = 0

    @property
    def raw(self) -> str:
        return join_answers(self.answers)


def ask_validated(
    model: Chat,
    prompt: str,
    schema: type[T],
    *,
    check: Callable[[T], None] | None = None,
    parse: Callable[[str], T] | None = None,
    reask: str = "reask",
    max_tokens: int | None = None,
) -> Validated[T]:
    """Ask ``model`` for an answer in ``schema``; on an unreadable answer re-ask once with the reason.

    ``parse`` reads an answer (default: the first JSON object that validates as ``schema``);
    ``check`` may refuse a parsed answer for reasons the schema cannot state. Both raise
    :class:`ModelOutputError`. ``reask`` is the prompt template of the second user turn (it gets
    ``error``). Raises :class:`UnreadableAnswer` (keeping both raw answers) when the second answer
    fails too; a failed request raises the model's :class:`ModelError` as it is.
    """
    read = parse or (lambda text: parse_json_as(text, schema))
    json_schema = schema.model_json_schema()
    turns: list[Turn] = [("user", prompt)]
    answers: list[str] = []
    tokens = 0
    for attempt in range(2):
        generation = model.chat(turns, schema=json_schema, max_tokens=max_tokens)
        answers.append(generation.text)
        tokens += generation.tokens
        try:
            value = read(generation.text)
            if check is not None:
                check(value)
            return Validated(value, answers, tokens)
        except ModelOutputError as exc:
            if attempt == 1:
                raise UnreadableAnswer(exc, answers, tokens) from exc
            turns += [("assistant", generation.text), ("user", render(reask, error=str(exc)))]
    raise AssertionError("unreachable")  # pragma: no cover


# -- the protocol's pieces that every client shares ------------------------------------------


def parse_output_mode(value: OutputMode | str) -> OutputMode:
    """An output mode from its name (a client's ``output_mode`` option); an unknown one is an LLMError."""
    try:
        return OutputMode(value)
    except ValueError:
        raise LLMError(f"unknown output mode {value!r}; use one of {', '.join(OutputMode)}") from None


def chat_messages(turns: Sequence[Turn], image_urls: Sequence[str] = ()) -> list[dict[str, Any]]:
    """OpenAI-style chat messages; the images go with the first user turn.

    Without images every message's content is a plain string, which text-only chat templates need.
    """
    messages: list[dict[str, Any]] = []
    for i, (role, text) in enumerate(turns):
        if i == 0 and image_urls:
            content: Any = [{"type": "image_url", "image_url": {"url": u}} for u in image_urls]
            content.append({"type": "text", "text": text})
        else:
            content = text
        messages.append({"role": role, "content": content})
    return messages
