"""``icm review``: what the review console's people decided, as labels for the rest of icm."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from icm.cli import output

app = typer.Typer(help="Reviewers' decisions from the service's store: export them as labels.", no_args_is_help=True)
console = Console()


@app.command("export", no_args_is_help=True)
def export(
    db: str = typer.Option(..., "--db", help="SQLAlchemy URL of the service's store (e.g. sqlite:///icm-serve.db)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write: labels.jsonl, images/, predictions.jsonl."),
    image_dir: Path = typer.Option(Path("icm-images"), "--image-dir", help="Where the service keeps images "
                                   "(its ICM_IMAGE_DIR)."),
    policy: str = typer.Option(None, "--policy", help="Only this policy's reviews (needed when there are several).",
                               show_default=False),
) -> None:
    """Write reviewed images and their labels in `icm eval`'s labelled format, plus the served
    model's stored results as predictions.jsonl:

      icm review export --db sqlite:///icm-serve.db --out reviewed/
      icm eval --predictions reviewed/predictions.jsonl --labels reviewed/labels.jsonl
      icm eval run --dataset reviewed --policy general --backend local
    """
    from icm.serve.review.export import export_reviews
    from icm.serve.store import Store
    from icm.serve.store.review import ReviewStore

    store = Store(db)
    try:
        summary = export_reviews(ReviewStore(store), image_dir, out, policy)
    finally:
        store.close()
    line = (f"wrote {summary.labels} labels of {summary.images} images (policy {summary.policy or '-'}) to "
            f"{summary.out}")
    if summary.conflicts:
        line += f"; {summary.conflicts} image-rule pairs left out where two reviewers disagree"
    if summary.missing_images:
        line += f"; {summary.missing_images} reviewed results left out: their image was not kept"
    console.print(output.text(line))
