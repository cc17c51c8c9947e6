"""The one model-call layer (icm.llm): JSON in answers, the re-ask and the schema asked for.

The concrete clients are tested in tests/backends/chat/.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from icm.backends.chat.openai import response_format
from icm.errors import ModelOutputError
from icm.llm import (
    FunctionChat,
    Generation,
    LLMError,
    OutputMode,
    UnreadableAnswer,
    ask_validated,
    extract_json,
    iter_json_objects,
    parse_json_as,
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
