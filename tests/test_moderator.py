"""The Moderator: streaming in order, per-item errors, the JSONL sink and --resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpus import write_broken
from helpers import render_text, sample_image

from icm import Moderator
from icm.backends.base import BackendTimeout
from icm.policy.load import parse_policy
from icm.results import ModerationResult

PHONE_POLICY = parse_policy(
    """
id: contact
version: 4
rules:
  - id: phone
    text: No phone numbers.
    action: block
    criteria:
      - {id: phone, description: A phone number is visible., signals: ["nudenet:FACE_FEMALE>=0.99", "text:phone"]}
"""
)


@pytest.fixture(scope="module")
def moderator() -> Moderator:
    return Moderator(PHONE_POLICY)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "nested").mkdir()
    sample_image("coffee").save(tmp_path / "a-coffee.jpg")
    render_text("call 0161 496 0000").save(tmp_path / "nested" / "b-phone.png")
    sample_image("chelsea").save(tmp_path / "c-cat.png")
    (tmp_path / "notes.txt").write_text("not an image, and not named like one: skipped")
    (tmp_path / ".hidden.jpg").write_bytes(b"")  # hidden files are skipped
    return tmp_path


def test_folder_is_walked_recursively_in_order(moderator: Moderator, folder: Path) -> None:
    results = list(moderator.stream([folder]))
    assert [Path(r.image).name for r in results] == ["a-coffee.jpg", "c-cat.png", "b-phone.png"]
    decisions = {Path(r.image).name: r.decision.value for r in results}
    assert decisions == {"a-coffee.jpg": "allow", "c-cat.png": "allow", "b-phone.png": "block"}
    assert all(r.sha256 and r.error is None for r in results)
    assert results[0].policy.version == 4


def test_broken_corpus_gives_one_error_each_and_never_allow(tmp_path: Path) -> None:
    expected = write_broken(tmp_path)
    moderator = Moderator(PHONE_POLICY, workers=2)
    out = tmp_path / "out.jsonl"
    sources = [tmp_path / n for n in sorted(expected)] + [tmp_path / "absent.jpg"]
    summary = moderator.run(sources, out=out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(expected) + 1
    codes = {Path(r["image"]).name: r["error"]["code"] for r in rows}
    assert codes == {**expected, "absent.jpg": "not_found"}
    assert {r["decision"] for r in rows} == {"review"}
    assert all(r["verdicts"] == [] and "Not judged" in r["explanation"] for r in rows)
    assert summary.failed == len(expected) + 1 and summary.judged == 0


class Exploding:
    """A backend whose every call fails the given way (a model server that is down or slow)."""

    name = "exploding"
    supports_images = True
    supports_logprobs = False

    def __init__(self, error: Exception) -> None:
        self.error = error

    def info(self):  # type: ignore[no-untyped-def]
        from icm.results import BackendInfo

        return BackendInfo(name=self.name)

    def prepare(self, policy):  # type: ignore[no-untyped-def]
        pass

    def judge(self, image, policy):  # type: ignore[no-untyped-def]
        raise self.error

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TimeoutError("model server did not answer in 30 s"), "timeout"),
        (BackendTimeout("every request to m failed; first: APITimeoutError: Request timed out."), "timeout"),
        (RuntimeError("CUDA out of memory"), "backend_error"),
    ],
)
def test_backend_failure_is_an_error_record_not_a_crash(folder: Path, error: Exception, code: str) -> None:
    results = list(Moderator(PHONE_POLICY, backend=Exploding(error)).stream([folder]))
    assert len(results) == 3
    assert {r.error.code.value for r in results if r.error} == {code}
    assert all(r.decision.value == "review" and not r.verdicts for r in results)
    assert str(error) in results[0].error.message  # type: ignore[union-attr]


def test_resume_skips_judged_retries_errors_and_cuts_a_partial_line(
    moderator: Moderator, folder: Path
) -> None:
    out = folder / "results.jsonl"
    first = moderator.run([folder / "a-coffee.jpg", folder / "missing.jpg"], out=out)
    assert (first.judged, first.failed) == (1, 1)
    with out.open("a") as handle:
        handle.write('{"image": "half a line, killed mid-wri')  # a run killed while writing
    (folder / "missing.jpg").write_bytes((folder / "c-cat.png").read_bytes())

    seen: list[ModerationResult] = []
    second = moderator.run([folder], out=out, resume=True, on_result=seen.append)
    lines = out.read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line parses: the partial one is gone
    assert second.skipped == 1  # a-coffee.jpg
    assert {Path(r.image).name for r in seen} == {"b-phone.png", "c-cat.png", "missing.jpg"}
    latest = {Path(r["image"]).name: r for r in rows}
    assert latest["missing.jpg"]["error"] is None  # the retry replaced the error as latest line

    third = moderator.run([folder], out=out, resume=True)
    assert third.skipped == 4 and third.judged == 0
    changed = PHONE_POLICY.model_copy(update={"version": 5})
    fourth = Moderator(changed).run([folder / "a-coffee.jpg"], out=out, resume=True)
    assert fourth.judged == 1  # a new policy version judges again


def test_moderate_bytes_and_a_single_path(moderator: Moderator, folder: Path) -> None:
    data = (folder / "nested" / "b-phone.png").read_bytes()
    result = moderator.moderate(data, name="upload-17")
    assert result.image == "upload-17" and result.decision.value == "block"
    evidence = result.verdicts[0].evidence[0]
    assert evidence.signal == "text:phone" and evidence.text == "0161 496 0000"
    assert moderator.moderate(folder / "a-coffee.jpg").decision.value == "allow"


def test_manifests_and_stdin(moderator: Moderator, folder: Path) -> None:
    (folder / "m.csv").write_text("image,label\na-coffee.jpg,ok\nnested/b-phone.png,spam\n")
    (folder / "m.jsonl").write_text('{"image": "c-cat.png", "label": "ok"}\n\n')
    results = list(moderator.stream([folder / "m.csv", folder / "m.jsonl"]))
    assert [r.image for r in results] == ["a-coffee.jpg", "nested/b-phone.png", "c-cat.png"]
    assert [r.decision.value for r in results] == ["allow", "block", "allow"]

    import io

    from icm.sources import SourceError, iter_sources

    items = list(iter_sources(["-"], stdin=io.StringIO(f"{folder}/a-coffee.jpg\n\n# comment\n")))
    assert [i.key for i in items] == [f"{folder}/a-coffee.jpg"]
    (folder / "bad.jsonl").write_text('{"image": "a.jpg"}\n{"path": "b.jpg"}\n')
    with pytest.raises(SourceError, match="bad.jsonl:2"):
        list(iter_sources([folder / "bad.jsonl"]))
    (folder / "bad.csv").write_text("path\nx.jpg\n")
    with pytest.raises(SourceError, match="needs an 'image' column"):
        list(iter_sources([folder / "bad.csv"]))
