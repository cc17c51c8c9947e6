"""``icm data``: build instruction data (generate, import the ICM-Instruct release, export)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from annotated_types import Ge, Le
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from icm.cli import output
from icm.cli.moderate import Engine
from icm.datagen.config import GenerateConfig

app = typer.Typer(help="Build instruction data for training a moderation VLM.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)


@app.command("import-icm")
def import_icm(
    raw: Path = typer.Argument(
        ..., help="The release's folder with reason/ (or reason/1/ ..), qa/ and mc/, or a clone of its repository."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write."),
    policy: str = typer.Option("icm-r1", "--policy", "-p", help="Rule set the labels are derived under."),
    images: Path | None = typer.Option(
        None, "--images", exists=True, file_okay=False, help="Folder holding the release's images."
    ),
    label_map: Path | None = typer.Option(None, "--label-map", help="YAML: category -> criterion ids."),
    validation: float = typer.Option(0.1, "--validation", min=0.0, max=0.9, help="Share of images held out."),
    parquet: bool = typer.Option(False, "--parquet", help="Also write Parquet splits (needs `datasets`)."),
    no_filter: bool = typer.Option(
        False, "--no-filter", help="Keep every row read: no quality filter, malformed rows as written."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the counts."),
) -> None:
    """Import the public ICM-Instruct generation outputs into a dataset directory.

    Counts, by kind (yes_no, what, how, multiple_choice, explanation), the rows read from the
    release and the samples kept, and the rejected rows by reason (duplicate or unanswerable
    questions, malformed table rows, empty or looping explanations ...).

    Example: icm data import-icm tests/fixtures/icm_release/raw --out data/icm-r1
    """
    from icm.datagen.dataset import write_dataset
    from icm.datagen.importers.icm_release import import_icm_release

    samples, report = import_icm_release(raw, policy=policy, images=images, label_map=label_map, filter=not no_filter)
    summary = report.as_dict()
    manifest = write_dataset(
        samples, out, validation_fraction=validation, parquet=parquet,
        info={"source": "icm-release", "policy": policy, "import": summary},
    )
    if as_json:
        typer.echo(json.dumps(summary))
        return
    console.print(import_table(raw, out, summary, manifest))
    if images is None:
        errors.print(Text(
            "note: no --images folder given; samples refer to images/<name> inside the dataset directory."
        ))


def import_table(raw: Path, out: Path, summary: dict[str, Any], manifest: dict[str, Any]) -> Table:
    table = output.table(title=f"imported {raw} -> {out}", show_header=False)
    for key, value in summary.items():
        output.add_row(table, key, json.dumps(value) if isinstance(value, dict) else value)
    for split, info in manifest["splits"].items():
        output.add_row(table, f"{split} split", f"{info['samples']} samples, {info['images']} images")
    return table


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
    cache: str | None = _option("cache", "--cache"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    engine: Engine = typer.Option(
        Engine.local, "--engine",
        help="local: model stages on --concurrency threads; ray: the explain and Q-A stages on a Ray "
        "actor pool (needs the ray extra; give a --cache every machine shares on a cluster).",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="--engine ray: auto or ray://HOST:PORT; default: start Ray here.",
        show_default=False,
    ),
    actors: int = typer.Option(1, "--actors", min=1, help="--engine ray: actors per model stage."),
    gpus_per_actor: float = typer.Option(0.0, "--gpus-per-actor", min=0.0, help="--engine ray: GPUs per actor."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="--engine ray: images per actor batch."),
) -> None:
    """Generate instruction data from labelled images: explain, Q-A, filter, augment, export.

    Exits 1 with the top rejection reasons when (almost) nothing was produced (under 5% of the images).

    Example (the labels of examples/label-map.yaml, under the general policy):

      icm data generate --images examples/data-manifest.csv -o data/ex \\
        -p general --label-map examples/label-map.yaml
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from icm.datagen.pipeline import FanOut, run_pipeline

    config = GenerateConfig(
        images=images, out=out, policy=policy, family=family or None, mllm=mllm, llm=llm, label_map=label_map,
        validation=validation, parquet=parquet, concurrency=concurrency, limit=limit, relax=relax, resume=resume,
        cache=cache,
    )
    fan_out: FanOut | None = None
    if engine is Engine.ray:
        from icm.scale.ray import RayOptions, map_on_ray, require_ray

        require_ray()
        options = RayOptions(address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor,
                             batch_size=batch_size, progress=False)

        def fan_out(factory: Any, items: list[Any], tick: Callable[[], None]) -> list[Any]:
            return map_on_ray(factory, items, options, on_result=tick)

    bars = Progress(TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=errors, disable=as_json or not errors.is_terminal)

    def progress(stage: str, total: int) -> Callable[[], None]:
        task = bars.add_task(stage, total=total)
        return lambda: bars.advance(task)

    try:
        with bars:
            report = run_pipeline(config, progress=progress, fan_out=fan_out)
    except KeyboardInterrupt:
        errors.print(Text(f"interrupted; every model answer so far is cached in {config.cache_root}: add --resume "
                          "to go on"))
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        console.print(generate_report(out, report))
    if not report["ok"]:
        for problem in report["problems"]:
            errors.print(output.error(problem))
        errors.print(Text(f"(almost) nothing was produced; see {out / 'report.json'}"))
        raise typer.Exit(1)


def generate_report(out: Path, report: dict[str, Any]) -> Group:
    """The stages' counts and rejection reasons, then the samples written."""
    table = output.table("stage", "in", "out", "cached", "tokens", "rejected", title=f"icm data generate -> {out}")
    for name, stage in report["stages"].items():
        rejected = ", ".join(f"{k}: {v}" for k, v in stage["rejected"].items()) or "-"
        output.add_row(table, name, stage["in"], stage["out"], stage["cached"], stage["tokens"], rejected)
    return Group(table, Text(f"samples: {report['samples']}  kinds: {report['kinds']}  ({report['seconds']} s)"))


@app.command("labels")
def labels(
    policy: str = typer.Option("icm-r1", "--policy", "-p", help="Policy whose rules each label is judged under."),
    label_map: Path | None = typer.Option(None, "--label-map", help="YAML: label -> criterion ids (default: built-in)"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: label -> criteria and rules."),
) -> None:
    """The image labels the data engine knows, the criteria each stands for, and the policy's rules
    an image with that label violates.

    A label is the name of a sub-folder of `icm data generate --images` (or the label column of its
    manifest); a criterion id of the policy is a label too. The built-in labels are the categories of
    the ICM-Instruct release.

    Example: icm data labels --policy icm-r2
    """
    from icm.policy.categories import load_label_map, rule_violated
    from icm.policy.load import load_policy

    mapping = load_label_map(label_map)
    rules = load_policy(policy).rules
    rows = {
        label: {"criteria": criteria, "violates": [r.id for r in rules if rule_violated(r, criteria)]}
        for label, criteria in sorted(mapping.items())
    }
    if as_json:
        typer.echo(json.dumps(rows))
        return
    console.print(labels_table(policy, rows))


def labels_table(policy: str, rows: dict[str, dict[str, list[str]]]) -> Table:
    table = output.table("label", "criteria", f"violates under {policy}")
    for label, row in rows.items():
        output.add_row(table, label, ", ".join(row["criteria"]) or "none (benign)", ", ".join(row["violates"]) or "-")
    return table
