"""Files on this disk or at a filesystem URI (``s3://bucket/key``, ``gs://...``, ``file:///...``),
read whole and written whole: a reader never sees half a file.

URIs go through pyarrow's filesystems. pyarrow comes with the ``ray`` extra (Ray Data brings it);
it is imported only when a URI is used, and its absence is one clear error naming the extra.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from icm.errors import InputError

if TYPE_CHECKING:
    from pyarrow import fs as pafs


class StorageError(InputError):
    """A URI no filesystem opens (an unknown scheme, missing credentials), or pyarrow missing."""


def is_uri(location: str | Path) -> bool:
    """A filesystem URI (``s3://bucket/key``, ``gs://...``, ``file:///...``) rather than a local path."""
    return "://" in str(location)


def require_pyarrow(location: str | Path) -> None:
    """pyarrow, or a one-line error that names the extra to install."""
    try:
        import pyarrow.fs  # noqa: F401
    except ImportError as exc:
        raise StorageError(
            f"{location}: reading and writing URIs needs pyarrow, which is not installed: "
            "pip install 'icm-assistant[ray]'"
        ) from exc


def filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``location`` and the path on it (a local path: made absolute)."""
    require_pyarrow(location)
    from pyarrow import fs

    try:
        if is_uri(location):
            return fs.FileSystem.from_uri(str(location))
        return fs.LocalFileSystem(), str(Path(location).absolute())
    except Exception as exc:  # an unknown scheme, missing credentials ...
        raise StorageError(f"cannot open {location}: {exc}") from exc


def as_location(original: str, path: str) -> str:
    """A filesystem path written back in the form the user gave (a URI stays a URI)."""
    if is_uri(original):
        return f"{original.split('://', 1)[0]}://{path}"
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write a local file whole: a temporary file beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)  # atomic: a reader never sees half a file
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class Folder:
    """A folder on this disk or at a URI, holding files by relative name (``ab/abcdef``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)
        self._remote: pafs.FileSystem | None = None
        if is_uri(root):
            self._remote, base = filesystem(root)
            self._base = base.rstrip("/")
        self._local = Path(root)

    def path(self, name: str) -> Path:
        """The local file of ``name`` (a local folder only)."""
        return self._local / name

    def _remote_path(self, name: str) -> str:
        return f"{self._base}/{name}"

    def make(self) -> None:
        """Create the folder (and its parents) if it does not exist."""
        if self._remote is not None:
            self._remote.create_dir(self._base, recursive=True)
        else:
            self._local.mkdir(parents=True, exist_ok=True)

    def exists(self, name: str) -> bool:
        if self._remote is None:
            return self.path(name).exists()
        from pyarrow import fs

        return bool(self._remote.get_file_info(self._remote_path(name)).type != fs.FileType.NotFound)

    def read(self, name: str) -> bytes:
        """The file's bytes; FileNotFoundError (an OSError) when there is none."""
        if self._remote is None:
            return self.path(name).read_bytes()
        with self._remote.open_input_stream(self._remote_path(name)) as stream:
            return bytes(stream.read())

    def write(self, name: str, data: bytes) -> None:
        """Write a file whole (atomically on a disk; an object store never shows half an object)."""
        if self._remote is None:
            write_atomic(self.path(name), data)
            return
        if "/" in name:  # a local filesystem needs the folder; an object store takes any key
            self._remote.create_dir(self._remote_path(name.rsplit("/", 1)[0]), recursive=True)
        with self._remote.open_output_stream(self._remote_path(name)) as stream:
            stream.write(data)

    def delete(self, name: str) -> bool:
        """Remove a file; False when there was none."""
        if self._remote is None:
            try:
                self.path(name).unlink()
            except FileNotFoundError:
                return False
            return True
        if not self.exists(name):
            return False
        self._remote.delete_file(self._remote_path(name))
        return True
