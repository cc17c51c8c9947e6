"""Reviewers' decisions as labels: a folder in ``icm eval``'s labelled format (``labels.jsonl``
with image paths relative to it, the kept images under ``images/``) plus ``predictions.jsonl``,
the served model's stored results for the same images, ready for ``icm eval``, ``icm calibrate``
and ``icm data generate``."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from icm.errors import InputError
from icm.labels import LABELS_FILE, Label, write_labels
from icm.media import format_suffix
from icm.serve.store.images import ImageStore
from icm.serve.store.models import StoredResult
from icm.serve.store.reviews import ReviewStore

PREDICTIONS_FILE = "predictions.jsonl"


@dataclass
class Outcome:
    """What people decided about one stored result: a label per rule they agree on."""

    labels: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)  # rules two reviewers labelled differently


def final_labels(reviews: ReviewStore) -> dict[str, Outcome]:
    """Per result id: an appeal's decision wins for the rules it labelled; otherwise the rules
    every current reviewer labelled alike (a blind double review that disagrees gives no label)."""
    appeal: dict[str, dict[str, str]] = {}
    queue: dict[str, list[dict[str, str]]] = defaultdict(list)
    for review, item in reviews.current_reviews():  # in order: a later appeal replaces an earlier
        if item.kind == "appeal":
            appeal[review.result_id] = dict(review.labels)
        else:
            queue[review.result_id].append(dict(review.labels))
    out: dict[str, Outcome] = {}
    for result_id in set(appeal) | set(queue):
        outcome = Outcome()
        votes: dict[str, set[str]] = defaultdict(set)
        for labels in queue.get(result_id, []):
            for rule_id, label in labels.items():
                votes[rule_id].add(label)
        for rule_id, seen in votes.items():
            if len(seen) == 1:
                outcome.labels[rule_id] = next(iter(seen))
            else:
                outcome.conflicts.append(rule_id)
        for rule_id, label in appeal.get(result_id, {}).items():
            outcome.labels[rule_id] = label
            if rule_id in outcome.conflicts:
                outcome.conflicts.remove(rule_id)
        out[result_id] = outcome
    return out


@dataclass
class ExportSummary:
    out: Path
    policy: str | None
    images: int
    labels: int
    conflicts: int  # (image, rule) pairs left out because reviewers disagreed
    missing_images: int  # reviewed results whose image was not kept (left out)


def export_reviews(reviews: ReviewStore, images: ImageStore, out: Path, policy_id: str | None = None) -> ExportSummary:
    """Write the reviewed images of one policy and their labels to ``out`` (see the module)."""
    outcomes = final_labels(reviews)
    rows = reviews.results_by_id(sorted(outcomes))
    policies = sorted({row.policy_id for row in rows.values()})
    if policy_id is None and len(policies) > 1:
        raise InputError(f"the reviews span policies {', '.join(policies)}: export one at a time with --policy")
    chosen = policy_id or (policies[0] if policies else None)
    labels: dict[tuple[str, str], Label] = {}
    predictions: dict[str, StoredResult] = {}
    conflicts = missing = 0
    images_out = out / "images"
    for result_id in sorted(rows, key=lambda rid: rows[rid].seq):
        row = rows[result_id]
        outcome = outcomes[result_id]
        if row.policy_id != chosen or not row.sha256:
            continue
        data = images.get(row.sha256) if row.image_kept else None
        if data is None:
            missing += 1
            continue
        name = f"images/{row.sha256}{format_suffix(row.image_format)}"
        conflicts += len(outcome.conflicts)
        if not outcome.labels:
            continue
        images_out.mkdir(parents=True, exist_ok=True)
        target = out / name
        if not target.exists():
            target.write_bytes(data)
        for rule_id, label in outcome.labels.items():
            labels[(name, rule_id)] = Label(image=name, rule_id=rule_id, violates=label == "violates")
        predictions[name] = row
    out.mkdir(parents=True, exist_ok=True)
    write_labels(labels.values(), out / LABELS_FILE)
    with (out / PREDICTIONS_FILE).open("w", encoding="utf-8") as handle:
        for name, row in predictions.items():
            handle.write(json.dumps({**row.result, "image": name}) + "\n")
    return ExportSummary(out=out, policy=chosen, images=len(predictions), labels=len(labels), conflicts=conflicts,
                         missing_images=missing)
