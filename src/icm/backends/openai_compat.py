"""OpenAIBackend: any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp, Ollama,
hosted APIs), as ``openai:MODEL@BASE_URL``.

Verdicts come from the first answer token's ``top_logprobs`` where the server returns them, and
from the answer text where it does not (then without a probability). Explanations are asked for
with a ``response_format`` JSON schema, validated with pydantic and re-asked once. Requests run
with bounded concurrency, a timeout, and the client's retries with exponential backoff (connection
errors, 408, 409, 429 and 5xx). The server is expected to cache the shared prompt prefix (vLLM and
SGLang do by default; llama.cpp per slot).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import openai

from icm.backends.base import BackendError, BackendTimeout, Explain, split_model_url
from icm.backends.scoring import parse_yes_no, probability_from_top_logprobs
from icm.backends.vlm import (
    ModelBackend,
    attach_explanations,
    chat_messages,
    data_url,
    explain_with_reask,
    explanation_schema,
    pick_frames,
    rules_to_explain,
    uncertain,
    verdict_from_probability,
)
from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.results import BackendInfo, RuleVerdict, Verdict

ResponseFormat = Literal["json_schema", "json_object", "none"]


@dataclass
class _Answer:
    """One verdict request's outcome: the answer text and first-token top logprobs, or an error."""

    text: str = ""
    top_logprobs: dict[str, float] | None = None
    refused: bool = False
    error: str | None = None
    timed_out: bool = False


#: ``MODEL@BASE_URL`` -> (model, base_url).
parse_spec = split_model_url


