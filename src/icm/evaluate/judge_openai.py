"""An MEQ judge on any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, Ollama, APIs).

It asks for JSON with a schema (``response_format`` json_schema), validates it with pydantic,
re-asks once with the error when the answer cannot be read, and keeps the raw answer. A server
that rejects ``response_format`` is asked again without it; the markdown-table fallback of
:func:`icm.evaluate.meq.parse_judge_answer` then reads what it writes.

Spec: ``openai:MODEL@http://host:8000/v1`` (or ``openai:MODEL`` with ``OPENAI_BASE_URL``).
The API key comes from ``OPENAI_API_KEY``; local servers accept any value.
"""

from __future__ import annotations

import os
from typing import Any

from icm.backends.base import BackendError, split_model_url
from icm.errors import InputError
from icm.evaluate.meq import (
    JudgeAnswerError,
    JudgeScores,
    judge_prompt_id,
    parse_judge_answer,
    render_judge_prompt,
)

_SCHEMA = {
    "type": "object",
    "properties": {
        "accuracy": {"type": "integer", "minimum": 0, "maximum": 100},
        "preciseness": {"type": "integer", "minimum": 0, "maximum": 100},
        "comprehensiveness": {"type": "integer", "minimum": 0, "maximum": 100},
        "fluency": {"type": "integer", "minimum": 0, "maximum": 100},
        "rationale": {"type": "string"},
    },
    "required": ["accuracy", "preciseness", "comprehensiveness", "fluency", "rationale"],
    "additionalProperties": False,
}


class JudgeSpecError(InputError):
    """A --judge value that names no judge we have."""


def parse_judge_spec(spec: str) -> tuple[str, str | None]:
    """``openai:MODEL@URL`` -> (model, url); ``openai:MODEL`` -> (model, None)."""
    kind, _, rest = spec.partition(":")
    if kind.strip() != "openai" or not rest.strip():
        raise JudgeSpecError(
            f"unknown judge {spec!r}: use openai:MODEL@http://host:port/v1 (any OpenAI-compatible "
            "server) or openai:MODEL with OPENAI_BASE_URL set"
        )
    try:
        return split_model_url(rest)
    except BackendError as exc:
        raise JudgeSpecError(str(exc)) from exc


class OpenAIJudge:
    """Judge explanations with a chat model behind an OpenAI-compatible endpoint."""

    supports_json_schema = True

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 400,
        timeout: float = 120.0,
        rule: str | None = None,
    ) -> None:
        try:
            import openai
        except ImportError as exc:
            raise JudgeSpecError(
                "the openai judge needs the openai package: pip install 'icm-assistant[openai]'"
            ) from exc
        self.model = model
        self.name = f"openai:{model}"
        self.prompt: str | None = judge_prompt_id()
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.rule = rule
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            timeout=timeout,
            max_retries=1,
        )

    @classmethod
    def from_spec(cls, spec: str, **options: Any) -> OpenAIJudge:
        model, url = parse_judge_spec(spec)
        return cls(model, url, **options)

    def judge(self, reference: str, candidate: str) -> JudgeScores:
        messages: list[dict[str, str]] = [
            {"role": "user", "content": render_judge_prompt(reference, candidate, self.rule)}
        ]
        answer = self._ask(messages)
        try:
            return parse_judge_answer(answer)
        except JudgeAnswerError as first:
            # Re-ask once, showing the model what was wrong with its answer.
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": f"Your answer could not be read ({first}). Answer "
                 "with only the JSON object, with integer scores from 0 to 100."},
            ]
            second = self._ask(messages)
            try:
                return parse_judge_answer(second)
            except JudgeAnswerError as exc:
                raise JudgeAnswerError(str(exc), f"{answer}\n\n--- re-asked ---\n\n{second}") from exc

    def _ask(self, messages: list[dict[str, str]]) -> str:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.supports_json_schema:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "judge_scores", "schema": _SCHEMA, "strict": True},
            }
        try:
            response = self._client.chat.completions.create(**kwargs)
        except self._openai.BadRequestError:
            if not self.supports_json_schema:
                raise
            # The server does not do structured output: ask in plain text from now on.
            self.supports_json_schema = False
            kwargs.pop("response_format")
            response = self._client.chat.completions.create(**kwargs)
        content = response.choices[0].message.content if response.choices else None
        return content or ""
