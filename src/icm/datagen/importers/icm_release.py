"""Import the public ICM-Instruct generation outputs (``reason/``, ``qa/``, ``mc/``) as samples.

The release holds, per image, a stage-A explanation and two stage-B markdown tables written by
LLMs; the image's category is the file-name prefix. Each becomes instruction samples in our
format, with the label under the chosen rule set derived from the category.

Layouts read (the folder given, or the release folder inside a clone of the paper's repository,
``data/ICM-Instruct_data_generation_pipeline/prepare_jsons_for_training/``):

- ``reason/<image>.txt``, one explanation per image, and ``reason/<N>/<image>.txt``, the numbered
  copies the published repository keeps (``reason/1/`` .. ``reason/5/``, the same file names). A
  copy whose text is identical to one already read for the image counts once (``duplicate_copies``
  in the report); copies that differ are different explanations of the image and each becomes a
  sample. The paper's own conversion script made a sample of every copy, identical or not, so its
  explanations were repeated five times; repeat them with training epochs if that is wanted.
- ``qa/<image>.txt`` and ``mc/<image>.txt``: the question tables.

The report counts, per kind, the rows *read* from the release (every table row of a known kind,
every non-empty explanation) and the rows *kept* after the filters, with the rejected ones by
reason; ``filter=False`` keeps every row read, malformed ones as written.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from icm.datagen import filters
from icm.datagen.instructions import conclusion, instruction, multiple_choice_prompt
from icm.datagen.sample import Sample, SampleKind, SampleMeta
from icm.errors import InputError
from icm.policy.categories import category_from_filename, label_criteria, load_label_map, policy_labels
from icm.policy.load import load_policy
from icm.policy.schema import Policy
from icm.prompts import template_id
from icm.tables import MCRow, QARow, parse_mc_table, parse_qa_table

SOURCE = "icm-release"
#: Where a clone of the paper's repository keeps the generation outputs.
REPOSITORY_FOLDER = Path("data/ICM-Instruct_data_generation_pipeline/prepare_jsons_for_training")
FOLDERS = ("reason", "qa", "mc")
KINDS = ("explanation", "yes_no", "what", "how", "multiple_choice")


class ReleaseError(InputError):
    """A folder that holds none of the release's generation outputs."""


@dataclass
class ImportReport:
    images: int = 0
    read: Counter[str] = field(default_factory=Counter)  # rows found in the release, by kind
    kept: Counter[str] = field(default_factory=Counter)  # samples made, by kind
    rejected: Counter[str] = field(default_factory=Counter)  # rows read but not kept, by reason
    unread: Counter[str] = field(default_factory=Counter)  # table lines that hold no row of a known kind
    skipped: Counter[str] = field(default_factory=Counter)  # images left out (no or unknown category)
    without_text: Counter[str] = field(default_factory=Counter)  # images with a missing or empty file, by folder
    duplicate_copies: int = 0
    leaks_removed: int = 0
    missing_images: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    filtered: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": {kind: self.read.get(kind, 0) for kind in KINDS},
            "kept": {kind: self.kept.get(kind, 0) for kind in KINDS},
            "rejected": _with_total(self.rejected),
            "unread_lines": _with_total(self.unread),
            "filtered": self.filtered,
            "images": self.images,
            "categories": len(self.categories),
            "images_skipped": _with_total(self.skipped),
            "images_without_text": {folder: self.without_text.get(folder, 0) for folder in FOLDERS},
            "duplicate_copies": self.duplicate_copies,
            "prior_sentences_removed": self.leaks_removed,
            "images_not_found": self.missing_images,
        }


def _with_total(counts: Counter[str]) -> dict[str, int]:
    return {"total": sum(counts.values()), **dict(sorted(counts.items()))}


def release_folder(raw: Path) -> Path:
    """The folder holding ``reason/``, ``qa/`` and ``mc/``: ``raw`` itself or, for a clone of the
    paper's repository, its ``data/.../prepare_jsons_for_training/``."""
    for candidate in (raw, raw / REPOSITORY_FOLDER):
        if any((candidate / name).is_dir() for name in FOLDERS):
            return candidate
    raise ReleaseError(
        f"{raw} has none of reason/, qa/, mc/ (nor {REPOSITORY_FOLDER}/ of the paper's repository): "
        "is it the release's folder?"
    )


