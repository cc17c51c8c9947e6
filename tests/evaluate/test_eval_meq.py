"""MEQ: reading the release's judgements, parsing judge answers, the prompt, the OpenAI judge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ChatServer, chat_completion
from typer.testing import CliRunner

from icm.backends.chat.openai import OpenAIChat
from icm.cli.app import app
from icm.evaluate.judge import JudgeSpecError, ModelJudge, load_judge
from icm.evaluate.meq import (
    Judge,
    JudgeAnswerError,
    JudgeScores,
    load_judgements,
    parse_judge_answer,
    render_judge_prompt,
    run_judge,
    summarise_judgements,
)
from icm.evaluate.records import EvalInputError
from icm.llm import OutputMode
from icm.prompts import render

runner = CliRunner()
SNAPSHOTS = Path(__file__).parent / "snapshots"

# The 19 tables of fixtures/icm_release/eval/meq_judge, in file-name order:
#              accuracy  preciseness  comprehensiveness  fluency
# bite_lip        90        70            80               85
# lower_hips      90        80           100               95
# lower_leg       90        80            90               85
# lower_should.   20        10             0               30
# middle_crotch  100        80           100               90
# middle_leg      80        70            50               85
# middle_should.  70        60            80               75
# imagetext_25    80        70            80               90
# imagetext_193   20        10            10               30
# implicit        90        70            80               85
# kiss            30        20            50               40
# stockings       90        80            90               85
# tongue          90        70            80               85
# upper_bust      90        80            80               85
# upper_normal    90        80           100               95
# wearing_bras    90        80           100               85
# wet             90        80           100               85
# whole_large     70        60            80               80
# whole_normal   100        70           100               90
# sums:         1470      1220          1450             1480   (/19)
HAND_MEANS = {"accuracy": 1470 / 19, "preciseness": 1220 / 19, "comprehensiveness": 1450 / 19,
              "fluency": 1480 / 19}


def test_release_judgements_means_by_hand(release: Path) -> None:
    judgements = load_judgements(release / "eval" / "meq_judge")
    assert len(judgements) == 19
    summary = summarise_judgements(judgements)
    for criterion, mean in HAND_MEANS.items():
        assert summary.means[criterion] == pytest.approx(mean)
    assert summary.meq == pytest.approx(1470 / 19 / 100)  # 0.7737
    first = judgements[0]
    assert first.image == "bite_lip_20231207095152_14.png"
    assert first.reference.startswith("The image features a young woman with dark hair and gold")
    assert first.candidate.endswith("evokes a sense of desire and intrigue.")


def test_cli_reads_judgements_without_a_model(release: Path) -> None:
    out = runner.invoke(app, ["eval", "meq", "--judgements", str(release / "eval" / "meq_judge"),
                              "--json", "--no-lexical", "--no-embeddings"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["accuracy"] == pytest.approx(1470 / 19)
    assert data["fluency"] == pytest.approx(1480 / 19)
    assert data["meq"] == pytest.approx(0.7737, abs=1e-4)
    # one judged explanation loops (whole_normal repeats a 15-word run)
    assert data["reference_metrics"]["degeneration_rate"] == pytest.approx(1 / 19)
    assert data["reference_metrics"]["rouge_l"] is None  # --no-lexical


def test_a_broken_release_file_is_reported(tmp_path: Path, release: Path) -> None:
    source = (release / "eval" / "meq_judge" / "wet_20231122110742_1150.txt").read_text()
    (tmp_path / "a.txt").write_text(source.replace("| Fluency        | 85    |", ""))
    with pytest.raises(EvalInputError, match=r"a.txt:\d+: cannot read the judge's scores: "
                       "no JSON object and no score for fluency"):
        load_judgements(tmp_path)
    (tmp_path / "a.txt").write_text(source.replace("Human content:", "Human:"))
    with pytest.raises(EvalInputError, match="no 'Human content:' section"):
        load_judgements(tmp_path)


@pytest.mark.parametrize(
    "answer",
    [
        '{"accuracy": 80, "preciseness": 70, "comprehensiveness": 60, "fluency": 90, '
        '"rationale": "ok"}',
        'Here you go:\n```json\n{"Accuracy": 80, "Preciseness": 70, "Comprehensiveness": 60, '
        '"Fluency": 90}\n```\nThanks.',
        "| Criteria | Score |\n|---|---|\n| Accuracy | 80 |\n| Preciseness | 70 |\n"
        "| Comprehensiveness| 60 |\n| Fluency | 90 |\n\nok",
        "Accuracy: 80\nPrecision: 70\n**Comprehensiveness**: 60\nFluency = 90",
    ],
)
def test_judge_answers_json_or_table(answer: str) -> None:
    scores = parse_judge_answer(answer)
    assert (scores.accuracy, scores.preciseness, scores.comprehensiveness, scores.fluency) == (
        80, 70, 60, 90)
    assert scores.raw == answer


def test_unreadable_judge_answers() -> None:
    with pytest.raises(JudgeAnswerError, match="no score for comprehensiveness, fluency"):
        parse_judge_answer("Accuracy: 80\nPreciseness: 70")
    with pytest.raises(JudgeAnswerError, match="accuracy: Input should be less than or equal"):
        parse_judge_answer('{"accuracy": 180, "preciseness": 70, "comprehensiveness": 6, '
                           '"fluency": 9}')


def test_prompt_snapshot() -> None:
    """The rendered judge.v1 prompt, as a person reviewing it would read it."""
    rendered = render_judge_prompt("The woman bites her lip; the image is sexy.",
                                   "A woman biting her lip. The image is sexy.",
                                   rule="No suggestive poses.")
    snapshot = SNAPSHOTS / "judge.v1.txt"
    assert rendered == snapshot.read_text("utf-8")
    assert "{{" not in rendered and "No suggestive poses." in rendered
    without_rule = render_judge_prompt("r", "c")
    assert "The rule being applied" not in without_rule


def test_judge_spec() -> None:
    def target(spec: str) -> tuple[str, str | None]:
        model = load_judge(spec).model
        assert isinstance(model, OpenAIChat)
        return model.model, model.base_url

    assert target("openai:qwen2.5@http://127.0.0.1:8000/v1") == (
        "qwen2.5", "http://127.0.0.1:8000/v1")
    assert target("openai:gpt-4o") == ("gpt-4o", None)
    with pytest.raises(JudgeSpecError, match="unknown judge 'local'"):
        load_judge("local")


# -- a real HTTP server on loopback that answers like an OpenAI-compatible chat endpoint. This
# is a boundary mock: canned completions stand in for the model, while the openai client, HTTP
# and our request/parse/re-ask logic all run for real.


class _Server(ChatServer):
    """Answers from a queue of replies."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: list[tuple[int, dict[str, Any]]] = []
        self.answer = lambda body: self.replies.pop(0)

    def reply(self, content: str) -> None:
        self.replies.append((200, chat_completion(content, model="judge-model")))

    def reject(self, message: str) -> None:
        self.replies.append((400, {"error": {"message": message, "type": "invalid_request_error"}}))


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


