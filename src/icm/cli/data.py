"""``icm data``: build instruction data (generate, import the ICM-Instruct release, export)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from annotated_types import Ge, Le
from rich.console import Console
from rich.table import Table

from icm.datagen.config import GenerateConfig

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


def _option(name: str, *flags: str) -> Any:
    """A ``generate`` option whose default, help and bounds are those of the GenerateConfig field."""
    field = GenerateConfig.model_fields[name]
    low: Any = next((m.ge for m in field.metadata if isinstance(m, Ge)), None)
    high: Any = next((m.le for m in field.metadata if isinstance(m, Le)), None)
    default = ... if field.is_required() else field.get_default(call_default_factory=True)
    return typer.Option(default, *flags, help=field.description, min=low, max=high)


@app.command("generate")
def generate(
    images: Path = _option("images", "--images"),
    out: Path = _option("out", "--out", "-o"),
    policy: str = _option("policy", "--policy", "-p"),
    family: list[str] | None = _option("family", "--family"),
    mllm: str = _option("mllm", "--mllm"),
    llm: str = _option("llm", "--llm"),
    label_map: Path | None = _option("label_map", "--label-map"),
    validation: float = _option("validation", "--validation"),
    parquet: bool = _option("parquet", "--parquet"),
    concurrency: int = _option("concurrency", "--concurrency"),
    limit: int | None = _option("limit", "--limit"),
    relax: bool = _option("relax", "--relax/--no-relax"),
    resume: bool = _option("resume", "--resume"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Generate instruction data from labelled images: explain, Q-A, filter, augment, export.

    Exits 1 with the top rejection reasons when (almost) nothing was produced (under 5% of the images).

    Example: icm data generate --images photos/ --policy icm-r1 --mllm local --llm llama-cpp:smollm2 --out data/
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from icm.backends.base import BackendError
    from icm.datagen.llm import LLMError
    from icm.datagen.pipeline import PipelineError, run_pipeline
    from icm.policy.load import PolicyError

    config = GenerateConfig(
        images=images, out=out, policy=policy, family=family or None, mllm=mllm, llm=llm, label_map=label_map,
        validation=validation, parquet=parquet, concurrency=concurrency, limit=limit, relax=relax, resume=resume,
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
    else:
        table = Table("stage", "in", "out", "cached", "tokens", "rejected", title=f"icm data generate -> {out}")
        for name, stage in report["stages"].items():
            rejected = ", ".join(f"{k}: {v}" for k, v in stage["rejected"].items()) or "-"
            table.add_row(name, str(stage["in"]), str(stage["out"]), str(stage["cached"]), str(stage["tokens"]),
                          escape(rejected))
        console.print(table)
        console.print(f"samples: {report['samples']}  kinds: {report['kinds']}  ({report['seconds']} s)")
    if not report["ok"]:
        for problem in report["problems"]:
            errors.print(f"[red]error:[/red] {escape(problem)}")
        errors.print(f"(almost) nothing was produced; see {out / 'report.json'}")
        raise typer.Exit(1)
