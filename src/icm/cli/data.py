"""``icm data``: build instruction data (generate, import the ICM-Instruct release, export)."""

from __future__ import annotations

import json
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
