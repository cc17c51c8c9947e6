"""``icm moderate``: judge images against a policy and stream the results."""

from __future__ import annotations

import inspect
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from icm.backends.base import Explain
from icm.cli import output
from icm.errors import InputError
from icm.policy.schema import Action
from icm.results import Verdict

if TYPE_CHECKING:
    from icm.banks.folder import BankFolder
    from icm.moderator import RunSummary
    from icm.results import ModerationResult
    from icm.scale.ray import RayOptions

EXIT_HELP = """
Exit status: 0 every image was judged; 1 some images could not be judged (each has an error
record); 2 bad usage, policy or backend, no images in the given folders and manifests, or --out
being written by another run; 3 some decision reached --fail-on; 130 interrupted (Ctrl-C): what
was written stays, --resume goes on.
"""


class Engine(StrEnum):
    local = "local"
    ray = "ray"


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"


def moderate(
    paths: list[str] = typer.Argument(
        ...,
        help="Image files, folders (searched recursively), manifests (.jsonl/.csv with an 'image' "
        "column) or - to read paths from stdin.",
        show_default=False,
    ),
    policy: str = typer.Option(
        "general", "--policy", "-p", help="Built-in policy name (see `icm policy list`) or YAML file."
    ),
    backend: str = typer.Option(
        "local", "--backend", "-b",
        help="Backend spec: local, transformers:MODEL_DIR, openai:MODEL@BASE_URL or vllm:MODEL.",
    ),
    backend_options: Path | None = typer.Option(
        None, "--backend-options",
        help="YAML file of backend keywords, e.g. `images: false`, `with_signals: true` and "
        "`response_format: json_object` for a text-only model behind an OpenAI-compatible server.",
        show_default=False,
    ),
    explain: Explain | None = typer.Option(
        None, "--explain",
        help="Model backends: write explanations for all rules, violated rules only, or none "
        "(default: the backend's, violations).",
    ),
    out: str | None = typer.Option(
        None, "--out", "-o",
        help="Write one ModerationResult per line (JSONL), flushed per image. With --engine ray: a "
        "folder or filesystem URI (s3://, gs://) of result shards.",
    ),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue --out: skip images already judged under the same policy version, and images "
        "whose file failed to decode and has not changed since; retry the other errors.",
    ),
    retry_errors: bool = typer.Option(
        False, "--retry-errors", help="With --resume, judge every image with an error again."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    workers: int | None = typer.Option(
        None, "--workers", "-w", min=1,
        help="Images judged in parallel (default: what the backend asks for; the local engine one per core).",
    ),
    output_format: OutputFormat = typer.Option(
        None, "--format", "-f",
        help="stdout format: table (default on a terminal or with --out), json or jsonl.",
        show_default=False,
    ),
    fail_on: Action | None = typer.Option(
        None, "--fail-on", help="Exit 3 if any decision is this action or stricter (for CI gates)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    banks: Path | None = typer.Option(
        None, "--banks", envvar="ICM_BANKS",
        help="Bank folder (see `icm bank`): images matching known content are decided by the bank "
        "before any model runs.", show_default=False,
    ),
    engine: Engine = typer.Option(
        Engine.local, "--engine",
        help="local: this process; ray: Ray Data (decoding in tasks, judging in an actor pool); "
        "needs the ray extra and --out.",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address",
        help="--engine ray: auto (this machine's cluster) or ray://HOST:PORT; default: start Ray here.",
        show_default=False,
    ),
    actors: int = typer.Option(1, "--actors", min=1, help="--engine ray: judging actors."),
    gpus_per_actor: float = typer.Option(0.0, "--gpus-per-actor", min=0.0, help="--engine ray: GPUs per actor."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="--engine ray: images per actor batch."),
    parquet: bool = typer.Option(False, "--parquet", help="--engine ray: Parquet shards instead of JSONL."),
    verbose: bool = typer.Option(False, "--verbose", help="--engine ray: Ray's own log lines too (start-up, "
                                 "execution plans, its workers' logs); by default only its errors."),
) -> None:
    """Judge images against a policy: a decision, per-rule verdicts and a reason for each image.

    Examples:

      icm moderate examples/images --policy general

      icm moderate examples/images -p examples/policies/kids-conservative.yaml

      icm moderate examples/images --out results.jsonl --resume
    """
    from icm.moderator import Moderator
    from icm.sources import gather

    stderr = Console(stderr=True, soft_wrap=True)
    keywords = backend_keywords(backend_options, explain)
    if engine is Engine.ray:
        from icm.scale.ray import RayOptions

        if output_format is not None:
            raise InputError("--format prints results on stdout; with --engine ray they go to the shards in --out")
        ray_options = RayOptions(address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor,
                                 batch_size=batch_size, progress=not quiet and stderr.is_terminal, verbose=verbose)
        _bank_folder(banks)  # a missing folder is a usage error before Ray starts
        on_ray(paths, policy, backend, keywords, out, ray_options, banks=banks, resume=resume, overwrite=overwrite,
               retry_errors=retry_errors, parquet=parquet, fail_on=fail_on, quiet=quiet)
        return
    if parquet:
        raise InputError("--parquet writes Parquet shards with --engine ray; a local run writes JSONL")
    fmt = output_format or (OutputFormat.table if sys.stdout.isatty() or out is not None else OutputFormat.jsonl)
    # Walked once, before --out is touched (a missing folder leaves no file); stdin stays a stream.
    items = gather(paths)
    try:
        moderator = Moderator(policy, backend, workers=workers, banks=_bank_folder(banks), **keywords)
    except ValueError as exc:  # an option of the wrong type for the backend
        raise InputError(str(exc)) from exc

    results: list[ModerationResult] = []
    progress = _progress(stderr, enabled=not quiet and stderr.is_terminal)
    task = progress.add_task(f"moderating under {moderator.policy.id}", total=None if "-" in items else len(items))

    written = 0

    def on_result(result: ModerationResult) -> None:
        nonlocal written
        written += 1
        progress.advance(task)
        if fmt is OutputFormat.jsonl:
            print(result.to_json(), flush=True)
        else:
            results.append(result)

    try:
        with progress:
            summary = moderator.run(items, out=Path(out) if out is not None else None, resume=resume,
                                    overwrite=overwrite, retry_errors=retry_errors, on_result=on_result)
    except OSError as exc:  # --out is a folder, or not writable
        raise InputError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from exc
    except KeyboardInterrupt:
        kept = f"; the results written so far are in {out}: add --resume to go on" if out else ""
        stderr.print(Text(f"interrupted after {written} images{kept}"))
        raise typer.Exit(130) from None
    finally:
        moderator.close()

    if fmt is OutputFormat.json:
        print(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
    elif fmt is OutputFormat.table:
        Console().print(results_table(results))
    if not quiet:
        stderr.print(summary_table(summary))
        if out is not None:
            stderr.print(Text(f"results: {out}"))
    exit_for(summary, fail_on)


def _progress(console: Console, *, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, disable=not enabled, transient=True,
    )


moderate.__doc__ = inspect.cleandoc(moderate.__doc__ or "") + "\n\n" + EXIT_HELP.strip()


def on_ray(
    paths: list[str],
    policy: str,
    backend: str,
    keywords: dict[str, Any],
    out: str | None,
    options: RayOptions,
    *,
    banks: Path | None,
    resume: bool,
    overwrite: bool,
    retry_errors: bool,
    parquet: bool,
    fail_on: Action | None,
    quiet: bool,
) -> None:
    """``icm moderate --engine ray``: the results go to shards in --out; the summary is a local run's."""
    from icm.scale.ray import RayModerator

    if out is None:
        raise InputError("--engine ray writes result shards: add --out FOLDER (or a URI such as s3://bucket/results)")
    stderr = Console(stderr=True, soft_wrap=True)
    moderator = RayModerator(policy, backend, options, banks=banks, **keywords)
    try:
        run = moderator.run(paths, out, resume=resume, overwrite=overwrite, retry_errors=retry_errors,
                            parquet=parquet)
    except KeyboardInterrupt:
        stderr.print(Text(f"interrupted; the shards written so far are in {out}: add --resume to go on"))
        raise typer.Exit(130) from None
    if not quiet:
        stderr.print(summary_table(run.summary))
        if run.dashboard:
            stderr.print(Text(f"Ray dashboard: {run.dashboard}"))
        stderr.print(Text(f"results: {out} ({len(run.shards)} shards)"))
    exit_for(run.summary, fail_on)


def backend_keywords(backend_options: Path | None, explain: Explain | None) -> dict[str, Any]:
    """The backend's options: those of the --backend-options file, and --explain when given."""
    from icm.backends.base import load_backend_options

    keywords = load_backend_options(backend_options) if backend_options is not None else {}
    if explain is not None:
        keywords["explain"] = explain
    return keywords


def exit_for(summary: RunSummary, fail_on: Action | None) -> None:
    """The run's exit status (EXIT_HELP), the same for either engine: 3 when a decision reached
    --fail-on, 1 when an image could not be judged, else 0 (returns)."""
    if fail_on is not None and any(Action(d).rank >= fail_on.rank for d in summary.decisions):
        raise typer.Exit(3)
    if summary.failed:
        raise typer.Exit(1)

_DECISION_STYLE = {"allow": "green", "review": "yellow", "blur": "magenta", "age_gate": "magenta",
                   "block": "red"}


def results_table(results: list[ModerationResult]) -> Table:
    """One row per image: decision, the rules that did not comply, and the reasons.

    A violation shows its probability; an uncertain rule shows none (nothing was measured for
    the rule as a whole), but the criteria that could not be assessed.
    """
    table = output.table("image", "decision", "rules", "reason", show_lines=True, expand=True)
    for r in results:
        rules = Text()
        if r.error is not None:
            rules.append(f"error: {r.error.code.value}", style="red")
        else:
            for v in r.verdicts:
                if v.verdict is Verdict.violates:
                    p = f" p={v.probability:.2f}" if v.probability is not None else ""
                    rules.append("violates", style="red").append(f" {v.rule_id}{p}\n")
                elif v.verdict is Verdict.uncertain:
                    missing = f" (not assessed: {', '.join(v.unassessed)})" if v.unassessed else ""
                    rules.append("uncertain", style="yellow").append(f" {v.rule_id}{missing}\n")
            complying = sum(v.verdict is Verdict.complies for v in r.verdicts)
            rules.append("complies", style="green").append(f" with {complying} of {len(r.verdicts)} rules")
        reasons = [r.explanation] + [v.explanation for v in r.verdicts if v.verdict is Verdict.violates]
        decision = Text(r.decision.value, style=_DECISION_STYLE.get(r.decision.value, ""))
        output.add_row(table, r.image, decision, rules, "\n".join(reasons))
    return table


def summary_table(summary: RunSummary) -> Table:
    table = output.table(title="summary", show_header=False)
    output.add_row(table, "judged", summary.judged)
    if summary.skipped:
        output.add_row(table, "skipped (already judged)", summary.skipped)
    if summary.unchanged_errors:
        output.add_row(table, "errors kept (file unchanged)", summary.unchanged_errors)
    output.add_row(table, "errors", ", ".join(f"{k}: {v}" for k, v in summary.errors.items()) or "0")
    output.add_row(table, "decisions", ", ".join(f"{k}: {v}" for k, v in summary.decisions.items()) or "-")
    output.add_row(
        table, "violations per rule", ", ".join(f"{k}: {v}" for k, v in summary.violations.items()) or "-"
    )
    output.add_row(
        table, "unassessed (uncertain) rules", ", ".join(f"{k}: {v}" for k, v in summary.uncertain.items()) or "-"
    )
    output.add_row(table, "images/s", f"{summary.images_per_second:.2f}")
    return table


def _bank_folder(banks: Path | None) -> BankFolder | None:
    """The bank folder of --banks (a folder that does not exist is a usage error, not no banks)."""
    if banks is None:
        return None
    from icm.banks.folder import BankFolder

    if not banks.is_dir():
        raise InputError(f"--banks {banks}: no such bank folder (create one with `icm bank create`)")
    return BankFolder(banks)
