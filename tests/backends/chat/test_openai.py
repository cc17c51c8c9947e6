"""icm.backends.chat.openai: output modes and their fallback, and what a client remembers.

Output modes are exercised against a scripted loopback server (a boundary mock of the
chat-completions protocol: the openai client, HTTP and our request logic all run for real) for
every status a server may answer, and against the real llama-cpp-python server of the dev extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import ChatServer, chat_completion
from pydantic import BaseModel

from icm.backends.base import load_chat_model
from icm.backends.chat.openai import OpenAIChat
from icm.llm import LLMError, OutputMode


class Point(BaseModel):
    x: int
    y: int


# -- output modes against a scripted server ---------------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[str, ChatServer]]:
    script = ChatServer()
    script.answer = lambda body: (200, chat_completion('{"x": 1, "y": 2}'))
    yield script.url, script
    script.close()


def rejecting(status: int, message: str) -> Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]:
    """A server that refuses every request with a response_format, and answers the others."""
    return lambda body: ((status, {"error": {"message": message, "code": status}}) if "response_format" in body
                         else (200, chat_completion('{"x": 1, "y": 2}')))


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "response_format is not supported"),
        (422, "Input should be 'text' or 'json_object'"),  # any 4xx but auth/rate/not-found ...
        (400, "something else entirely"),  # a 4xx need not name the format
        (500, "response_format type must be one of \"text\" or \"json_object\", but got: json_schema"),
        (500, "json_schema is not supported"),
    ],
)
def test_a_rejected_format_falls_back_and_is_remembered(server: tuple[str, ChatServer], status: int,
                                                        message: str) -> None:
    url, script = server
    script.answer = rejecting(status, message)
    model = OpenAIChat(f"m@{url}", max_retries=0)
    assert model.chat([("user", "where?")], schema=Point.model_json_schema()).text == '{"x": 1, "y": 2}'
    assert [("response_format" in r["body"]) for r in script.requests] == [True, False]
    assert model.mode() is OutputMode.none
    # the next request, and any client of the same server and model, asks without the format
    OpenAIChat(f"m@{url}", max_retries=0, memory=model.memory).chat([("user", "where?")],
                                                                     schema=Point.model_json_schema())
    assert "response_format" not in script.requests[-1]["body"]
    # another model on the same server is still asked in the mode it was given (and falls back itself)
    before = len(script.requests)
    OpenAIChat(f"other@{url}", max_retries=0, memory=model.memory).chat([("user", "where?")],
                                                                         schema=Point.model_json_schema())
    assert script.requests[before]["body"]["response_format"]["type"] == "json_schema"
    assert len(script.requests) == before + 2


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "invalid api key"),
        (403, "forbidden"),
        (404, "no such model"),
        (429, "rate limited"),
        (500, "out of memory"),  # a 5xx that does not name the format
        (503, "overloaded"),
    ],
)
def test_other_failures_are_errors_not_fallbacks(server: tuple[str, ChatServer], status: int, message: str) -> None:
    url, script = server
    script.answer = rejecting(status, message)
    model = OpenAIChat(f"m@{url}", max_retries=0)
    with pytest.raises(LLMError, match=f"HTTP {status}"):
        model.chat([("user", "where?")], schema=Point.model_json_schema())
    assert len(script.requests) == 1
    assert model.mode() is OutputMode.json_schema  # nothing learnt about the format


def test_a_fallback_that_fails_too_is_that_error_and_nothing_is_remembered(server: tuple[str, ChatServer]) -> None:
    url, script = server
    script.answer = lambda body: (400, {"error": {"message": "maximum context length exceeded"}})
    model = OpenAIChat(f"m@{url}", max_retries=0)
    with pytest.raises(LLMError, match="maximum context length"):
        model.chat([("user", "where?")], schema=Point.model_json_schema())
    assert len(script.requests) == 2
    assert model.mode() is OutputMode.json_schema  # the format was not the problem


def test_explicit_output_modes(server: tuple[str, ChatServer]) -> None:
    url, script = server
    schema = Point.model_json_schema()
    OpenAIChat(f"m@{url}", output_mode="json_object").chat([("user", "a")], schema=schema)
    OpenAIChat(f"m@{url}", output_mode="none").chat([("user", "a")], schema=schema)
    OpenAIChat(f"m@{url}").chat([("user", "a")])  # no schema: no format
    assert script.requests[0]["body"]["response_format"] == {"type": "json_object"}
    assert "response_format" not in script.requests[1]["body"] and "response_format" not in script.requests[2]["body"]
    with pytest.raises(LLMError, match="unknown output mode 'xml'"):
        OpenAIChat(f"m@{url}", output_mode="xml")


def test_chat_models_resolve_through_the_registry(server: tuple[str, ChatServer]) -> None:
    url, _ = server
    model = load_chat_model(f"openai:m@{url}", output_mode="json_object")
    assert isinstance(model, OpenAIChat)
    assert (model.model, model.base_url, model.output_mode) == ("m", url, OutputMode.json_object)
    assert (model.spec, model.name) == (f"openai:m@{url}", "openai:m")
    with pytest.raises(LLMError, match="unknown chat model 'local'; known: llama-cpp, openai"):
        load_chat_model("local")
    with pytest.raises(LLMError, match="cannot take these arguments"):
        load_chat_model(f"openai:m@{url}", colour="blue")


# -- the real llama.cpp server ----------------------------------------------------------------


def test_llama_cpp_server_rejects_json_schema_and_the_fallback_answers(llama_server: str) -> None:
    # a long request timeout: llama.cpp on a few shared CPU cores can be slow
    model = OpenAIChat(f"smollm2@{llama_server}", max_tokens=12, max_retries=0, timeout=600)
    answer = model.chat([("user", "Give a point as JSON with x and y.")], schema=Point.model_json_schema())
    assert answer.tokens > 0  # a real answer, not an error
    assert model.mode() is OutputMode.none  # json_schema was refused (HTTP 500) and is not asked again
    constrained = OpenAIChat(f"smollm2@{llama_server}", output_mode="json_object", max_tokens=12, max_retries=0,
                             timeout=600)
    text = constrained.chat([("user", "Give a point as JSON with x and y.")], schema=Point.model_json_schema()).text
    assert constrained.mode() is OutputMode.json_object  # accepted: JSON by grammar
    assert text.lstrip().startswith("{")
