"""icm.storage: files on this disk or at a filesystem URI (pyarrow's local filesystem through
file://, so the URI path runs for real), written whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from icm.storage import Folder, StorageError, as_location, filesystem, is_uri, write_atomic


def test_uris_and_paths() -> None:
    assert is_uri("s3://bucket/key") and is_uri("file:///tmp/x")
    assert not is_uri("/tmp/x") and not is_uri(Path("photos"))
    assert as_location("s3://bucket/photos", "bucket/photos/a.jpg") == "s3://bucket/photos/a.jpg"
    assert as_location("/data/photos", "/data/photos/a.jpg") == "/data/photos/a.jpg"


def test_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "file.bin"
    write_atomic(target, b"first")
    write_atomic(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


@pytest.mark.parametrize("kind", ["local", "uri"])
def test_a_folder_reads_writes_and_deletes_the_same_way_locally_and_at_a_uri(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "store"
    folder = Folder(root if kind == "local" else f"file://{root}")
    folder.make()
    assert root.is_dir()
    assert not folder.exists("ab/abc")
    with pytest.raises(FileNotFoundError):
        folder.read("ab/abc")
    folder.write("ab/abc", b"\x89PNG bytes")
    assert folder.exists("ab/abc") and folder.read("ab/abc") == b"\x89PNG bytes"
    assert (root / "ab" / "abc").read_bytes() == b"\x89PNG bytes"  # the same file either way
    folder.write("ab/abc", b"again")
    assert folder.read("ab/abc") == b"again"
    assert folder.delete("ab/abc") and not folder.delete("ab/abc")
    assert not folder.exists("ab/abc")


def test_a_scheme_no_filesystem_opens_is_one_clear_error() -> None:
    with pytest.raises(StorageError, match="cannot open nosuch://x"):
        filesystem("nosuch://x")
