"""Where images come from: files, folders (recursive), manifests (.jsonl / .csv) and stdin."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from icm.errors import InputError
from icm.jsonl import read_jsonl
from icm.media import IMAGE_SUFFIXES

MANIFEST_SUFFIXES = frozenset({".jsonl", ".csv"})


class SourceError(InputError):
    """A folder or manifest that does not exist, or a manifest that cannot be read."""


def is_uri(location: str | Path) -> bool:
    """A filesystem URI (``s3://bucket/key``, ``gs://...``, ``file:///...``) rather than a local path."""
    return "://" in str(location)


@dataclass(frozen=True)
class ImageItem:
    """One image to judge: its key (as written in results), where it is, and manifest fields."""

    key: str
    path: Path | None = None
    data: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    sha256: str | None = field(default=None, compare=False)  # of ``data``, when the caller has it


def iter_sources(paths: Iterable[str | Path], stdin: TextIO | None = None) -> Iterator[ImageItem]:
    """Expand paths into image items, lazily, in a stable order.

    A missing path named like an image file (by its suffix) still yields an item: it becomes a
    ``not_found`` error record rather than stopping the batch. Any other missing path (a folder,
    a manifest) is a wrong argument, not a missing image: :class:`SourceError`.
    """
    for raw in paths:
        text = str(raw)
        if text == "-":
            for line in stdin or sys.stdin:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield ImageItem(key=line, path=Path(line))
            continue
        path = Path(text)
        if path.is_dir():
            for child in iter_images(path):
                yield ImageItem(key=str(child), path=child)
        elif path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            yield from iter_manifest(path)
        elif path.suffix.lower() not in IMAGE_SUFFIXES and not path.exists():
            raise SourceError(f"no such folder or file: {text}")
        else:
            yield ImageItem(key=text, path=path)


def iter_images(folder: Path) -> Iterator[Path]:
    """The image files below ``folder`` (by suffix, recursively), sorted; anything hidden (a name
    starting with a dot, or inside such a folder) is left out."""
    for child in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in child.relative_to(folder).parts):
            continue
        if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
            yield child


def iter_manifest(path: Path) -> Iterator[ImageItem]:
    """Rows of a .jsonl or .csv manifest with an ``image`` column; paths relative to the manifest."""
    base = path.parent
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "image" not in reader.fieldnames:
                raise SourceError(f"{path}: a CSV manifest needs an 'image' column")
            for row in reader:
                yield _manifest_item(base, dict(row), path, reader.line_num)
        return
    for number, row in read_jsonl(path, error=SourceError):
        if "image" not in row:
            raise SourceError(f"{path}:{number}: each line needs an 'image' field")
        yield _manifest_item(base, row, path, number)


def _manifest_item(base: Path, row: dict[str, Any], manifest: Path, line: int) -> ImageItem:
    image = str(row.pop("image") or "").strip()
    if not image:
        raise SourceError(f"{manifest}:{line}: empty 'image' value")
    target = Path(image)
    if not target.is_absolute():
        target = base / target
    return ImageItem(key=image, path=target, meta=row)
