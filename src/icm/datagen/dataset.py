"""A dataset directory: the samples of each split, as JSONL (and Parquet), plus a manifest.

    DIR/
      dataset.json         manifest: counts per split and kind, policies, sources, prompt versions
      train.jsonl          one Sample record per line (see icm.datagen.sample)
      validation.jsonl
      train.parquet        the same rows, for `datasets.load_dataset("parquet", ...)` (optional)

Image paths in the records are relative to DIR (or absolute). Splits are made by image, so no
image is in two splits.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from icm.datagen.sample import Sample
from icm.errors import InputError
from icm.jsonl import read_jsonl
from icm.validation import describe_validation_error

SPLITS = ("train", "validation")
MANIFEST = "dataset.json"


class DatasetError(InputError):
    """A dataset directory or record that cannot be read."""


def assign_split(image_id: str, validation_fraction: float, seed: int = 0) -> str:
    """A stable split per image: the same image always lands in the same split."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    return "validation" if bucket < validation_fraction else "train"


def write_dataset(
    samples: Iterable[Sample],
    out: Path,
    *,
    validation_fraction: float = 0.1,
    seed: int = 0,
    parquet: bool = False,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Split by image, write ``train.jsonl`` / ``validation.jsonl`` (and Parquet), return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    handles = {split: (out / f"{split}.jsonl").open("w", encoding="utf-8") for split in SPLITS}
    counts: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    images: dict[str, set[str]] = {split: set() for split in SPLITS}
    try:
        for sample in samples:
            split = sample.meta.split or assign_split(sample.meta.image_id, validation_fraction, seed)
            sample.meta.split = split  # type: ignore[assignment]
            handles[split].write(json.dumps(sample.to_record(), ensure_ascii=False) + "\n")
            counts[split][sample.meta.kind.value] += 1
            images[split].add(sample.meta.image_id)
    finally:
        for handle in handles.values():
            handle.close()
    leaked = images["train"] & images["validation"]
    if leaked:
        raise DatasetError(f"images in both splits: {sorted(leaked)[:5]}")
    if parquet:
        write_parquet(out)
    manifest = {
        "format": "icm-dataset/1",
        "splits": {
            split: {"samples": sum(counts[split].values()), "images": len(images[split]), "kinds": dict(counts[split])}
            for split in SPLITS
        },
        **(info or {}),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def write_parquet(out: Path) -> None:
    """Parquet copies of the JSONL splits, through `datasets` (installed with the data extra)."""
    from datasets import load_dataset

    for split in SPLITS:
        path = out / f"{split}.jsonl"
        if path.stat().st_size == 0:
            continue
        table = load_dataset("json", data_files=str(path), split="train")
        table.to_parquet(str(out / f"{split}.parquet"))


def read_samples(directory: Path, split: str = "train") -> list[Sample]:
    """The samples of one split, validated; errors name the file and line."""
    path = directory / f"{split}.jsonl"
    if not path.exists():
        raise DatasetError(f"{path} not found: is {directory} a dataset written by `icm data`?")
    samples = []
    for number, row in read_jsonl(path, error=DatasetError):
        try:
            samples.append(Sample.model_validate(row))
        except ValidationError as exc:
            raise DatasetError(f"{path}:{number}: not a valid sample: {describe_validation_error(exc)}") from exc
    return samples
