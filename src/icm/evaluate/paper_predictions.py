"""Importer for the paper's released prediction files (ICM-Assistant validation predictions).

The release is a JSON array of ``{"image_name", "logit_yes", "logit_no", "sexy_score",
"sexy_conclusion"}``: the first generated token's Yes/No logits for "does the image violate the
rule?", ``sexy_score`` = softmax of the two, and ``violates`` when it is above 0.5. Images carry
no label, only a category (the file-name prefix before the timestamp, e.g. ``upper_bust``);
labels come from the category under a rule set. Under R1 (the strictest) every category whose
name contains ``normal`` complies and every other violates, as the release documents. Other
rule sets need a ``category -> violates|complies`` mapping from the user: the release does not
publish one and we do not guess it.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icm.evaluate.records import EvalInputError, Outcome, Status, read_text
from icm.labels import Label, write_labels
from icm.policy.categories import category_from_filename

_SOFTMAX_TOLERANCE = 1e-6


def category_of(image_name: str) -> str:
    """``upper_bust_2022072011061710820_v2.jpg`` -> ``upper_bust`` (the release's naming)."""
    category = category_from_filename(image_name)
    if category is None:
        raise ValueError(f"no category prefix (name_<timestamp>) in image name {image_name!r}")
    return category


def r1_label(category: str) -> bool:
    """Rule set R1 (under 13, conservative): violates unless the category is a 'normal' one."""
    return "normal" not in category


def builtin_category_labels(rule_set: str, categories: set[str]) -> dict[str, bool]:
    """category -> violates under our built-in ``icm-rN`` policy (R2-R4: the release has no labels).

    The category maps to policy criteria through the data engine's ICM category map; the image
    violates the rule set when any of its rules is violated.
    """
    from icm.policy.categories import ICM_CATEGORIES, policy_labels
    from icm.policy.load import PolicyError, load_policy

    try:
        policy = load_policy(f"icm-{rule_set.lower()}")
    except PolicyError as exc:
        raise EvalInputError(f"no built-in rule set {rule_set}: use R1-R4 or pass a category mapping") from exc
    unknown = sorted(categories - set(ICM_CATEGORIES))
    if unknown:
        raise EvalInputError(f"categories not in the ICM category map: {', '.join(unknown)}")
    return {c: any(policy_labels(policy, ICM_CATEGORIES[c]).values()) for c in sorted(categories)}


def load_category_labels(path: str | Path) -> dict[str, bool]:
    """A ``category -> violates|complies`` mapping from JSON (an object) or CSV (two columns)."""
    path = Path(path)
    rows: list[tuple[str, Any, str]]
    if path.suffix.lower() == ".json":
        data = _read_json(path)
        if not isinstance(data, dict):
            raise EvalInputError(f"{path}: a JSON object of category -> violates|complies")
        rows = [(str(k), v, f"{path}: category {k!r}") for k, v in data.items()]
    else:
        reader = csv.reader(read_text(path).splitlines())
        rows = []
        for number, row in enumerate(reader, start=1):
            if not row or (number == 1 and row[0].strip().lower() == "category"):
                continue
            if len(row) != 2:
                raise EvalInputError(f"{path}:{number}: expected 'category,label', got {row!r}")
            rows.append((row[0].strip(), row[1], f"{path}:{number}"))
    mapping = {}
    for category, value, where in rows:
        label = str(value).strip().lower()
        if label not in ("violates", "complies"):
            raise EvalInputError(f"{where}: label must be 'violates' or 'complies', not {value!r}")
        mapping[category] = label == "violates"
    return mapping


@dataclass(frozen=True)
class PaperPrediction:
    image: str
    category: str
    probability: float  # p(violates) = softmax(logit_yes, logit_no)[yes]

    @property
    def violates(self) -> bool:
        return self.probability > 0.5  # the paper's rule


def load_paper_predictions(path: str | Path) -> list[PaperPrediction]:
    """Read and check a release prediction file; a bad entry is an error naming its index."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise EvalInputError(f"{path}: expected a JSON array of predictions")
    out = []
    seen: set[str] = set()
    for index, entry in enumerate(data):
        where = f"{path}: entry {index}"
        if not isinstance(entry, dict) or "image_name" not in entry:
            raise EvalInputError(f"{where}: an object with image_name is expected")
        name = str(entry["image_name"])
        if name in seen:
            raise EvalInputError(f"{where}: duplicate image_name {name!r}")
        seen.add(name)
        try:
            category = category_of(name)
        except ValueError as exc:
            raise EvalInputError(f"{where}: {exc}") from exc
        out.append(PaperPrediction(name, category, _probability(entry, where)))
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise EvalInputError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc


def _probability(entry: Mapping[str, Any], where: str) -> float:
    from_logits = None
    if "logit_yes" in entry and "logit_no" in entry:
        try:
            yes, no = float(entry["logit_yes"]), float(entry["logit_no"])
        except (TypeError, ValueError) as exc:
            raise EvalInputError(f"{where}: logits must be numbers") from exc
        from_logits = 1.0 / (1.0 + math.exp(no - yes))
    score = entry.get("sexy_score")
    if score is None:
        if from_logits is None:
            raise EvalInputError(f"{where}: needs sexy_score or logit_yes and logit_no")
        return from_logits
    try:
        score = float(score)
    except (TypeError, ValueError) as exc:
        raise EvalInputError(f"{where}: sexy_score must be a number") from exc
    if not 0.0 <= score <= 1.0:
        raise EvalInputError(f"{where}: sexy_score {score} is not a probability")
    if from_logits is not None and abs(from_logits - score) > _SOFTMAX_TOLERANCE:
        raise EvalInputError(
            f"{where}: sexy_score {score} disagrees with the softmax of its logits ({from_logits:.6f})"
        )
    return score


def paper_outcomes(
    predictions: list[PaperPrediction],
    rule_set: str = "R1",
    category_labels: Mapping[str, bool] | None = None,
) -> list[Outcome]:
    """Outcomes for the release predictions, labelled from each image's category.

    The rule id is the rule set (``icm-r1``...): the paper judges an image against the whole set.
    """
    rule_id = f"icm-{rule_set.lower()}"
    if category_labels is None:
        if rule_set.upper() == "R1":
            category_labels = {p.category: r1_label(p.category) for p in predictions}
        else:
            category_labels = builtin_category_labels(rule_set, {p.category for p in predictions})
    unknown = sorted({p.category for p in predictions} - set(category_labels))
    if unknown:
        raise EvalInputError(f"categories missing from the mapping: {', '.join(unknown)}")
    return [
        Outcome(
            Label(p.image, rule_id, category_labels[p.category], p.category),
            Status.judged,
            p.violates,
            p.probability,
        )
        for p in predictions
    ]


def write_paper_as_icm(
    outcomes: list[Outcome], predictions_out: str | Path, labels_out: str | Path
) -> None:
    """Write imported outcomes as ModerationResult JSONL plus labels JSONL, for ``icm eval``."""
    rule_id = outcomes[0].label.rule_id if outcomes else "icm-r1"
    with Path(predictions_out).open("w", encoding="utf-8") as handle:
        for o in outcomes:
            verdict = "violates" if o.predicted else "complies"
            row = {
                "image": o.label.image,
                "policy": {"id": rule_id, "version": 1},
                "decision": "block" if o.predicted else "allow",
                "verdicts": [
                    {"rule_id": rule_id, "verdict": verdict, "probability": o.probability}
                ],
                "backend": {"name": "icm-release", "models": {}},
                "error": None,
            }
            handle.write(json.dumps(row) + "\n")
    write_labels([o.label for o in outcomes], labels_out)
