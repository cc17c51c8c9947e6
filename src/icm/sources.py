"""Where images come from: files, folders (recursive), manifests (.jsonl / .csv / .parquet) and
stdin, on this disk or at a filesystem URI (``s3://bucket/photos/``, ``gs://...``, ``file:///...``).

Both engines list their inputs here and read a URI's image here (:func:`fetch`), so a local run
and a Ray run see the same images under the same keys. URIs go through :mod:`icm.storage`.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TextIO

from icm.errors import InputError
from icm.jsonl import iter_jsonl, read_jsonl
from icm.media import IMAGE_SUFFIXES, MediaLimits
from icm.results import ErrorCode, ErrorInfo
from icm.storage import StorageError, as_location, filesystem, is_uri, require_pyarrow

if TYPE_CHECKING:
    from pyarrow import fs as pafs

__all__ = ["ImageItem", "NoImagesError", "SourceError", "fetch", "gather", "is_uri", "iter_images",
           "iter_manifest", "iter_sources"]

#: listings with an ``image`` column; .parquet is read through pyarrow
MANIFEST_SUFFIXES = frozenset({".jsonl", ".csv", ".parquet"})


class SourceError(InputError):
    """A folder or manifest that does not exist, or a manifest that cannot be read."""


class NoImagesError(SourceError):
    """Folders and manifests that hold no image: almost always a wrong path."""


@dataclass(frozen=True)
class ImageItem:
    """One image to judge: its key (as written in results), where it is (a local ``path``, a
    ``uri``, or the ``data`` in hand), and manifest fields."""

    key: str
    path: Path | None = None
    data: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    uri: str | None = None
    sha256: str | None = field(default=None, compare=False)  # of ``data``, when the caller has it

    @property
    def location(self) -> str:
        """Where the image is read from: its URI or its path (the key for bytes in hand)."""
        return self.uri or str(self.path or self.key)

    @classmethod
    def at(cls, key: str, location: str) -> ImageItem:
        """The item of ``key`` read from ``location`` (a URI or a local path)."""
        return cls(key=key, uri=location) if is_uri(location) else cls(key=key, path=Path(location))


def iter_sources(paths: Iterable[str | Path], stdin: TextIO | None = None) -> Iterator[ImageItem]:
    """Expand paths and URIs into image items, lazily, in a stable order.

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
                    yield ImageItem.at(line, line)
            continue
        if is_uri(text):
            yield from _iter_uri(text)
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


def gather(paths: Iterable[str | Path]) -> list[ImageItem | str]:
    """The items of ``paths``, walked now: a missing folder fails before anything is written, and
    the count is known. ``-`` (paths on stdin) stays in its place, read as a stream when judged.

    Folders and manifests that hold no image at all raise :class:`NoImagesError` (an empty stdin
    is no error).
    """
    names = [str(p) for p in paths]
    gathered: list[ImageItem | str] = []
    for name in names:
        gathered += ["-"] if name == "-" else list(iter_sources([name]))
    if not gathered:
        raise NoImagesError(f"no images found in {', '.join(names)}")
    return gathered


def iter_images(folder: Path) -> Iterator[Path]:
    """The image files below ``folder`` (by suffix, recursively), sorted; anything hidden (a name
    starting with a dot, or inside such a folder) is left out."""
    for child in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in child.relative_to(folder).parts):
            continue
        if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
            yield child


def iter_manifest(path: Path) -> Iterator[ImageItem]:
    """Rows of a .jsonl, .csv or .parquet manifest with an ``image`` column; paths relative to
    the manifest."""
    base = path.parent
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        for image in _parquet_images(str(path)):
            yield _manifest_item(str(base), image, {}, str(path), 0)
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            yield from _csv_items(handle, str(base), str(path))
    else:
        for number, row in read_jsonl(path, error=SourceError):
            yield _jsonl_item(str(base), row, str(path), number)


def _csv_items(handle: TextIO, base: str, where: str) -> Iterator[ImageItem]:
    reader = csv.DictReader(handle)
    if reader.fieldnames is None or "image" not in reader.fieldnames:
        raise SourceError(f"{where}: a CSV manifest needs an 'image' column")
    for row in reader:
        row = dict(row)
        yield _manifest_item(base, row.pop("image"), row, where, reader.line_num)


def _jsonl_item(base: str, row: dict[str, Any], where: str, number: int) -> ImageItem:
    if "image" not in row:
        raise SourceError(f"{where}:{number}: each line needs an 'image' field")
    return _manifest_item(base, row.pop("image"), row, where, number)


