"""``icm eval``: verdict accuracy, Q-A accuracy (MQA) and explanation quality (MEQ), with reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from icm.cli import output
from icm.cli.extras import needs_extra
from icm.errors import ModelError
from icm.llm import OutputMode

if TYPE_CHECKING:
    from icm.evaluate.meq import MEQSummary
    from icm.evaluate.mqa import MQAEvaluation
    from icm.evaluate.verdicts import VerdictEvaluation

app = typer.Typer(
    help=(
        "Evaluate moderation results against labels (accuracy, precision, recall, F1, ROC-AUC, "
        "calibration, coverage, bootstrap intervals), Q-A answers (mqa) and explanations (meq).\n\n"
        "icm eval -p RESULTS.jsonl -l LABELS.jsonl [--json] [--report DIR]\n\n"
        "icm eval run --backend local --policy general --dataset examples --report out/"
    ),
    invoke_without_command=True,
)
stdout = Console()
stderr = Console(stderr=True)


def _fail(message: object) -> typer.Exit:
    stderr.print(output.error(message), soft_wrap=True)
    return typer.Exit(2)


def _require_eval_extra(command: str, *, report: Path | None) -> None:
    """The eval extra's metric packages, imported before any work: a run must not judge a whole
    dataset to fail at its first metric."""
    with needs_extra("eval", command):
        import scipy.stats  # noqa: F401  (bootstrap intervals)
        import sklearn.metrics  # noqa: F401  (ROC-AUC, PR-AUC, thresholds)

        if report is not None:
            import matplotlib.figure  # noqa: F401  (the report's plots)


def _names(paths: Sequence[Path]) -> list[str]:
    """Short, unique run names: file stems, else paths, else numbered."""
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [str(p.with_suffix("")) for p in paths]
    if len(set(names)) < len(names):
        names = [f"{name} #{i}" for i, name in enumerate(names, start=1)]
    return names


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def verdicts_table(evaluations: Sequence[VerdictEvaluation]) -> Table:
    """One column per run: the overall metrics, intervals, coverage and confusion counts."""
    table = output.table("metric", *[e.name for e in evaluations], title="verdict accuracy")
    for metric in ("accuracy", "precision", "recall", "f1", "balanced_accuracy"):
        cells = []
        for e in evaluations:
            ci = e.overall.ci.get(metric)
            interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            cells.append(_fmt(e.overall.metrics[metric]) + interval)
        output.add_row(table, metric, *cells)
    output.add_row(table, "ROC-AUC", *[_fmt(e.overall.roc_auc) for e in evaluations])
    output.add_row(table, "PR-AUC", *[_fmt(e.overall.pr_auc) for e in evaluations])
    output.add_row(table, "ECE", *[_fmt(e.overall.ece) for e in evaluations])
    output.add_row(table, "best-F1 threshold", *[
        "n/a" if e.overall.best_f1_threshold is None else
        f"{e.overall.best_f1_threshold['threshold']:.3f} (F1 {e.overall.best_f1_threshold['f1']:.3f})"
        for e in evaluations
    ])
    output.add_row(table, "coverage", *[
        f"{_fmt(e.overall.coverage)} ({e.overall.judged}/{e.overall.n})" for e in evaluations
    ])
    output.add_row(table, "not covered", *[
        ", ".join(f"{k} {v}" for k, v in e.overall.uncovered.items()) for e in evaluations
    ])
    c = [e.overall.confusion for e in evaluations]
    output.add_row(table, "confusion tp/fp/fn/tn", *[f"{x.tp}/{x.fp}/{x.fn}/{x.tn}" for x in c])
    return table


def _emit(evaluations: Sequence[VerdictEvaluation], as_json: bool, report: Path | None) -> None:
    if as_json:
        if len(evaluations) == 1:
            payload: dict[str, Any] = evaluations[0].as_dict()
        else:
            payload = {"runs": {e.name: e.as_dict() for e in evaluations}}
        print(json.dumps(payload))
    else:
        stdout.print(verdicts_table(evaluations))
    if report is not None:
        from icm.evaluate.report import write_verdict_report

        md, page = write_verdict_report(evaluations, report)
        stderr.print(Text(f"report: {page} and {md}"), soft_wrap=True)


@app.callback()
def evaluate(
    ctx: typer.Context,
    predictions: list[Path] = typer.Option(
        None, "--predictions", "-p", help="ModerationResult JSONL; repeat to compare several.",
        show_default=False,
    ),
    labels: Path | None = typer.Option(
        None, "--labels", "-l", help='Labels JSONL: {"image", "rule_id", "label", "category"?}.',
        show_default=False,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    report: Path | None = typer.Option(
        None, "--report", help="Write report.md, report.html and plots/ into this folder."
    ),
    resamples: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
) -> None:
    """Evaluate predictions against labels, overall, per rule and per category.

    A label without a prediction counts as not covered (missing), as do uncertain verdicts and
    images that could not be judged. Exit status: 0 done; 2 bad input.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not predictions and labels is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    if not predictions or labels is None:
        raise _fail("--predictions and --labels go together (or use a sub-command: run, mqa, meq)")
    _require_eval_extra("icm eval", report=report)
    from icm.evaluate.verdicts import evaluate_files

    evaluations = [
        evaluate_files(p, labels, name=name, resamples=resamples, seed=seed)
        for p, name in zip(predictions, _names(predictions), strict=True)
    ]
    _emit(evaluations, as_json, report)