GOOD = '{"accuracy": 85, "preciseness": 75, "comprehensiveness": 65, "fluency": 95, "rationale": "r"}'


def test_openai_judge_asks_for_json_schema(server: _Server) -> None:
    server.reply(GOOD)
    judge = ModelJudge(OpenAIChat(f"judge-model@{server.url}", api_key="k"))
    assert isinstance(judge, Judge)
    scores = judge.judge("reference text", "candidate text")
    assert (scores.accuracy, scores.fluency, scores.rationale) == (85, 95, "r")
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["response_format"]["type"] == "json_schema"
    # the schema is the pydantic model's own, never written twice; the audit field is not asked for
    schema = request["body"]["response_format"]["json_schema"]["schema"]
    assert schema == JudgeScores.model_json_schema() and "raw" not in schema["properties"]
    assert request["body"]["temperature"] == 0
    prompt = request["body"]["messages"][0]["content"]
    assert "<reference>\nreference text\n</reference>" in prompt
    assert "<candidate>\ncandidate text\n</candidate>" in prompt


def test_openai_judge_falls_back_and_re_asks(server: _Server) -> None:
    server.reject("response_format is not supported")
    server.reply("I liked it a lot.")  # unreadable -> re-ask once
    server.reply("| Criteria | Score |\n|---|---|\n| Accuracy | 60 |\n| Preciseness | 50 |\n"
                 "| Comprehensiveness | 40 |\n| Fluency | 70 |")
    judge = ModelJudge(OpenAIChat(f"judge-model@{server.url}"))
    scores = judge.judge("ref", "cand")
    assert (scores.accuracy, scores.preciseness, scores.comprehensiveness, scores.fluency) == (
        60, 50, 40, 70)
    assert len(server.requests) == 3
    assert "response_format" not in server.requests[1]["body"]  # structured output dropped
    re_ask = server.requests[2]["body"]["messages"]
    assert re_ask[1] == {"role": "assistant", "content": "I liked it a lot."}
    assert "could not be read" in re_ask[2]["content"]