class OpenAIBackend(ModelBackend):
    """A model behind an OpenAI-compatible server."""

    name = "openai"
    supports_logprobs = True

    def __init__(
        self,
        spec: str,
        *,
        explain: Explain | str = Explain.violations,
        with_signals: bool = False,
        threshold: float = 0.5,
        images: bool = True,
        logprobs: bool = True,
        top_logprobs: int = 20,
        response_format: ResponseFormat = "json_schema",
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_tokens: int = 1024,
        max_frames: int = 1,
        max_image_side: int = 1024,
        max_image_bytes: int = 4_000_000,
        api_key_env: str = "OPENAI_API_KEY",
        yes: str = "Yes",
        no: str = "No",
    ) -> None:
        """
        Args:
            spec: ``MODEL@BASE_URL``, e.g. ``Qwen/Qwen2-VL-2B-Instruct@http://127.0.0.1:8000/v1``.
            explain: which rules get a written explanation: all, violations or none.
            with_signals: run the local engine first and give its findings as known facts.
            threshold: a rule is violated when p(violates) is above this.
            images: send the image; False for a text-only model judging from ``with_signals``.
            logprobs: ask for first-token top logprobs (off for servers that reject them).
            top_logprobs: how many alternatives of the first token to ask for.
            response_format: ``json_schema`` (constrained), ``json_object`` (servers without
                json_schema, e.g. llama-cpp-python) or ``none`` (validation and re-ask only).
            max_concurrency: requests in flight at once, across all images.
            timeout: seconds per request; max_retries: retries with exponential backoff.
            max_tokens: length limit of an explanation.
            max_frames: frames of an animated image sent (evenly spaced).
            max_image_side, max_image_bytes: limits of each image's data URL.
            api_key_env: the environment variable holding the API key (local servers need none).
            yes, no: the answer words.
        """
        self._setup_judging(explain, with_signals, threshold)
        if max_concurrency < 1 or max_frames < 1:
            raise BackendError("max_concurrency and max_frames must be at least 1")
        if response_format not in ("json_schema", "json_object", "none"):
            raise BackendError(f"unknown response_format {response_format!r}")
        if not images and not with_signals:
            # A verdict the model gave without seeing the image, or anything about it, is a guess.
            raise BackendError(
                "images=False sends the model nothing about the image: set with_signals=True so a "
                "text-only model judges from the local engine's findings"
            )
        self.model, self.base_url = parse_spec(spec)
        self.supports_images = images
        self.logprobs = logprobs
        self.top_logprobs = top_logprobs
        self.response_format = response_format
        self.max_tokens = max_tokens
        self.max_frames = max_frames
        self.max_image_side = max_image_side
        self.max_image_bytes = max_image_bytes
        self.yes, self.no = yes, no
        self.client = openai.OpenAI(
            # Local servers take any key; the client insists on one.
            api_key=os.environ.get(api_key_env) or "EMPTY",
            base_url=self.base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="icm-openai")

    def info(self) -> BackendInfo:
        models = {"model": self.model, "prompts": self.prompts.ids}
        if self.base_url:
            models["base_url"] = self.base_url
        return BackendInfo(name=self.name, models=models)

    def judge(self, image: DecodedImage, policy: Policy) -> list[RuleVerdict]:
        urls = []
        if self.supports_images:
            try:
                urls = [
                    data_url(f, self.max_image_side, self.max_image_bytes)
                    for f in pick_frames(image, self.max_frames)
                ]
            except ValueError as exc:
                raise BackendError(str(exc)) from exc
        facts = self._facts(image, policy) if self._facts is not None else []
        prompts = self.prompts.verdict_prompts(policy, facts)
        answers = list(self._pool.map(lambda p: self._ask_verdict(chat_messages([("user", p)], urls)),
                                      prompts))
        failures = [a.error for a in answers if a.error is not None]
        if len(failures) == len(answers):
            failed = BackendTimeout if all(a.timed_out for a in answers) else BackendError
            raise failed(f"every request to {self.model} failed; first: {failures[0]}")
        verdicts = [self._verdict(rule.id, a) for rule, a in zip(policy.rules, answers, strict=True)]
        rules = rules_to_explain(self.explain, policy, verdicts)
        if rules:
            def ask(turns: list[tuple[str, str]]) -> str:
                return self._pool.submit(self._ask_explanation, chat_messages(turns, urls)).result()

            try:
                explanation, raw, error = explain_with_reask(
                    ask, self.prompts.explain_prompt(policy, rules, facts), rules
                )
            except openai.OpenAIError as exc:
                explanation, raw, error = None, "", f"the request failed: {_describe(exc)}"
            attach_explanations(verdicts, rules, explanation, raw, error)
        return verdicts

    def _verdict(self, rule_id: str, answer: _Answer) -> RuleVerdict:
        if answer.error is not None:
            return uncertain(rule_id, f"The model could not be asked: {answer.error}.", answer.error)
        if answer.refused:
            return uncertain(rule_id, "The model refused to answer.", answer.text)
        if answer.top_logprobs:
            try:
                p = probability_from_top_logprobs(answer.top_logprobs, self.yes, self.no)
            except ValueError:
                p = float("nan")
            if p is not None:
                verdict = verdict_from_probability(rule_id, p, self.threshold)
                verdict.raw = verdict.raw or answer.text
                return verdict
        said = parse_yes_no(answer.text, self.yes, self.no)
        if said is None:
            return uncertain(
                rule_id, f"The model's answer is neither {self.yes} nor {self.no}.", answer.text
            )
        return RuleVerdict(
            rule_id=rule_id,
            verdict=Verdict.violates if said else Verdict.complies,
            raw=answer.text,
        )

    def _ask_verdict(self, messages: list[dict[str, Any]]) -> _Answer:
        options: dict[str, Any] = {}
        if self.logprobs:
            options = {"logprobs": True, "top_logprobs": self.top_logprobs}
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=3,  # the answer word, perhaps with a full stop
                temperature=0.0,
                **options,
            )
        except openai.OpenAIError as exc:
            return _Answer(error=_describe(exc), timed_out=isinstance(exc, openai.APITimeoutError))
        if not response.choices:
            return _Answer(error="the server returned no choices")
        choice = response.choices[0]
        message = choice.message
        refusal = getattr(message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            return _Answer(text=refusal or message.content or "", refused=True)
        top: dict[str, float] | None = None
        content = choice.logprobs.content if choice.logprobs is not None else None
        if content:
            top = {}
            for alternative in content[0].top_logprobs or []:
                top[alternative.token] = max(alternative.logprob, top.get(alternative.token, -1e9))
        return _Answer(text=message.content or "", top_logprobs=top)

    def _ask_explanation(self, messages: list[dict[str, Any]]) -> str:
        return self._complete(messages, explanation_schema(), "image_explanation")

    def generate(self, image: DecodedImage, prompt: str, schema: dict[str, Any] | None = None) -> str:
        """Free text (JSON where a schema is given) about one image, e.g. for the data engine."""
        urls = [data_url(f, self.max_image_side, self.max_image_bytes) for f in pick_frames(image, self.max_frames)]
        messages = chat_messages([("user", prompt)], urls if self.supports_images else [])
        try:
            return self._pool.submit(self._complete, messages, schema, "answer").result()
        except openai.OpenAIError as exc:
            failed = BackendTimeout if isinstance(exc, openai.APITimeoutError) else BackendError
            raise failed(f"{self.model}: {_describe(exc)}") from exc

    def _complete(self, messages: list[dict[str, Any]], schema: dict[str, Any] | None, name: str) -> str:
        options: dict[str, Any] = {}
        if schema is not None and self.response_format == "json_schema":
            options["response_format"] = {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
        elif schema is not None and self.response_format == "json_object":
            options["response_format"] = {"type": "json_object"}
        response = self.client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=self.max_tokens,
            temperature=0.0,
            **options,
        )
        if not response.choices:
            return ""
        message = response.choices[0].message
        return message.content or getattr(message, "refusal", None) or ""

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()


def _describe(exc: openai.OpenAIError) -> str:
    status = getattr(exc, "status_code", None)
    prefix = f"HTTP {status} " if status is not None else ""
    return f"{prefix}{type(exc).__name__}: {exc}"