def explanation_files(reason: Path) -> dict[str, list[Path]]:
    """image name -> its explanation files: ``reason/<image>.txt``, then ``reason/<N>/<image>.txt``
    in the order of N."""
    found: dict[str, list[Path]] = defaultdict(list)
    if not reason.is_dir():
        return found
    copies = sorted((d for d in reason.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
    for folder in (reason, *copies):
        for path in sorted(folder.glob("*.txt")):
            found[path.name.removesuffix(".txt")].append(path)
    return found


def import_icm_release(
    raw: Path,
    *,
    policy: str | Policy = "icm-r1",
    images: Path | None = None,
    label_map: Path | None = None,
    filter: bool = True,
) -> tuple[list[Sample], ImportReport]:
    """Samples from the release folder (see the module's docstring for the layouts read).

    ``filter=False`` keeps every row read: no quality filter, no prior-leak removal, malformed
    table rows as written.
    """
    root = release_folder(raw)
    rule_set = load_policy(policy)
    mapping = load_label_map(label_map)
    report = ImportReport(filtered=filter)
    explanations = explanation_files(root / "reason")
    tables = {name: root / name for name in ("qa", "mc")}
    stems = set(explanations)
    for folder in tables.values():
        if folder.is_dir():
            stems.update(p.name.removesuffix(".txt") for p in folder.glob("*.txt"))
    samples: list[Sample] = []
    for image_name in sorted(stems):
        category = category_from_filename(image_name)
        if category is None:
            report.skipped["no category in file name"] += 1
            continue
        try:
            criteria = label_criteria(category, mapping, [rule_set])
        except ValueError:
            report.skipped["unknown category"] += 1
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
        samples += _explanations(explanations.get(image_name, []), root, image, report)
        samples += _questions(tables["qa"] / f"{image_name}.txt", tables["mc"] / f"{image_name}.txt", image, report)
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
    """The file's text, or None when it is missing or holds only whitespace."""
    text = path.read_text("utf-8", errors="replace").strip() if path.exists() else ""
    return text or None


def _explanations(paths: list[Path], root: Path, image: _Image, report: ImportReport) -> list[Sample]:
    texts: dict[str, Path] = {}
    for path in paths:
        text = _read(path)
        if text is None:
            continue
        if text in texts:
            report.duplicate_copies += 1
        else:
            texts[text] = path
    if not texts:
        report.without_text["reason"] += 1
    samples = []
    for text, path in texts.items():
        report.read["explanation"] += 1
        if report.filtered:
            text, dropped = filters.remove_prior_leaks(text)
            report.leaks_removed += dropped
            problem = filters.explanation_problem(text)
            if problem is not None:
                report.rejected[problem] += 1
                continue
        report.kept["explanation"] += 1
        answer = f"{text}\n\n{conclusion(image.policy, image.labels)}"
        meta = image.meta(SampleKind.explanation, prompt=template_id("instruction"),
                          file=path.relative_to(root).as_posix())
        samples.append(Sample.single_turn(instruction(image.policy, image.name), answer, meta, image=image.path))
    return samples


def _questions(qa_path: Path, mc_path: Path, image: _Image, report: ImportReport) -> list[Sample]:
    samples = []
    qa_text, mc_text = _read(qa_path), _read(mc_path)
    if qa_text is None:
        report.without_text["qa"] += 1
    else:
        parsed = parse_qa_table(qa_text, strict=False)
        report.unread.update(reason for reason, _ in parsed.rejected)
        for row in _kept(parsed.qa, lambda row: row.kind, filters.qa_problems, report):
            samples.append(Sample.single_turn(row.question, row.answer, image.meta(SampleKind(row.kind)),
                                              image=image.path))
    if mc_text is None:
        report.without_text["mc"] += 1
    else:
        parsed = parse_mc_table(mc_text, strict=False)
        report.unread.update(reason for reason, _ in parsed.rejected)
        for mc in _kept(parsed.mc, lambda _: SampleKind.multiple_choice.value, filters.mc_problems, report):
            samples.append(Sample.single_turn(multiple_choice_prompt(mc), mc.answer,
                                              image.meta(SampleKind.multiple_choice), image=image.path))
    return samples


Row = TypeVar("Row", QARow, MCRow)


def _kept(
    rows: list[Row],
    kind: Callable[[Row], str],
    problems: Callable[[list[Row]], tuple[list[Row], list[str]]],
    report: ImportReport,
) -> list[Row]:
    """The rows that pass the parser's checks and the quality filters (every row, unfiltered)."""
    report.read.update(kind(row) for row in rows)
    if report.filtered:
        report.rejected.update(row.problem for row in rows if row.problem is not None)
        rows, reasons = problems([row for row in rows if row.problem is None])
        report.rejected.update(reasons)
    report.kept.update(kind(row) for row in rows)
    return rows
