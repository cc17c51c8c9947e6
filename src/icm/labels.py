"""Labels: what a person says about an image under a rule, the ground truth that evaluation
scores against and calibration fits to.

A labels file is JSONL, one line per (image, rule): ``{"image", "rule_id", "label", "category"?}``
with ``label`` ``violates`` or ``complies`` (any case). The rule id ``*`` labels the image as a
whole under the policy (it violates when any rule is violated), which is how the paper labels its
data. Image paths are kept as written: evaluation joins them with the results' ``image`` keys,
calibration resolves them against the file's folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from icm.errors import InputError
from icm.jsonl import read_jsonl

ANY_RULE = "*"
LABELS_FILE = "labels.jsonl"  # the labels of a labelled dataset folder, image paths relative to it


class LabelFileError(InputError):
    """A labels file that cannot be read or holds a bad line; the message names the line."""


@dataclass(frozen=True)
class Label:
    """One labelled (image, rule) pair."""

    image: str
    rule_id: str
    violates: bool
    category: str | None = None

    @property
    def verdict(self) -> Literal["violates", "complies"]:
        return "violates" if self.violates else "complies"

    def to_record(self) -> dict[str, Any]:
        """The line of a labels file (``category`` only when there is one)."""
        row: dict[str, Any] = {"image": self.image, "rule_id": self.rule_id, "label": self.verdict}
        if self.category is not None:
            row["category"] = self.category
        return row


def load_labels(path: str | Path, *, error: type[InputError] = LabelFileError) -> list[Label]:
    """Read a labels JSONL file; a bad line, a duplicate (image, rule_id) pair or an empty file
    raises ``error`` (the caller's own input error class, as for :func:`icm.jsonl.read_jsonl`)."""
    path = Path(path)
    labels: list[Label] = []
    seen: dict[tuple[str, str], int] = {}
    for number, row in read_jsonl(path, error=error):
        labels.append(_label_from_row(row, f"{path}:{number}", error))
        key = (labels[-1].image, labels[-1].rule_id)
        if key in seen:
            raise error(
                f"{path}:{number}: duplicate label for image {key[0]!r} and rule {key[1]!r} "
                f"(first on line {seen[key]})"
            )
        seen[key] = number
    if not labels:
        raise error(f"{path}: no labels")
    return labels


def _label_from_row(row: dict[str, Any], where: str, error: type[InputError]) -> Label:
    missing = [k for k in ("image", "rule_id", "label") if not row.get(k)]
    if missing:
        raise error(f"{where}: missing {', '.join(missing)}")
    value = str(row["label"]).strip().lower()
    if value not in ("violates", "complies"):
        raise error(f"{where}: label must be 'violates' or 'complies', not {row['label']!r}")
    category = row.get("category")
    return Label(
        image=str(row["image"]),
        rule_id=str(row["rule_id"]),
        violates=value == "violates",
        category=str(category) if category not in (None, "") else None,
    )


def write_labels(labels: Iterable[Label], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for label in labels:
            handle.write(json.dumps(label.to_record()) + "\n")
