"""``icm review``: what the review console's people decided, as labels for the rest of icm."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from icm.cli import output
from icm.cli.extras import needs_extra
from icm.cli.store import DB, database_url

if TYPE_CHECKING:
    from icm.serve.store.images import ImageStore
    from icm.serve.store.reviews import ReviewStore

app = typer.Typer(help="Reviewers' decisions from the service's store: export them as labels.", no_args_is_help=True)
console = Console()

# The options of a command that reads the service's store (its --db: icm.cli.store.DB) and kept images
# (here and `icm policy replay`).
IMAGE_DIR = typer.Option(Path("icm-images"), "--image-dir", envvar="ICM_IMAGE_DIR",
                         help="Where the service keeps images on disk (its ICM_IMAGE_DIR).")
KEEP_IMAGES = typer.Option("disk", "--keep-images", envvar="ICM_KEEP_IMAGES",
                           help="Where the service keeps images: disk or database (its ICM_KEEP_IMAGES).")


@contextmanager
def kept_store(db: str | None, keep_images: str, image_dir: Path) -> Iterator[tuple[ReviewStore, ImageStore]]:
    """The service's store (its review side, at --db, else ICM_DB, else sqlite:///icm-serve.db) and
    the images it kept, closed at the end."""
    url = database_url(db)
    with needs_extra("serve", "reading the service's store"):
        from icm.serve.store import Store
        from icm.serve.store.images import images_to_read
        from icm.serve.store.reviews import ReviewStore

    store = Store(url)
    try:
        yield ReviewStore(store), images_to_read(store, keep_images, image_dir)
    finally:
        store.close()


@app.command("export", no_args_is_help=True)
def export(
    db: str | None = DB,
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write: labels.jsonl, images/, predictions.jsonl."),
    image_dir: Path = IMAGE_DIR,
    keep_images: str = KEEP_IMAGES,
    policy: str = typer.Option(None, "--policy", help="Only this policy's reviews (needed when there are several).",
                               show_default=False),
) -> None:
    """Write reviewed images and their labels in `icm eval`'s labelled format, plus the served
    model's stored results as predictions.jsonl:

      icm review export --out reviewed/
      icm eval -p reviewed/predictions.jsonl -l reviewed/labels.jsonl
      icm eval run --dataset reviewed --policy general --backend local
    """
    with needs_extra("serve", "icm review export"):
        from icm.serve.review.export import export_reviews

    with kept_store(db, keep_images, image_dir) as (reviews, images):
        summary = export_reviews(reviews, images, out, policy)
    line = (f"wrote {summary.labels} labels of {summary.images} images (policy {summary.policy or '-'}) to "
            f"{summary.out}")
    if summary.conflicts:
        line += f"; {summary.conflicts} image-rule pairs left out where two reviewers disagree"
    if summary.missing_images:
        line += f"; {summary.missing_images} reviewed results left out: their image was not kept"
    console.print(output.text(line))
