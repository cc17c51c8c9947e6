"""Import the public ICM-Instruct generation outputs (``reason/``, ``qa/``, ``mc/``) as samples.

The release holds, per image, a stage-A explanation and two stage-B markdown tables written by
LLMs; the image's category is the file-name prefix. Each becomes instruction samples in our
format, with the label under the chosen rule set derived from the category.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icm.datagen import filters
from icm.datagen.instructions import conclusion, instruction, multiple_choice_prompt
from icm.datagen.labels import category_from_filename, label_criteria, load_label_map, policy_labels
from icm.datagen.sample import Sample, SampleKind, SampleMeta
from icm.datagen.tables import parse_mc_table, parse_qa_table
from icm.policy.load import load_policy
from icm.policy.schema import Policy
from icm.prompts import template_id

SOURCE = "icm-release"


@dataclass
class ImportReport:
    images: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    leaks_removed: int = 0
    missing_images: int = 0
    categories: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        kinds = ("yes_no", "what", "how", "multiple_choice", "explanation")
        return {
            **{kind: self.counts.get(kind, 0) for kind in kinds},
            "rejected": {"total": sum(self.rejected.values()), **dict(sorted(self.rejected.items()))},
            "images": self.images,
            "categories": len(self.categories),
            "prior_sentences_removed": self.leaks_removed,
            "images_not_found": self.missing_images,
        }


def import_icm_release(
    raw: Path,
    *,
    policy: str | Policy = "icm-r1",
    images: Path | None = None,
    label_map: Path | None = None,
) -> tuple[list[Sample], ImportReport]:
    """Samples from a release folder with ``reason/``, ``qa/`` and ``mc/`` sub-folders."""
    rule_set = load_policy(policy)
    mapping = load_label_map(label_map)
    report = ImportReport()
    folders = {name: raw / name for name in ("reason", "qa", "mc")}
    if not any(f.is_dir() for f in folders.values()):
        raise FileNotFoundError(f"{raw} has none of reason/, qa/, mc/: is it the release's raw folder?")
    stems = sorted({p.name.removesuffix(".txt") for f in folders.values() if f.is_dir() for p in f.glob("*.txt")})
    samples: list[Sample] = []
    for image_name in stems:
        category = category_from_filename(image_name)
        if category is None:
            report.rejected["no category in file name"] += 1
            continue
        try:
            criteria = label_criteria(category, mapping, [rule_set])
        except ValueError:
            report.rejected["unknown category"] += 1
            continue
        report.images += 1
        report.categories[category] += 1
        image = _Image(
            name=image_name,
            category=category,
            path=str(images / image_name) if images is not None else f"images/{image_name}",
            policy=rule_set,
            labels=policy_labels(rule_set, criteria),
        )
        if images is not None and not (images / image_name).exists():
            report.missing_images += 1
        samples += _explanation(folders["reason"] / f"{image_name}.txt", image, report)
        samples += _questions(folders["qa"] / f"{image_name}.txt", folders["mc"] / f"{image_name}.txt", image, report)
    return samples, report


@dataclass
class _Image:
    name: str
    category: str
    path: str
    policy: Policy
    labels: dict[str, bool]

    def meta(self, kind: SampleKind, **extra: Any) -> SampleMeta:
        return SampleMeta(
            kind=kind,
            image_id=self.name,
            category=self.category,
            policy=self.policy.id,
            policy_version=self.policy.version,
            label="violates" if any(self.labels.values()) else "complies",
            source=SOURCE,
            extra=extra,
        )


def _read(path: Path) -> str | None:
    return path.read_text("utf-8", errors="replace") if path.exists() else None


def _explanation(path: Path, image: _Image, report: ImportReport) -> list[Sample]:
    text = _read(path)
    if text is None:
        return []
    cleaned, dropped = filters.remove_prior_leaks(text)
    report.leaks_removed += dropped
    problem = filters.explanation_problem(cleaned)
    if problem is not None:
        report.rejected[problem] += 1
        return []
    report.counts["explanation"] += 1
    answer = f"{cleaned}\n\n{conclusion(image.policy, image.labels)}"
    meta = image.meta(SampleKind.explanation, prompt=template_id("instruction"))
    return [Sample.single_turn(instruction(image.policy, image.name), answer, meta, image=image.path)]


def _questions(qa_path: Path, mc_path: Path, image: _Image, report: ImportReport) -> list[Sample]:
    samples = []
    qa_text, mc_text = _read(qa_path), _read(mc_path)
    if qa_text is not None:
        parsed = parse_qa_table(qa_text)
        report.rejected.update(reason for reason, _ in parsed.rejected)
        rows, reasons = filters.qa_problems(parsed.qa)
        report.rejected.update(reasons)
        for row in rows:
            report.counts[row.kind] += 1
            samples.append(Sample.single_turn(row.question, row.answer, image.meta(SampleKind(row.kind)),
                                              image=image.path))
    if mc_text is not None:
        parsed = parse_mc_table(mc_text)
        report.rejected.update(reason for reason, _ in parsed.rejected)
        mc_rows, reasons = filters.mc_problems(parsed.mc)
        report.rejected.update(reasons)
        for mc in mc_rows:
            report.counts["multiple_choice"] += 1
            samples.append(Sample.single_turn(multiple_choice_prompt(mc), mc.answer,
                                              image.meta(SampleKind.multiple_choice), image=image.path))
    return samples
