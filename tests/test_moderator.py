"""The Moderator: streaming in order, per-item errors, the JSONL sink and --resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from corpus import write_broken
from helpers import render_text, sample_image

from icm import Moderator
from icm.backends.base import BackendTimeout
from icm.errors import InputError
from icm.lock import OutputLockedError
from icm.policy.load import parse_policy
from icm.results import ModerationResult
from icm.sink import OutputExistsError

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


class LooseBatch(Exploding):
    """A backend whose judge_batch breaks its protocol: it raises, or answers too few images."""

    def judge_batch(self, images, policy):  # type: ignore[no-untyped-def]
        if isinstance(self.error, IndexError):
            return []
        return [self.judge(image, policy) for image in images]


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory"), IndexError("short")])
def test_a_batch_the_backend_fails_as_a_whole_is_an_error_per_image(folder: Path, error: Exception) -> None:
    images = [folder / "a-coffee.jpg", folder / "absent.jpg", folder / "c-cat.png"]
    results = Moderator(PHONE_POLICY, backend=LooseBatch(error)).moderate_batch(images)
    assert [r.image for r in results] == [str(image) for image in images]
    assert [r.error.code.value for r in results] == ["backend_error", "not_found", "backend_error"]  # type: ignore[union-attr]
    assert all(r.decision.value == "review" and not r.verdicts for r in results)
    expected = "CUDA out of memory" if isinstance(error, RuntimeError) else "answered 0 of 2 images"
    assert expected in results[0].error.message  # type: ignore[union-attr]


def test_a_batch_equals_one_by_one_and_keeps_each_failure_its_own(
    moderator: Moderator, folder: Path, tmp_path: Path
) -> None:
    expected = write_broken(tmp_path / "broken")
    images = [folder / "a-coffee.jpg", tmp_path / "broken" / "truncated.jpg", folder / "nested" / "b-phone.png",
              tmp_path / "absent.jpg", folder / "c-cat.png"]
    batch = moderator.moderate_batch(images)
    alone = [moderator.moderate(image) for image in images]
    assert [r.image for r in batch] == [str(image) for image in images]
    strip = {"timing_ms"}
    assert [r.model_dump(exclude=strip) for r in batch] == [r.model_dump(exclude=strip) for r in alone]
    assert [r.decision.value for r in batch] == ["allow", "review", "block", "review", "allow"]
    assert batch[1].error.code.value == expected["truncated.jpg"]  # type: ignore[union-attr]
    assert batch[3].error.code.value == "not_found"  # type: ignore[union-attr]


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


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_resume_loop_keeps_one_line_per_image(moderator: Moderator, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    broken = write_broken(folder)
    sample_image("coffee").save(folder / "coffee.jpg")
    render_text("call 0161 496 0000").save(folder / "phone.png")
    out = tmp_path / "results.jsonl"
    images = len(broken) + 2

    first = moderator.run([folder], out=out)
    assert (first.judged, first.failed) == (2, len(broken))
    rows = _lines(out)
    assert len(rows) == images and rows[0]["schema_version"] == "1.2"
    assert all(r["error"]["file"]["size"] == (folder / Path(r["image"]).name).stat().st_size
               for r in rows if r["error"])  # what a resume compares against

    for _ in range(3):  # the files did not change: a resume has nothing to do
        again = moderator.run([folder], out=out, resume=True)
        assert (again.judged, again.skipped, again.unchanged_errors) == (0, 2, len(broken))
        assert again.failed == len(broken)  # still not judged, so still counted (exit status 1)
        assert len(_lines(out)) == images

    sample_image("chelsea").save(folder / "truncated.png")  # a broken file replaced by a good one
    fixed = moderator.run([folder], out=out, resume=True)
    assert (fixed.judged, fixed.unchanged_errors) == (1, len(broken) - 1)
    rows = _lines(out)
    assert len(rows) == images + 1
    assert {Path(r["image"]).name: r["error"] for r in rows}["truncated.png"] is None  # later wins

    stat = (folder / "empty.jpg").stat()  # the same bytes, touched: tried again, fails again
    os.utime(folder / "empty.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = moderator.run([folder], out=out, resume=True)
    assert touched.unchanged_errors == len(broken) - 2 and touched.errors["empty_file"] == 1
    assert len(_lines(out)) == images + 2  # the new line records the new modification time
    assert moderator.run([folder], out=out, resume=True).unchanged_errors == len(broken) - 1
    assert len(_lines(out)) == images + 2

    retried = moderator.run([folder], out=out, resume=True, retry_errors=True)
    assert (retried.unchanged_errors, retried.failed, retried.skipped) == (0, len(broken) - 1, 3)
    assert len(_lines(out)) == images + 2  # every retry failed exactly as recorded: no duplicate


def test_resume_retries_transient_errors(moderator: Moderator, folder: Path) -> None:
    out = folder / "results.jsonl"
    manifest = folder / "m.csv"
    manifest.write_text("image\na-coffee.jpg\nc-cat.png\nlater.png\n")
    down = Moderator(PHONE_POLICY, backend=Exploding(TimeoutError("model server did not answer")))
    first = down.run([manifest], out=out)
    assert first.errors == {"timeout": 2, "not_found": 1}
    for _ in range(2):  # still down, still missing: tried again, and no line is added
        again = down.run([manifest], out=out, resume=True)
        assert again.errors == {"timeout": 2, "not_found": 1} and again.unchanged_errors == 0
        assert len(_lines(out)) == 3

    render_text("call 0161 496 0000").save(folder / "later.png")
    back = moderator.run([manifest], out=out, resume=True)
    assert (back.judged, back.failed) == (3, 0)
    latest = {r["image"]: r for r in _lines(out)}
    assert [latest[k]["decision"] for k in ("a-coffee.jpg", "c-cat.png", "later.png")] == [
        "allow", "allow", "block"]
    assert moderator.run([manifest], out=out, resume=True).skipped == 3
    assert len(_lines(out)) == 6


def test_resume_tries_once_more_an_error_line_without_a_file_record(
    moderator: Moderator, tmp_path: Path
) -> None:
    """Lines written before errors recorded the file (schema 1.0) say nothing about whether the
    file changed: the image is judged once more, and that new line settles it."""
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "results.jsonl"
    moderator.run([tmp_path / "broken.jpg"], out=out)
    old = _lines(out)[0]
    old["schema_version"] = "1.0"
    del old["error"]["file"]
    out.write_text(json.dumps(old) + "\n")
    assert moderator.run([tmp_path / "broken.jpg"], out=out, resume=True).unchanged_errors == 0
    assert moderator.run([tmp_path / "broken.jpg"], out=out, resume=True).unchanged_errors == 1
    assert [r["schema_version"] for r in _lines(out)] == ["1.0", "1.2"]


def test_run_never_overwrites_results(moderator: Moderator, folder: Path) -> None:
    out = folder / "results.jsonl"
    moderator.run([folder / "a-coffee.jpg"], out=out)
    before = out.read_text()
    with pytest.raises(OutputExistsError, match="resume=True or overwrite=True"):
        moderator.run([folder / "c-cat.png"], out=out)
    assert out.read_text() == before
    assert issubclass(OutputExistsError, InputError)

    moderator.run([folder / "c-cat.png"], out=out, resume=True)
    assert [Path(r["image"]).name for r in _lines(out)] == ["a-coffee.jpg", "c-cat.png"]
    moderator.run([folder / "c-cat.png"], out=out, overwrite=True)
    assert [Path(r["image"]).name for r in _lines(out)] == ["c-cat.png"]

    empty = folder / "empty.jsonl"
    empty.touch()  # an empty file holds no results to lose (mktemp, a shell's > redirect)
    assert moderator.run([folder / "c-cat.png"], out=empty).judged == 1
    with pytest.raises(InputError, match="add --out"):
        moderator.run([folder / "c-cat.png"], resume=True)
    with pytest.raises(InputError, match="choose one"):
        moderator.run([folder / "c-cat.png"], out=out, resume=True, overwrite=True)
    with pytest.raises(InputError, match="add --resume"):
        moderator.run([folder / "c-cat.png"], out=out, retry_errors=True)
    assert [Path(r["image"]).name for r in _lines(out)] == ["c-cat.png"]
    assert not (folder / "results.jsonl.lock").exists()  # the lock goes with the run


def test_a_second_writer_on_the_same_file_is_refused(moderator: Moderator, folder: Path) -> None:
    out = folder / "results.jsonl"
    seen: list[str] = []

    def second_run(result: ModerationResult) -> None:
        with pytest.raises(OutputLockedError, match=f"process {os.getpid()} on "):
            moderator.run([folder / "c-cat.png"], out=out, resume=True)
        seen.append(result.image)

    moderator.run([folder / "a-coffee.jpg"], out=out, on_result=second_run)
    assert seen and [Path(r["image"]).name for r in _lines(out)] == ["a-coffee.jpg"]
