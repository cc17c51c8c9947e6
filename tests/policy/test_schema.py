"""The policy schema's small helpers."""

from __future__ import annotations

import re

import pytest

from icm.policy.schema import _SLUG, slugify


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Bare Legs!", "bare-legs"),
        ("openai:Qwen2-VL@http://127.0.0.1:8000/v1", "openai-qwen2-vl-http-127-0-0-1-8000-v1"),
        ("transformers:/models/llava", "transformers-models-llava"),
        ("  --local--  ", "local"),
        ("a_b.c", "a-b-c"),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug and re.match(_SLUG, slug)


def test_slugify_falls_back_and_cuts() -> None:
    assert slugify("!!!") == "item" and slugify("", default="run") == "run"
    assert slugify("abc def ghi", max_length=5) == "abc-d"
    assert slugify("abc- def", max_length=4) == "abc"  # never ends on a hyphen
