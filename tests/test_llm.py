"""The one model-call layer: JSON in answers, the re-ask, output modes and their fallback.

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
from icm.errors import ModelOutputError
from icm.llm import (
    FunctionChat,
    Generation,
    LLMError,
    OpenAIChat,
    OutputMode,
    UnreadableAnswer,
    ask_validated,
    extract_json,
    iter_json_objects,
    parse_json_as,
    response_format,
)


class Point(BaseModel):
    x: int
    y: int


# -- JSON in answers ------------------------------------------------------------------------


def test_json_objects_bare_fenced_or_in_prose() -> None:
    assert extract_json('{"x": 1, "y": 2}') == {"x": 1, "y": 2}
    assert extract_json('Sure!\n```json\n{"x": 1, "y": {"z": 3}}\n```\nAnything {else}?') == {
        "x": 1, "y": {"z": 3}}
    # every top-level object, never the ones nested inside
    assert list(iter_json_objects('{"a": {"b": 1}} and then {"c": 2} {broken')) == [{"a": {"b": 1}}, {"c": 2}]
    for text in ("no JSON here", '{"x": 1', "[1, 2]", ""):
        with pytest.raises(ModelOutputError, match="no JSON object") as raised:
            extract_json(text)
        assert raised.value.raw == text


def test_the_first_object_that_validates_is_the_answer() -> None:
    assert parse_json_as('Example: {"x": "?"}. Answer: {"x": 1, "y": 2}', Point) == Point(x=1, y=2)
    with pytest.raises(ModelOutputError, match=r"does not match the schema \(y: Field required\)"):
        parse_json_as('{"x": 1}', Point)


# -- the re-ask -----------------------------------------------------------------------------


def scripted_chat(replies: list[str], seen: list[list[tuple[str, str]]] | None = None) -> FunctionChat:
    answers = iter(replies)

    def chat(turns, schema, max_tokens):  # type: ignore[no-untyped-def]
        if seen is not None:
            seen.append(list(turns))
        return Generation(next(answers), tokens=10)

    return FunctionChat(chat)


def test_reask_once_with_the_error() -> None:
    conversations: list[list[tuple[str, str]]] = []
    validated = ask_validated(scripted_chat(["not json", '{"x": 1, "y": 2}'], conversations), "where?", Point)
    assert validated.value == Point(x=1, y=2)
    assert validated.raw == 'not json\n---\n{"x": 1, "y": 2}' and validated.tokens == 20
    assert [role for role, _ in conversations[1]] == ["user", "assistant", "user"]
    assert conversations[1][1] == ("assistant", "not json")
    assert "no JSON object" in conversations[1][2][1]


def test_check_refusals_are_re_asked_and_two_failures_keep_both_answers() -> None:
    def positive(point: Point) -> None:
        if point.x < 0:
            raise ModelOutputError("x must not be negative")

    conversations: list[list[tuple[str, str]]] = []
    with pytest.raises(UnreadableAnswer) as raised:
        ask_validated(scripted_chat(['{"x": -1, "y": 0}', '{"x": -2, "y": 0}'], conversations), "where?", Point,
                      check=positive)
    assert str(raised.value) == "x must not be negative"
    assert raised.value.answers == ['{"x": -1, "y": 0}', '{"x": -2, "y": 0}']
    assert raised.value.raw == '{"x": -1, "y": 0}\n---\n{"x": -2, "y": 0}' and raised.value.tokens == 20
    assert "x must not be negative" in conversations[1][2][1]
    assert isinstance(raised.value, ModelOutputError)


def test_a_failed_request_is_not_an_answer() -> None:
    def down(turns, schema, max_tokens):  # type: ignore[no-untyped-def]
        raise LLMError("HTTP 503 InternalServerError: overloaded")

    with pytest.raises(LLMError, match="503"):
        ask_validated(FunctionChat(down), "where?", Point)


def test_the_schema_asked_for_is_the_pydantic_models() -> None:
    schemas: list[Any] = []

    def chat(turns, schema, max_tokens):  # type: ignore[no-untyped-def]
        schemas.append(schema)
        return Generation('{"x": 1, "y": 2}')

    ask_validated(FunctionChat(chat), "where?", Point)
    assert schemas == [Point.model_json_schema()]
    assert response_format(OutputMode.json_schema, schemas[0]) == {
        "type": "json_schema", "json_schema": {"name": "Point", "schema": Point.model_json_schema()}}
    assert response_format(OutputMode.json_object, schemas[0]) == {"type": "json_object"}
    assert response_format(OutputMode.none, schemas[0]) is None
    assert response_format(OutputMode.json_schema, None) is None


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
    OpenAIChat(f"m@{url}", max_retries=0).chat([("user", "where?")], schema=Point.model_json_schema())
    assert "response_format" not in script.requests[-1]["body"]
    # another model on the same server is still asked in the mode it was given (and falls back itself)
    before = len(script.requests)
    OpenAIChat(f"other@{url}", max_retries=0).chat([("user", "where?")], schema=Point.model_json_schema())
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


def test_the_readme_example_runs_on_the_in_process_model() -> None:
    """README, "Every spec ... resolves through one registry": a grammar from the schema."""
    from icm.llm import LlamaCppModel

    class Colour(BaseModel):
        name: str

    model = load_chat_model("llama-cpp:smollm2", output_mode="json_schema")
    assert isinstance(model, LlamaCppModel) and model.spec == "llama-cpp:smollm2"
    answer = ask_validated(model, "Name the colour of the sky as JSON.", Colour)
    assert answer.value.name and answer.raw.lstrip().startswith("{")


def test_llama_cpp_specs_name_a_gguf_file_or_smollm2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from icm.llm import LlamaCppModel, smollm2_path

    model = load_chat_model(f"llama-cpp:{smollm2_path()}")
    assert isinstance(model, LlamaCppModel) and model.spec == f"llama-cpp:{smollm2_path()}"
    assert model.supports_images is False
    with pytest.raises(LLMError, match="no GGUF model file"):
        load_chat_model(f"llama-cpp:{tmp_path / 'missing.gguf'}")
    with pytest.raises(LLMError, match="cannot take these arguments"):
        load_chat_model("llama-cpp")  # no path