def _manifest_item(base: str, value: Any, meta: dict[str, Any], where: str, line: int) -> ImageItem:
    """A manifest row's image: a URI as it is, a path relative to the manifest's folder (on the
    manifest's own filesystem: a relative path in ``s3://b/list.csv`` is ``s3://b/...``)."""
    image = str(value or "").strip()
    if not image:
        raise SourceError(f"{where}:{line}: empty 'image' value" if line else f"{where}: empty 'image' value")
    if is_uri(image):
        return ImageItem(key=image, uri=image, meta=meta)
    if is_uri(base):
        scheme, root = base.split("://", 1)
        target = image if image.startswith("/") else str(PurePosixPath(root) / image)
        return ImageItem(key=image, uri=f"{scheme}://{target}", meta=meta)
    path = Path(image)
    return ImageItem(key=image, path=path if path.is_absolute() else Path(base) / path, meta=meta)


# -- URIs --------------------------------------------------------------------------------------


def _open(location: str) -> tuple[pafs.FileSystem, str]:
    try:
        return filesystem(location)
    except StorageError as exc:
        raise SourceError(str(exc)) from exc


def _iter_uri(source: str) -> Iterator[ImageItem]:
    """A URI folder (listed recursively, hidden names left out), manifest or single image."""
    from pyarrow import fs

    filesystem_, root = _open(source)
    info = filesystem_.get_file_info(root)
    suffix = PurePosixPath(root).suffix.lower()
    if info.type == fs.FileType.Directory:
        found = filesystem_.get_file_info(fs.FileSelector(root, recursive=True))
        for entry in sorted(found, key=lambda e: e.path):
            relative = PurePosixPath(entry.path).relative_to(root.rstrip("/") or "/")
            if entry.type != fs.FileType.File or any(p.startswith(".") for p in relative.parts):
                continue
            if relative.suffix.lower() in IMAGE_SUFFIXES:
                location = as_location(source, entry.path)
                yield ImageItem(key=location, uri=location)
        return
    if info.type == fs.FileType.File and suffix in MANIFEST_SUFFIXES:
        base = as_location(source, str(PurePosixPath(root).parent))
        if suffix == ".parquet":
            for image in _parquet_images(source):
                yield _manifest_item(base, image, {}, source, 0)
            return
        text = _read_text(filesystem_, root, source)
        if suffix == ".csv":
            yield from _csv_items(io.StringIO(text, newline=""), base, source)
        else:
            for number, row in iter_jsonl(io.StringIO(text), source, error=SourceError):
                yield _jsonl_item(base, row, source, number)
        return
    if info.type == fs.FileType.NotFound and suffix not in IMAGE_SUFFIXES:
        raise SourceError(f"no such folder or file: {source}")
    yield ImageItem(key=source, uri=source)


def _read_text(filesystem_: pafs.FileSystem, path: str, source: str) -> str:
    try:
        with filesystem_.open_input_stream(path) as stream:
            return bytes(stream.read()).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{source}: cannot read: {exc}") from exc


def _parquet_images(source: str) -> list[str]:
    """The ``image`` column of a Parquet listing (local or at a URI)."""
    filesystem_, path = _open(source)
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path, filesystem=filesystem_, columns=["image"])
    except Exception as exc:  # pyarrow's errors for a missing column or an unreadable file
        raise SourceError(f"{source}: cannot read an 'image' column ({exc})") from exc
    if "image" not in table.column_names:
        raise SourceError(f"{source}: a listing needs an 'image' column")
    return [str(v) for v in table.column("image").to_pylist() if v is not None]


def fetch(item: ImageItem, limits: MediaLimits) -> ImageItem | ErrorInfo:
    """A URI item with its bytes read (a file over ``limits.max_bytes`` is refused unread), or
    the error to record for it; any other item as it is."""
    if item.uri is None or item.data is not None:
        return item
    try:
        require_pyarrow(item.uri)
        from pyarrow import fs

        filesystem_, path = fs.FileSystem.from_uri(item.uri)
        info = filesystem_.get_file_info(path)
        if info.type == fs.FileType.NotFound:
            return ErrorInfo(code=ErrorCode.not_found, message=f"no such file: {item.uri}")
        if info.size is not None and info.size > limits.max_bytes:
            return ErrorInfo(code=ErrorCode.too_large,
                             message=f"file is {info.size:,} bytes; the limit is {limits.max_bytes:,}")
        with filesystem_.open_input_file(path) as handle:
            data = handle.read()
    except (OSError, ValueError, StorageError) as exc:  # ValueError: ArrowInvalid, a scheme with no filesystem
        return ErrorInfo(code=ErrorCode.unreadable, message=f"cannot read {item.uri}: {exc}")
    return ImageItem(key=item.key, data=bytes(data), meta=item.meta, uri=item.uri)
