"""An MEQ judge on any chat model: ``openai:MODEL@URL`` (vLLM, SGLang, llama.cpp, Ollama, APIs)
or ``llama-cpp:PATH.gguf``, resolved through the one model registry.

It asks for the :class:`~icm.evaluate.meq.JudgeScores` JSON (as the model's output mode allows:
json_schema by default, and a server that rejects it is asked without one), reads the answer,
markdown score tables included, re-asks once with the reason when it cannot, and keeps the raw
answer (:func:`icm.llm.ask_validated`).
"""

from __future__ import annotations

from typing import Any

from icm.backends.base import REGISTRY, ModelKind, load_chat_model, split_spec
from icm.errors import InputError
from icm.evaluate.meq import JudgeAnswerError, JudgeScores, judge_prompt_id, parse_judge_answer, render_judge_prompt
from icm.llm import ChatModel, UnreadableAnswer, ask_validated


class JudgeSpecError(InputError):
    """A --judge value that names no judge we have."""


class ModelJudge:
    """Judge explanations with a chat model."""

    def __init__(self, model: ChatModel, *, rule: str | None = None) -> None:
        self.model = model
        self.name = model.name
        self.prompt: str | None = judge_prompt_id()
        self.rule = rule

    def judge(self, reference: str, candidate: str) -> JudgeScores:
        try:
            answer = ask_validated(
                self.model, render_judge_prompt(reference, candidate, self.rule), JudgeScores,
                parse=parse_judge_answer, reask="judge_reask",
            )
        except UnreadableAnswer as exc:
            raise JudgeAnswerError(str(exc), exc.raw) from exc
        return answer.value


def load_judge(spec: str, *, rule: str | None = None, **options: Any) -> ModelJudge:
    """A judge from a chat-model spec; ``options`` go to the model (``output_mode``, ``max_tokens``,
    ``temperature`` ..., by default greedy and 400 tokens)."""
    name, _ = split_spec(spec)
    if ModelKind.chat not in REGISTRY.get(name, {}):
        raise JudgeSpecError(
            f"unknown judge {spec!r}: use openai:MODEL@http://host:port/v1 (any OpenAI-compatible "
            "server), openai:MODEL with OPENAI_BASE_URL set, or llama-cpp:PATH.gguf"
        )
    return ModelJudge(load_chat_model(spec, **{"temperature": 0.0, "max_tokens": 400, **options}), rule=rule)