@app.command("run", no_args_is_help=True)
def run(
    dataset: Path = typer.Option(..., "--dataset", "-d", help="Folder with labels.jsonl and images."),
    policy: str = typer.Option(..., "--policy", "-p", help="Built-in policy name or YAML file."),
    backends: list[str] = typer.Option(
        ["local"], "--backend", "-b", help="Backend spec; repeat to compare several."
    ),
    compare: list[Path] = typer.Option(
        None, "--compare", help="Existing predictions JSONL to compare with; repeatable.",
        show_default=False,
    ),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Where predictions-<backend>.jsonl go (default: the report folder, "
        "else the dataset folder).", show_default=False,
    ),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Images judged in parallel."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    report: Path | None = typer.Option(None, "--report", help="Write the report into this folder."),
    resamples: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples (0: none)."),
) -> None:
    """Moderate a labelled dataset with one or more backends, then evaluate the results.

    Example: icm eval run --backend local --policy general --dataset examples --report out/
    """
    _require_eval_extra("icm eval run", report=report)
    from icm.evaluate.labelled_folder import load_dataset, moderate_dataset, predictions_file
    from icm.evaluate.records import join, load_predictions
    from icm.evaluate.verdicts import evaluate_files, evaluate_outcomes

    target_dir = out_dir or report or dataset
    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        labels = load_dataset(dataset)
        evaluations = []
        for backend in backends:
            out = target_dir / predictions_file(backend)
            stderr.print(Text(f"moderating {dataset} with {backend} under {policy} -> {out}"), soft_wrap=True)
            moderate_dataset(dataset, policy, backend, out, workers=workers)
            evaluations.append(evaluate_outcomes(join(labels, load_predictions(out)), name=backend,
                                                 resamples=resamples))
        for path, name in zip(compare or [], _names(compare or []), strict=True):
            evaluations.append(evaluate_files(path, dataset / "labels.jsonl", name=name,
                                              resamples=resamples))
    except ValueError as exc:  # an option of the wrong type for the backend
        raise _fail(exc) from exc
    _emit(evaluations, as_json, report)


@app.command("import-paper", no_args_is_help=True)
def import_paper(
    source: Path = typer.Argument(..., help="The release's predictions JSON (image_name, logits)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for predictions.jsonl and labels.jsonl."),
    rule_set: str = typer.Option(
        "R1", "--rule-set", help="R1-R4 (R2-R4 from the built-in icm-r2..r4), or any name with --category-labels."
    ),
    category_labels: Path | None = typer.Option(
        None, "--category-labels", help="JSON object or CSV: category -> violates|complies.",
        show_default=False,
    ),
) -> None:
    """Convert the paper's prediction file into ModerationResult JSONL and labels JSONL.

    Labels come from each image's category (its file-name prefix): under R1 categories named
    *normal* comply and all others violate (as the release documents); under R2-R4 the label is
    the category's verdict under the built-in icm-r2..r4 policies.
    """
    from icm.evaluate.paper_predictions import (
        load_category_labels,
        load_paper_predictions,
        paper_outcomes,
        write_paper_as_icm,
    )

    mapping = load_category_labels(category_labels) if category_labels else None
    outcomes = paper_outcomes(load_paper_predictions(source), rule_set, mapping)
    out.mkdir(parents=True, exist_ok=True)
    write_paper_as_icm(outcomes, out / "predictions.jsonl", out / "labels.jsonl")
    stderr.print(Text(f"{len(outcomes)} predictions: {out / 'predictions.jsonl'}, {out / 'labels.jsonl'}"),
                 soft_wrap=True)


