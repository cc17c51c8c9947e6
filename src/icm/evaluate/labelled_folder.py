"""A labelled dataset folder, moderated with a backend and then evaluated (``icm eval run``).

Layout: ``DIR/labels.jsonl`` (see :mod:`icm.labels`) with image paths relative to
``DIR``; the images anywhere below it. Labels may name the rules of the policy, or ``*`` for the
image as a whole.
"""

from __future__ import annotations

from pathlib import Path

from icm.evaluate.records import EvalInputError
from icm.labels import ANY_RULE, LABELS_FILE, Label, load_labels
from icm.policy.schema import slugify


def load_dataset(folder: str | Path) -> list[Label]:
    folder = Path(folder)
    path = folder / LABELS_FILE
    if not folder.is_dir():
        raise EvalInputError(f"{folder}: not a folder")
    if not path.is_file():
        raise EvalInputError(f"{folder}: no {LABELS_FILE} (one line per image and rule)")
    return load_labels(path, error=EvalInputError)


def moderate_dataset(
    folder: str | Path,
    policy: str | Path,
    backend: str = "local",
    out: str | Path | None = None,
    *,
    workers: int = 1,
) -> Path:
    """Judge every labelled image of ``folder`` and write the results JSONL to ``out``.

    Result ``image`` keys are the label paths, so the labels join without rewriting.
    """
    from icm.moderator import Moderator
    from icm.sources import ImageItem

    folder = Path(folder)
    labels = load_dataset(folder)
    moderator = Moderator(policy, backend, workers=workers)
    try:
        rule_ids = {rule.id for rule in moderator.policy.rules}
        unknown = sorted({lab.rule_id for lab in labels} - rule_ids - {ANY_RULE})
        if unknown:
            raise EvalInputError(
                f"{folder / LABELS_FILE}: rules not in policy {moderator.policy.id}: "
                f"{', '.join(unknown)} (known: {', '.join(sorted(rule_ids))}, or * for the image)"
            )
        images = list(dict.fromkeys(lab.image for lab in labels))
        items = [ImageItem(key=image, path=folder / image) for image in images]
        target = Path(out) if out is not None else folder / predictions_file(backend)
        moderator.run(items, out=target)
    finally:
        moderator.close()
    return target


def predictions_file(backend: str) -> str:
    """``predictions-<backend>.jsonl``: where ``icm eval run`` writes a backend's results."""
    return f"predictions-{slugify(backend, default='backend')}.jsonl"