def test_a_judge_that_never_answers_well_is_recorded_not_scored(server: _Server) -> None:
    server.reply("no idea")
    server.reply("still no idea")
    server.reply(GOOD)
    from icm.evaluate.meq import MEQJudgement

    judged = run_judge(ModelJudge(OpenAIChat(f"judge-model@{server.url}")),
                       [MEQJudgement("a", "r1", "c1"), MEQJudgement("b", "r2", "c2")])
    assert judged[0].scores is None and "unreadable answer" in (judged[0].error or "")
    assert judged[0].raw is not None and "still no idea" in judged[0].raw
    assert judged[1].scores is not None and judged[1].scores.accuracy == 85
    summary = summarise_judgements(judged)
    assert (summary.n, summary.judged, summary.failed) == (2, 1, 1)
    assert summary.means["accuracy"] == 85


def test_cli_judges_pairs_and_writes_judgements(server: _Server, tmp_path: Path,
                                                write_jsonl) -> None:
    server.reply(GOOD)
    server.reply(GOOD.replace("85", "45"))
    pairs = write_jsonl("pairs.jsonl", [
        {"image": "a.jpg", "reference": "A woman on a bed.", "candidate": "A woman lying on a bed."},
        {"image": "b.jpg", "reference": "A cat.", "candidate": "A dog."},
    ])
    out_file = tmp_path / "judgements.jsonl"
    out = runner.invoke(app, ["eval", "meq", "--judge", f"openai:judge-model@{server.url}",
                              "--pairs", str(pairs), "-o", str(out_file), "--json",
                              "--no-embeddings"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["accuracy"] == pytest.approx((85 + 45) / 2)
    assert data["meq"] == pytest.approx(0.65)
    # the written judgements read back through --judgements
    again = runner.invoke(app, ["eval", "meq", "--judgements", str(out_file), "--json",
                                "--no-lexical", "--no-embeddings"])
    assert json.loads(again.stdout)["accuracy"] == pytest.approx(65)
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert lines[0]["raw"] == GOOD and lines[0]["judge"] == "openai:judge-model"


def test_cli_judge_needs_input() -> None:
    out = runner.invoke(app, ["eval", "meq", "--judge", "openai:m@http://127.0.0.1:9/v1"])
    assert out.exit_code == 2 and "--judge needs --pairs" in out.stderr


def test_judgements_record_the_prompt_template_they_were_asked_with(server: _Server, tmp_path: Path) -> None:
    from icm.evaluate.meq import MEQJudgement
    from icm.prompts import render

    server.reply(GOOD)
    judged = run_judge(ModelJudge(OpenAIChat(f"judge-model@{server.url}")), [MEQJudgement("a", " r1 ", "c1")])
    assert judged[0].prompt == "judge.v1" and judged[0].as_dict()["prompt"] == "judge.v1"
    # The prompt sent is icm.prompts' rendering of that template, not a copy of it.
    sent = server.requests[0]["body"]["messages"][0]["content"]
    assert sent.strip() == render("judge", 1, reference="r1", candidate="c1", rule=None)
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps(judged[0].as_dict()) + "\n", encoding="utf-8")
    assert load_judgements(path)[0].prompt == "judge.v1"


def test_run_judge_in_parallel_keeps_the_order() -> None:
    """A judge (the Judge protocol, implemented in the test) that takes time and scores by input."""
    import threading
    import time

    from icm.evaluate.meq import JudgeScores, MEQJudgement

    class SlowJudge:
        name = "slow"
        prompt = None  # it asks with no prompt template of ours

        def __init__(self) -> None:
            self.running = 0
            self.most = 0
            self.lock = threading.Lock()

        def judge(self, reference: str, candidate: str) -> JudgeScores:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(0.05)
            with self.lock:
                self.running -= 1
            score = int(candidate)
            return JudgeScores(accuracy=score, preciseness=score, comprehensiveness=score, fluency=score)

    judge = SlowJudge()
    pairs = [MEQJudgement(f"img{i}", "ref", str(i * 10)) for i in range(8)]
    judged = run_judge(judge, pairs, concurrency=4)
    assert [j.image for j in judged] == [p.image for p in pairs]
    assert [j.scores.accuracy for j in judged if j.scores] == [i * 10 for i in range(8)]
    assert judge.most > 1  # requests really overlapped


def test_judge_reask_prompt_snapshot() -> None:
    rendered = render("judge_reask", error="no JSON object and no score for fluency")
    assert rendered + "\n" == (SNAPSHOTS / "judge_reask.v1.txt").read_text("utf-8")


def test_cli_response_format(server: _Server, tmp_path: Path, write_jsonl) -> None:
    server.reply(GOOD)
    pairs = write_jsonl("pairs.jsonl", [{"image": "a.jpg", "reference": "r", "candidate": "c"}])
    out = runner.invoke(app, ["eval", "meq", "--judge", f"openai:judge-model@{server.url}", "--pairs",
                              str(pairs), "--response-format", "json_object", "--json", "--no-lexical",
                              "--no-embeddings"])
    assert out.exit_code == 0, out.output
    assert server.requests[0]["body"]["response_format"] == {"type": "json_object"}
    bad = runner.invoke(app, ["eval", "meq", "--judge", f"openai:judge-model@{server.url}", "--pairs",
                              str(pairs), "--response-format", "xml"])
    assert bad.exit_code == 2 and "xml" in bad.output


def test_a_judge_request_that_fails_is_one_clear_error(server: _Server, tmp_path: Path, write_jsonl) -> None:
    server.replies.append((401, {"error": {"message": "invalid api key"}}))
    pairs = write_jsonl("pairs.jsonl", [{"image": "a.jpg", "reference": "r", "candidate": "c"}])
    out = runner.invoke(app, ["eval", "meq", "--judge", f"openai:judge-model@{server.url}", "--pairs",
                              str(pairs), "--json", "--no-lexical", "--no-embeddings"])
    assert out.exit_code == 2
    assert "judge failed: HTTP 401" in out.stderr and "Traceback" not in out.output


def test_real_llama_cpp_judge_falls_back_from_json_schema(llama_server: str) -> None:
    """llama-cpp-python's server answers json_schema with HTTP 500: the judge is asked again
    without a format, its answer read or recorded as unreadable, never a failed run."""
    from icm.evaluate.meq import MEQJudgement

    # a long request timeout: llama.cpp on a few shared CPU cores can be slow
    judge = load_judge(f"openai:smollm2@{llama_server}", max_retries=0, max_tokens=16, timeout=600)
    assert isinstance(judge.model, OpenAIChat)
    judged = run_judge(judge, [MEQJudgement("a", "A woman on a bed.", "A woman lying on a bed.")])
    assert judge.model.mode() is OutputMode.none  # json_schema refused, not asked again
    item = judged[0]
    assert item.raw  # the judge's answer(s), kept either way
    assert item.scores is not None or (item.error or "").startswith("unreadable answer")