@app.command("mqa", no_args_is_help=True)
def mqa(
    questions: Path = typer.Option(
        ..., "--questions", "-q", help="Gold questions JSONL, or a release folder with qa/ and mc/."
    ),
    answers: Path = typer.Option(
        ..., "--answers", "-a", help='Model answers JSONL: {"id", "answer"} or {"image", '
        '"question", "answer"}.'
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Accuracy of yes/no and multiple-choice answers (normalised: "B.", "B) text", "Yes.")."""
    from icm.evaluate.mqa import evaluate_mqa, load_answers, load_questions

    result = evaluate_mqa(load_questions(questions), load_answers(answers))
    if as_json:
        print(json.dumps(result.as_dict()))
        return
    stdout.print(mqa_table(result))


def mqa_table(result: MQAEvaluation) -> Table:
    table = output.table("questions", "accuracy", "correct", "total", "missing", "unparsed", title="MQA")
    rows = [("all", result.overall)] + sorted(result.by_type.items())
    for name, tally in rows:
        output.add_row(table, name, _fmt(tally.accuracy), tally.correct, tally.total, tally.missing, tally.unparsed)
    return table


@app.command("meq", no_args_is_help=True)
def meq(
    judgements: Path | None = typer.Option(
        None, "--judgements", help="Judgements already made: a release meq_judge/ folder or our "
        "JSONL. With --judge: the explanations to judge again.", show_default=False,
    ),
    judge: str | None = typer.Option(
        None, "--judge", help="Judge with a chat model: openai:MODEL@http://host:port/v1 or llama-cpp:PATH.gguf.",
        show_default=False,
    ),
    response_format: OutputMode = typer.Option(
        OutputMode.json_schema, "--response-format", help="How the judge is asked for JSON (its output mode). "
        "A server that rejects it is asked without one.",
    ),
    pairs: Path | None = typer.Option(
        None, "--pairs", help='Explanations to judge: JSONL {"image", "reference", "candidate"}.',
        show_default=False,
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the new judgements (with the raw answers) as JSONL."
    ),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Judge requests in flight at once."),
    lexical: bool = typer.Option(True, "--lexical/--no-lexical", help="ROUGE-L and BLEU."),
    embeddings: bool = typer.Option(
        True, "--embeddings/--no-embeddings", help="MiniLM embedding similarity (needs torch)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    report: Path | None = typer.Option(None, "--report", help="Write the report into this folder."),
) -> None:
    """Explanation quality: judge scores (Accuracy, Preciseness, Comprehensiveness, Fluency,
    0-100; MEQ = mean accuracy / 100) and offline reference metrics beside them.

    icm eval meq --judgements tests/fixtures/icm_release/eval/meq_judge --json

    icm eval meq --judge openai:MODEL@http://host:8000/v1 --judgements DIR
    """
    from icm.evaluate.meq import MEQJudgement, evaluate_meq, load_judgements, load_pairs, run_judge
    from icm.evaluate.textmetrics import MissingExtraError

    try:
        items: list[MEQJudgement]
        if judge is not None:
            from icm.evaluate.judge import load_judge

            source = pairs or judgements
            if source is None:
                raise _fail("--judge needs --pairs FILE (or --judgements DIR to judge again)")
            model = load_judge(judge, output_mode=response_format)
            items = run_judge(model, load_pairs(source), concurrency)
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                with out.open("w", encoding="utf-8") as handle:
                    for item in items:
                        handle.write(json.dumps(item.as_dict()) + "\n")
        elif judgements is not None:
            items = load_judgements(judgements)
        else:
            raise _fail("give --judgements PATH, or --judge SPEC with --pairs FILE")
        summary = evaluate_meq(items, lexical=lexical, embeddings=embeddings)
    except MissingExtraError as exc:
        raise _fail(f"{exc} (or leave the metric out with --no-lexical / --no-embeddings)") from exc
    except ModelError as exc:
        raise _fail(f"judge failed: {exc}") from exc
    _emit_meq(summary, as_json, report)


def _emit_meq(summary: MEQSummary, as_json: bool, report: Path | None) -> None:
    if as_json:
        print(json.dumps(summary.as_dict()))
    else:
        stdout.print(meq_table(summary))
    if report is not None:
        from icm.evaluate.report import write_meq_report

        md, page = write_meq_report(summary, report)
        stderr.print(Text(f"report: {page} and {md}"), soft_wrap=True)


def meq_table(summary: MEQSummary) -> Table:
    table = output.table("", "mean", title=f"MEQ: {summary.judged} of {summary.n} judged")
    for name, value in summary.means.items():
        output.add_row(table, name, "n/a" if value is None else f"{value:.1f}")
    output.add_row(table, "MEQ (accuracy / 100)", _fmt(summary.meq))
    for name, value in summary.reference_metrics.items():
        output.add_row(table, name, _fmt(value))
    return table
