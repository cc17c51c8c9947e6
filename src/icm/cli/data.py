"""``icm data``: build instruction data (generate, import the ICM-Instruct release, export)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Build instruction data for training a moderation VLM.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)


@app.command("import-icm")
def import_icm(
    raw: Path = typer.Argument(..., help="The release's raw folder, with reason/, qa/ and mc/ inside."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write."),
    policy: str = typer.Option("icm-r1", "--policy", "-p", help="Rule set the labels are derived under."),
    images: Path | None = typer.Option(None, "--images", help="Folder holding the release's images."),
    label_map: Path | None = typer.Option(None, "--label-map", help="YAML: category -> criterion ids."),
    validation: float = typer.Option(0.1, "--validation", min=0.0, max=0.9, help="Share of images held out."),
    parquet: bool = typer.Option(False, "--parquet", help="Also write Parquet splits (needs `datasets`)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the counts."),
) -> None:
    """Import the public ICM-Instruct generation outputs into a dataset directory.

    Counts kept samples by kind (yes_no, what, how, multiple_choice, explanation) and rejected
    rows by reason (duplicate or unanswerable questions, empty or looping explanations ...).

    Example: icm data import-icm ICM-Instruct/raw --out data/icm-r1 --images ICM-Instruct/images
    """
    from icm.datagen.dataset import write_dataset
    from icm.datagen.importers.icm_release import import_icm_release
    from icm.datagen.labels import LabelError
    from icm.policy.load import PolicyError

    try:
        samples, report = import_icm_release(raw, policy=policy, images=images, label_map=label_map)
    except (FileNotFoundError, PolicyError, LabelError) as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    summary = report.as_dict()
    manifest = write_dataset(
        samples, out, validation_fraction=validation, parquet=parquet,
        info={"source": "icm-release", "policy": policy, "import": summary},
    )
    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table(title=f"imported {raw} -> {out}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    for split, info in manifest["splits"].items():
        table.add_row(f"{split} split", f"{info['samples']} samples, {info['images']} images")
    console.print(table)
    if images is None:
        errors.print("note: no --images folder given; samples refer to images/<name> inside the dataset directory.")


@app.command("generate")
def generate(
    images: Path = typer.Option(
        ..., "--images", help="A folder with one sub-folder per label, or an image,label manifest."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write (with its cache)."),
    policy: str = typer.Option("icm-r1", "--policy", "-p", help="Primary policy; explanations are written under it."),
    family: list[str] | None = typer.Option(
        None, "--family", help="Rule sets for policy augmentation (repeat); default: the policy's built-in family."
    ),
    mllm: str = typer.Option("local", "--mllm", help="Explaining model: local (detector facts), transformers:DIR, "
                             "openai:MODEL@URL."),
    llm: str = typer.Option("llama-cpp:smollm2", "--llm", help="Question-writing model: llama-cpp:PATH.gguf, "
                            "llama-cpp:smollm2, openai:MODEL@URL."),
    label_map: Path | None = typer.Option(None, "--label-map", help="YAML: label -> criterion ids."),
    validation: float = typer.Option(0.1, "--validation", min=0.0, max=0.9, help="Share of images held out."),
    parquet: bool = typer.Option(False, "--parquet", help="Also write Parquet splits (needs `datasets`)."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Model calls in flight (for servers)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N images."),
    no_relax: bool = typer.Option(False, "--no-relax", help="No relaxed-rule augmentation."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run in OUT, reusing its cached model answers."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Generate instruction data from labelled images: explain, Q-A, filter, augment, export.

    Example: icm data generate --images photos/ --policy icm-r1 --mllm local --llm llama-cpp:smollm2 --out data/
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from icm.backends.base import BackendError
    from icm.datagen.pipeline import GenerateConfig, PipelineError, run_pipeline
    from icm.llm import LLMError
    from icm.policy.load import PolicyError

    config = GenerateConfig(
        images=images, out=out, policy=policy, family=family or None, mllm=mllm, llm=llm, label_map=label_map,
        validation=validation, parquet=parquet, concurrency=concurrency, limit=limit, relax=not no_relax,
        resume=resume,
    )
    bars = Progress(TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=errors, disable=as_json or not errors.is_terminal)

    def progress(stage: str, total: int) -> Callable[[], None]:
        task = bars.add_task(stage, total=total)
        return lambda: bars.advance(task)

    try:
        with bars:
            report = run_pipeline(config, progress=progress)
    except (PipelineError, PolicyError, LLMError, BackendError) as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        errors.print(f"interrupted; every model answer so far is cached in {out / 'cache'}: add --resume to go on")
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table("stage", "in", "out", "cached", "tokens", "rejected", title=f"icm data generate -> {out}")
    for name, stage in report["stages"].items():
        rejected = ", ".join(f"{k}: {v}" for k, v in stage["rejected"].items()) or "-"
        table.add_row(name, str(stage["in"]), str(stage["out"]), str(stage["cached"]), str(stage["tokens"]), rejected)
    console.print(table)
    console.print(f"samples: {report['samples']}  kinds: {report['kinds']}  ({report['seconds']} s)")
