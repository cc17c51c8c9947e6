"""Validation errors read the same everywhere: a path into the input, then the problem."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError, field_validator

from icm.validation import Problem, describe_validation_error, validation_problems


class Item(BaseModel):
    name: str
    size: int = Field(ge=1)

    @field_validator("name")
    @classmethod
    def _no_spaces(cls, value: str) -> str:
        if " " in value:
            raise ValueError("no spaces in a name")
        return value


class Box(BaseModel):
    items: list[Item]
    label: str | int


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Box.model_validate(data)
    return info.value


def test_problems_have_a_path_and_a_message_without_pydantic_prefixes() -> None:
    problems = validation_problems(_error({"items": [{"name": "a", "size": 1}, {"name": "b c", "size": 0}],
                                           "label": "x"}))
    assert [(p.path, p.message) for p in problems] == [
        ("items[1].name", "no spaces in a name"),  # not "Value error, no spaces ..."
        ("items[1].size", "Input should be greater than or equal to 1"),
    ]


def test_describe_joins_every_problem_and_names_the_root() -> None:
    text = describe_validation_error(_error([]), root="box")
    assert text == "box: Input should be a valid dictionary or instance of Box"
    text = describe_validation_error(_error({"items": [{"size": 2}]}))
    assert text == "items[0].name: Field required; label: Field required"


def test_paths() -> None:
    assert Problem(("rules", 0, "criteria", 2, "id"), "m").path == "rules[0].criteria[2].id"
    assert Problem((3,), "m").path == "[3]"
    assert Problem((), "m").text("policy") == "policy: m"
