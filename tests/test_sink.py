"""The JSONL result file on its own: appending, cutting a killed run's partial line, and what a
resumed run may skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icm.policy.schema import Action
from icm.results import BackendInfo, ErrorCode, ErrorInfo, ModerationResult, PolicyRef
from icm.sink import ResultFileError, ResultSink, read_previous

POLICY = PolicyRef(id="p", version=1)


def _judged(path: Path, policy_id: str, version: int) -> set[str]:
    return read_previous(path, policy_id, version).judged


def _result(image: str, version: int = 1, error: bool = False) -> ModerationResult:
    return ModerationResult(
        image=image,
        policy=PolicyRef(id="p", version=version),
        decision=Action.review if error else Action.allow,
        backend=BackendInfo(name="test"),
        error=ErrorInfo(code=ErrorCode.not_found, message="gone") if error else None,
    )


def test_each_result_is_one_flushed_line(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "out.jsonl"
    with ResultSink(path, POLICY, overwrite=True) as sink:
        sink.write(_result("a.jpg"))
        assert path.read_text().count("\n") == 1  # on disk before the sink is closed
        sink.write(_result("b.jpg"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["image"] for r in rows] == ["a.jpg", "b.jpg"]


def test_a_new_run_replaces_the_file_and_a_resumed_one_appends(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with ResultSink(path, POLICY, overwrite=True) as sink:
        sink.write(_result("a.jpg"))
    with ResultSink(path, POLICY, resume=True) as sink:
        sink.write(_result("b.jpg"))
    assert [json.loads(x)["image"] for x in path.read_text().splitlines()] == ["a.jpg", "b.jpg"]
    with ResultSink(path, POLICY, overwrite=True) as sink:
        sink.write(_result("c.jpg"))
    assert [json.loads(x)["image"] for x in path.read_text().splitlines()] == ["c.jpg"]


_A = '{"image": "a.jpg", "policy": {"id": "p", "version": 1}, "decision": "allow"}'
_B = '{"image": "b.jpg", "policy": {"id": "p", "version": 1}, "decision": "allow"}'


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"{_A}\n{_B}\n{{\"image\": \"c", f"{_A}\n{_B}\n"),  # a killed run's last line
        (f"{_A}\n", f"{_A}\n"),  # nothing to cut
        ('{"partial only', ""),  # the only line was partial
        ("", ""),
        (f"{_A}\n" + "x" * 10_000, f"{_A}\n"),  # a partial line longer than one read
    ],
)
def test_opening_to_append_cuts_the_partial_last_line(tmp_path: Path, text: str, kept: str) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(text)
    ResultSink(path, POLICY, resume=True).close()
    assert path.read_text() == kept


def test_resuming_a_file_with_a_partial_line_keeps_it_valid_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(_result("a.jpg").to_json() + "\n" + '{"image": "b.jpg", "pol')
    with ResultSink(path, POLICY, resume=True) as sink:
        sink.write(_result("c.jpg"))
    assert [json.loads(x)["image"] for x in path.read_text().splitlines()] == ["a.jpg", "c.jpg"]


def test_judged_keys_are_the_images_judged_without_error_under_this_policy_version(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    lines = [_result("a.jpg"), _result("b.jpg", error=True), _result("c.jpg", version=2), _result("d.jpg")]
    path.write_text("".join(r.to_json() + "\n" for r in lines) + "\n" + '{"image": "e.jpg"')
    assert _judged(path, "p", 1) == {"a.jpg", "d.jpg"}  # the partial last line is not counted
    assert _judged(path, "p", 2) == {"c.jpg"}
    assert _judged(path, "other", 1) == set()
    assert _judged(tmp_path / "none.jsonl", "p", 1) == set()


def test_a_file_that_is_not_results_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"image": "a.jpg", "rule_id": "r", "label": "violates"}\n')
    with pytest.raises(ResultFileError, match="labels.jsonl:1: not a moderation result"):
        _judged(path, "p", 1)


# -- the output rules both engines follow --------------------------------------------------------


def test_output_rules_refuse_flags_that_do_not_go_together() -> None:
    from icm.errors import InputError
    from icm.sink import OutputRules

    with pytest.raises(InputError, match="add --resume"):
        OutputRules(retry_errors=True)
    with pytest.raises(InputError, match="choose one"):
        OutputRules(resume=True, overwrite=True)
    with pytest.raises(InputError, match="add --out"):
        OutputRules(resume=True, has_out=False)


def test_output_rules_refuse_an_output_that_holds_results_unless_continued_or_replaced() -> None:
    from icm.sink import OutputExistsError, OutputRules

    with pytest.raises(OutputExistsError, match="out/ holds results; add --resume"):
        OutputRules().refuse_existing("out/ holds results")
    OutputRules(resume=True).refuse_existing("out/ holds results")
    OutputRules(overwrite=True).refuse_existing("out/ holds results")


def test_output_rules_skip_what_is_judged_and_errors_that_stand(tmp_path: Path) -> None:
    from icm.sink import OutputRules
    from icm.sources import ImageItem
    from icm.summary import RunSummary

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    from icm.media import file_stamp

    stamp = file_stamp(broken)
    standing = _result(str(broken), error=True).model_copy(
        update={"error": ErrorInfo(code=ErrorCode.not_an_image, message="no", file=stamp)})
    lines = [_result("done.jpg").to_json() + "\n", standing.to_json() + "\n",
             _result("gone.jpg", error=True).to_json() + "\n"]
    rules = OutputRules(resume=True)
    rules.load([("out.jsonl", lines)], POLICY)
    summary = RunSummary()
    items = [ImageItem(key="done.jpg"), ImageItem(key=str(broken), path=broken), ImageItem(key="gone.jpg"),
             ImageItem(key="new.jpg")]
    kept = [item.key for item in items if not rules.skip(item, summary)]
    assert kept == ["gone.jpg", "new.jpg"]  # a missing file is tried again
    assert (summary.skipped, summary.unchanged_errors, summary.errors["not_an_image"]) == (1, 1, 1)
    assert not rules.writes(_result("gone.jpg", error=True))  # failed as recorded: no new line
    assert rules.writes(_result("gone.jpg"))
    narrowed = rules.retried([ImageItem(key="gone.jpg")])
    assert set(narrowed.previous.errors) == {"gone.jpg"} and not narrowed.writes(_result("gone.jpg", error=True))
    again = OutputRules(resume=True, retry_errors=True)
    again.load([("out.jsonl", lines)], POLICY)
    assert not again.skip(ImageItem(key=str(broken), path=broken), RunSummary())  # --retry-errors
    ignored = OutputRules()  # without resume nothing earlier counts
    ignored.load([("out.jsonl", lines)], POLICY)
    assert not ignored.skip(ImageItem(key="done.jpg"), RunSummary())
