"""OpenAIBackend: any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp, Ollama,
hosted APIs), as ``openai:MODEL@BASE_URL``.

Verdicts come, where the server offers OpenAI's Decisions API (``POST /v1/decisions``: OpenAI,
SGLang, ``icm serve``), from one request per image carrying one predicate per rule ("the image
violates this rule: ..."), whose answer probabilities are p(violates) and whose refusals are
``uncertain``. Elsewhere each rule is its own chat request, and the verdict comes from the first
answer token's ``top_logprobs`` where the server returns them, and from the answer text where it
does not (then without a probability). ``scoring=auto`` (the default) tries decisions once per
server and remembers the answer; ``decisions`` or ``chat`` choose. Explanations are asked for
in the ``response_format`` output mode (json_schema by default; a server that rejects it is asked
without one from then on), validated with pydantic and re-asked once (:mod:`icm.llm`). Requests run
with bounded concurrency, a timeout, and the client's retries with exponential backoff (connection
errors, 408, 409, 429 and 5xx). The server is expected to cache the shared prompt prefix (vLLM and
SGLang do by default; llama.cpp per slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from icm.backends.base import BackendError, BackendTimeout
from icm.backends.chat.openai import OpenAIChat, ServerMemory, split_model_url
from icm.backends.model import ModelBackend, data_urls, uncertain, verdict_from_probability
from icm.backends.options import OpenAIOptions
from icm.backends.scoring import parse_yes_no, probability_from_top_logprobs
from icm.errors import ModelTimeout
from icm.llm import Chat, FunctionChat, Generation, JsonSchema, LLMError, Turn, chat_messages
from icm.media import DecodedImage
from icm.policy.schema import Policy
from icm.results import BackendInfo, RuleVerdict, Verdict


@dataclass
class _VerdictAnswer:
    """One verdict request's outcome: the answer text and first-token top logprobs, or an error."""

    text: str = ""
    top_logprobs: dict[str, float] | None = None
    refused: bool = False
    error: str | None = None
    timed_out: bool = False


#: HTTP statuses that say a server has no Decisions API (rather than that one request failed)
NO_DECISIONS = frozenset({404, 405, 501})


class RuleQuestions(list[str]):
    """One image's per-rule chat questions, and the text a decisions request shows with the image."""

    def __init__(self, questions: list[str], context: str) -> None:
        super().__init__(questions)
        self.context = context


def model_and_url(spec: str) -> tuple[str, str | None]:
    """``MODEL@BASE_URL`` -> (model, base_url); a spec without a model is a :class:`BackendError`."""
    try:
        return split_model_url(spec)
    except LLMError as exc:
        raise BackendError(str(exc)) from exc


