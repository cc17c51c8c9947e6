"""A chat model behind any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, hosted APIs):
:class:`OpenAIChat`, the ``openai:MODEL@URL`` chat model, with the Decisions API call.

One fallback rule: a server that rejects the requested output mode (see
:func:`rejects_response_format`) is asked again without one, and that server (base URL + model)
is asked without that format from then on, by every client that holds the same
:class:`ServerMemory` (a client makes its own unless given one).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from icm.llm import (
    Generation,
    JsonSchema,
    LLMError,
    LLMTimeout,
    OutputMode,
    Turn,
    chat_messages,
    parse_output_mode,
)

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion

R = TypeVar("R")
V = TypeVar("V")

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
    """What has been learnt about servers (keyed by base URL + model, and what was asked): held by
    the clients, and shared by the clients given the same one."""

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


def describe(exc: BaseException) -> str:
    """A failed request in one line: ``HTTP 500 InternalServerError: ...``."""
    status = getattr(exc, "status_code", None)
    prefix = f"HTTP {status} " if status is not None else ""
    return f"{prefix}{type(exc).__name__}: {exc}"


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
        memory: ServerMemory[bool] | None = None,
    ) -> None:
        """
        Args:
            target: ``MODEL@BASE_URL``, or ``MODEL`` with OPENAI_BASE_URL set.
            output_mode: json_schema, json_object or none (see the module's docstring).
            temperature, max_tokens: sampling defaults of every request.
            timeout: seconds per request; max_retries: retries with exponential backoff.
            api_key: the key itself, else read from ``api_key_env`` (local servers need none).
            memory: what is known of servers (rejected output modes, the Decisions API), shared
                with the clients given the same one; a new one by default.
        """
        self.output_mode = parse_output_mode(output_mode)
        self.memory: ServerMemory[bool] = memory if memory is not None else ServerMemory()
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
        return OutputMode.none if self.memory.get(("format", *self._server, self.output_mode)) else self.output_mode

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
            self.memory.learn(("format", *self._server, mode), True)  # only now: it was the format, not the request
        if not response.choices:
            return Generation("")
        message = response.choices[0].message
        text = message.content or getattr(message, "refusal", None) or ""
        return Generation(text, response.usage.total_tokens if response.usage is not None else 0)

    def complete(self, prompt: str, *, schema: JsonSchema | None = None, max_tokens: int = 768) -> Generation:
        return self.chat([("user", prompt)], schema=schema, max_tokens=max_tokens)

    def close(self) -> None:
        self.client.close()