class OpenAIBackend(ModelBackend):
    """A model behind an OpenAI-compatible server.

    ``spec`` is ``MODEL@BASE_URL``, e.g. ``Qwen/Qwen2-VL-2B-Instruct@http://127.0.0.1:8000/v1``.
    Options (:class:`~icm.backends.options.OpenAIOptions`): explain, with_signals, threshold,
    images, logprobs, top_logprobs, response_format, max_concurrency, timeout, max_retries,
    max_tokens, max_frames, max_image_side, max_image_bytes, api_key_env, yes, no.
    """

    name = "openai"
    options_model = OpenAIOptions
    options: OpenAIOptions

    def __init__(self, spec: str, *, memory: ServerMemory[bool] | None = None, **options: Any) -> None:
        """``memory``: what is known of servers (whether they offer the Decisions API, which output
        modes they reject), shared with the backends and chat clients given the same one."""
        super().__init__(**options)
        self.model, self.base_url = model_and_url(spec)
        self.supports_images = self.options.images
        try:
            self.chat = OpenAIChat(
                spec,
                output_mode=self.options.response_format,
                temperature=0.0,
                max_tokens=self.options.max_tokens,
                timeout=self.options.timeout,
                max_retries=self.options.max_retries,
                api_key_env=self.options.api_key_env,
                memory=memory,
            )
        except LLMError as exc:  # e.g. the openai extra is not installed
            raise BackendError(str(exc)) from exc
        self._pool = ThreadPoolExecutor(self.options.max_concurrency, thread_name_prefix="icm-openai")
        #: (base URL, model) -> whether that server offers ``/v1/decisions``, learnt from the first request
        self._decisions_key = ("decisions", str(self.chat.client.base_url), self.model)

    def info(self) -> BackendInfo:
        decisions = self._decisions()
        models = {
            "model": self.model,
            "prompts": self.prompts.decision_ids if decisions else self.prompts.ids,
            "scoring": "decisions" if decisions else "chat" if decisions is False else "auto",
        }
        if self.base_url:
            models["base_url"] = self.base_url
        return BackendInfo(name=self.name, models=models)

    def _decisions(self) -> bool | None:
        """Whether verdicts come from the Decisions API (None: not known yet, asked next time)."""
        if self.options.scoring != "auto":
            return self.options.scoring == "decisions"
        return self.chat.memory.get(self._decisions_key)

    def _questions(self, policy: Policy, facts: list[str]) -> RuleQuestions:
        return RuleQuestions(self.prompts.verdict_prompts(policy, facts), self.prompts.decision_input(policy, facts))

    def _see(self, image: DecodedImage) -> list[str]:
        return data_urls(image, self.options) if self.supports_images else []

    def _score(self, seen: list[str], prompts: list[str], policy: Policy) -> list[RuleVerdict]:
        if self._decisions() is not False and isinstance(prompts, RuleQuestions):
            try:
                return self._decide(seen, prompts.context, policy)
            except LLMError as exc:
                status = getattr(exc.__cause__, "status_code", None)
                if self.options.scoring == "decisions" or status not in NO_DECISIONS:
                    failed = BackendTimeout if isinstance(exc, ModelTimeout) else BackendError
                    raise failed(f"the decisions request to {self.model} failed: {exc}") from exc
                self.chat.memory.learn(self._decisions_key, False)  # no such endpoint here: per-rule chat from now on
        return self._chat_score(seen, prompts, policy)

    def _decide(self, seen: list[str], context: str, policy: Policy) -> list[RuleVerdict]:
        """One decisions request for the image: a predicate per rule; a refusal is ``uncertain``."""
        content: list[dict[str, Any]] = [{"type": "input_image", "image_url": url} for url in seen]
        content.append({"type": "input_text", "text": context})
        questions = [
            {"type": "predicate", "name": rule.id, "instructions": statement}
            for rule, statement in zip(policy.rules, self.prompts.predicates(policy), strict=True)
        ]
        return self.verdicts_of(policy, self.ask_decisions(content, questions))

    def ask_decisions(self, content: list[dict[str, Any]], questions: list[dict[str, Any]]) -> list[Any]:
        """One decisions request (the user message's content, the questions): its answers, one
        per question (a :class:`BackendError` otherwise)."""
        decision = self._pool.submit(
            self.chat.decide, [{"role": "user", "content": content}], questions
        ).result()
        if self.options.scoring == "auto":
            self.chat.memory.learn(self._decisions_key, True)
        answers = list(decision.answers or [])
        if len(answers) != len(questions):
            raise BackendError(
                f"{self.model} answered {len(answers)} of {len(questions)} decision questions"
            )
        return answers

    def verdicts_of(self, policy: Policy, answers: Sequence[Any]) -> list[RuleVerdict]:
        """The rules' verdicts from their predicate answers (in the policy's order)."""
        verdicts = []
        for rule, answer in zip(policy.rules, answers, strict=True):
            named = getattr(answer, "name", None)
            if named is not None and named != rule.id:  # answers come in question order, by the API
                raise BackendError(f"{self.model} answered the decision question {named!r} in the place of {rule.id!r}")
            kind = getattr(answer, "type", None)
            if kind == "predicate":
                p = float(answer.probability)
                verdicts.append(
                    verdict_from_probability(rule.id, p, self.options.threshold) if 0.0 <= p <= 1.0 else
                    uncertain(rule.id, f"The model's probability {p} is not a probability.", answer.model_dump_json())
                )
            elif kind == "refusal":
                verdicts.append(uncertain(rule.id, "The model refused to answer.", answer.model_dump_json()))
            else:
                verdicts.append(uncertain(
                    rule.id, f"The model answered a {kind} instead of a probability.", str(answer)
                ))
        return verdicts

    def _chat_score(self, seen: list[str], prompts: list[str], policy: Policy) -> list[RuleVerdict]:
        answers = list(self._pool.map(lambda p: self._ask_verdict(chat_messages([("user", p)], seen)), prompts))
        failures = [a.error for a in answers if a.error is not None]
        if len(failures) == len(answers):
            failed = BackendTimeout if all(a.timed_out for a in answers) else BackendError
            raise failed(f"every request to {self.model} failed; first: {failures[0]}")
        return [self._verdict(rule.id, a) for rule, a in zip(policy.rules, answers, strict=True)]

    def _chat(self, seen: list[str]) -> Chat:
        def answer(turns: Sequence[Turn], schema: JsonSchema | None, max_tokens: int | None) -> Generation:
            # Through the pool, so explanations count against max_concurrency too.
            return self._pool.submit(
                self.chat.chat, turns, schema=schema, max_tokens=max_tokens, images=seen
            ).result()

        return FunctionChat(answer)

    def _verdict(self, rule_id: str, answer: _VerdictAnswer) -> RuleVerdict:
        if answer.error is not None:
            return uncertain(rule_id, f"The model could not be asked: {answer.error}.", answer.error)
        if answer.refused:
            return uncertain(rule_id, "The model refused to answer.", answer.text)
        yes, no = self.options.yes, self.options.no
        if answer.top_logprobs:
            try:
                p = probability_from_top_logprobs(answer.top_logprobs, yes, no)
            except ValueError:
                p = float("nan")
            if p is not None:
                verdict = verdict_from_probability(rule_id, p, self.options.threshold)
                verdict.raw = verdict.raw or answer.text
                return verdict
        said = parse_yes_no(answer.text, yes, no)
        if said is None:
            return uncertain(rule_id, f"The model's answer is neither {yes} nor {no}.", answer.text)
        return RuleVerdict(
            rule_id=rule_id,
            verdict=Verdict.violates if said else Verdict.complies,
            raw=answer.text,
        )

    def _ask_verdict(self, messages: list[dict[str, Any]]) -> _VerdictAnswer:
        options: dict[str, Any] = {}
        if self.options.logprobs:
            options = {"logprobs": True, "top_logprobs": self.options.top_logprobs}
        try:
            response = self.chat.create(
                messages,
                max_tokens=3,  # the answer word, perhaps with a full stop
                temperature=0.0,
                **options,
            )
        except LLMError as exc:
            return _VerdictAnswer(error=str(exc), timed_out=isinstance(exc, ModelTimeout))
        if not response.choices:
            return _VerdictAnswer(error="the server returned no choices")
        choice = response.choices[0]
        message = choice.message
        refusal = getattr(message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            return _VerdictAnswer(text=refusal or message.content or "", refused=True)
        top: dict[str, float] | None = None
        content = choice.logprobs.content if choice.logprobs is not None else None
        if content:
            top = {}
            for alternative in content[0].top_logprobs or []:
                top[alternative.token] = max(alternative.logprob, top.get(alternative.token, -1e9))
        return _VerdictAnswer(text=message.content or "", top_logprobs=top)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.chat.close()
