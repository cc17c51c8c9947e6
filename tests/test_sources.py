"""Where images come from: folders, single paths, manifests and stdin (no image is decoded here)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from icm.media import FORMAT_SUFFIXES, IMAGE_SUFFIXES
from icm.sources import ImageItem, SourceError, iter_images, iter_manifest, iter_sources


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.tiff", "notes.txt", ".hidden.png",
                 ".cache/e.png", "sub/.thumbs/f.jpg", "g.jpeg.txt"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not decoded here")
    (tmp_path / "folder.png").mkdir()  # a folder named like an image is not an image
    return tmp_path


def test_a_folder_gives_its_images_recursively_sorted_and_skips_hidden(tree: Path) -> None:
    found = [p.relative_to(tree).as_posix() for p in iter_images(tree)]
    assert found == ["a.JPG", "b.png", "sub/c.webp", "sub/deeper/d.tiff"]
    items = list(iter_sources([tree]))
    assert [i.key for i in items] == [str(tree / p) for p in found]
    assert all(i.path == Path(i.key) and i.data is None and i.meta == {} for i in items)


def test_every_suffix_of_a_format_media_reads_is_an_image_suffix() -> None:
    assert IMAGE_SUFFIXES == frozenset().union(*FORMAT_SUFFIXES.values())
    assert {".jpg", ".jpeg", ".png", ".gif", ".webp", ".tif", ".mpo"} <= IMAGE_SUFFIXES
    assert ".txt" not in IMAGE_SUFFIXES and all(s == s.lower() for s in IMAGE_SUFFIXES)


def test_a_path_that_does_not_exist_is_still_an_item(tmp_path: Path) -> None:
    # it becomes a not_found error record later, instead of stopping the batch
    assert list(iter_sources([tmp_path / "gone.jpg"])) == [ImageItem(key=str(tmp_path / "gone.jpg"),
                                                                       path=tmp_path / "gone.jpg")]


def test_manifests_resolve_paths_against_their_folder_and_keep_other_fields(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"image": "x/a.jpg", "id": 7}) + "\n\n" + json.dumps({"image": "/abs/b.png"}) + "\n"
    )
    (tmp_path / "m.csv").write_text("image,label\nc.png,ok\n")
    items = list(iter_sources([tmp_path / "m.jsonl", tmp_path / "m.csv"]))
    assert [(i.key, i.path) for i in items] == [
        ("x/a.jpg", tmp_path / "x" / "a.jpg"), ("/abs/b.png", Path("/abs/b.png")), ("c.png", tmp_path / "c.png")]
    assert items[0].meta == {"id": 7} and items[2].meta == {"label": "ok"}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.jsonl", '{"image": "a.jpg"}\n{"path": "b.jpg"}\n', r"m.jsonl:2: each line needs an 'image'"),
        ("m.jsonl", '{"image": "a.jpg"}\nnot json\n', r"m.jsonl:2: not valid JSON"),
        ("m.jsonl", '["a.jpg"]\n', r"m.jsonl:1: expected a JSON object"),
        ("m.jsonl", '{"image": "  "}\n', r"m.jsonl:1: empty 'image' value"),
        ("m.csv", "path\nx.jpg\n", r"needs an 'image' column"),
        ("m.csv", "image,label\n,ok\n", r"m.csv:2: empty 'image' value"),
    ],
)
def test_bad_manifests_name_the_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(SourceError, match=message):
        list(iter_manifest(tmp_path / name))


def test_stdin_lists_paths_skipping_blanks_and_comments() -> None:
    stdin = io.StringIO("a.jpg\n\n  # a comment\n  b dir/c.png  \n")
    assert [i.key for i in iter_sources(["-"], stdin=stdin)] == ["a.jpg", "b dir/c.png"]


def test_sources_are_expanded_lazily(tree: Path) -> None:
    (tree / "bad.jsonl").write_text("not json\n")
    items = iter_sources([tree / "b.png", tree / "bad.jsonl"])
    assert next(items).key == str(tree / "b.png")  # the bad manifest is not read yet
    with pytest.raises(SourceError, match="bad.jsonl:1"):
        next(items)


# -- URIs (pyarrow's local filesystem through file://) -----------------------------------------


def test_a_uri_folder_lists_like_the_folder(tree: Path) -> None:
    from icm.sources import iter_sources

    local = [i.key for i in iter_sources([tree])]
    listed = list(iter_sources([f"file://{tree}"]))
    assert [i.key for i in listed] == [f"file://{key}" for key in local]  # sorted, hidden names left out
    assert all(i.uri == i.key and i.path is None and i.location == i.uri for i in listed)


def test_uri_manifests_resolve_relative_paths_on_their_own_filesystem(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text(json.dumps({"image": "x/a.jpg", "id": 7}) + "\n"
                                      + json.dumps({"image": "s3://other/b.png"}) + "\n")
    (tmp_path / "m.csv").write_text("image,label\nc.png,ok\n")
    items = list(iter_sources([f"file://{tmp_path}/m.jsonl", f"file://{tmp_path}/m.csv"]))
    assert [(i.key, i.uri) for i in items] == [
        ("x/a.jpg", f"file://{tmp_path}/x/a.jpg"), ("s3://other/b.png", "s3://other/b.png"),
        ("c.png", f"file://{tmp_path}/c.png")]
    assert items[0].meta == {"id": 7} and items[2].meta == {"label": "ok"}
    (tmp_path / "bad.jsonl").write_text('{"path": "a.jpg"}\n')
    with pytest.raises(SourceError, match=r"bad.jsonl:1: each line needs an 'image'"):
        list(iter_sources([f"file://{tmp_path}/bad.jsonl"]))
    with pytest.raises(SourceError, match="no such folder or file"):
        list(iter_sources([f"file://{tmp_path}/missing/"]))


def test_a_parquet_listing_is_a_manifest(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": ["a.jpg", "/abs/b.png"]}), tmp_path / "list.parquet")
    items = list(iter_sources([tmp_path / "list.parquet"]))
    assert [(i.key, i.path) for i in items] == [("a.jpg", tmp_path / "a.jpg"), ("/abs/b.png", Path("/abs/b.png"))]


def test_fetch_reads_a_uri_within_the_size_limit_or_gives_its_error(tmp_path: Path) -> None:
    from icm.media import MediaLimits
    from icm.results import ErrorInfo
    from icm.sources import fetch

    (tmp_path / "a.png").write_bytes(b"0123456789")
    got = fetch(ImageItem(key="k", uri=f"file://{tmp_path}/a.png"), MediaLimits())
    assert isinstance(got, ImageItem) and got.data == b"0123456789" and got.key == "k"
    small = MediaLimits(max_bytes=5)
    too_large = fetch(ImageItem(key="k", uri=f"file://{tmp_path}/a.png"), small)
    assert isinstance(too_large, ErrorInfo) and too_large.code.value == "too_large"
    missing = fetch(ImageItem(key="k", uri=f"file://{tmp_path}/b.png"), MediaLimits())
    assert isinstance(missing, ErrorInfo) and missing.code.value == "not_found"
    web = fetch(ImageItem(key="k", uri="https://example.com/a.png"), MediaLimits())
    assert isinstance(web, ErrorInfo) and web.code.value == "unreadable"
    local = ImageItem(key="p", path=tmp_path / "a.png")
    assert fetch(local, MediaLimits()) is local  # a local path is read by the decoder itself


def test_gather_walks_now_and_leaves_stdin_a_stream(tree: Path, tmp_path: Path) -> None:
    from icm.sources import NoImagesError, gather

    walked = gather([tree])
    assert [i.key for i in walked] == [i.key for i in iter_sources([tree])]  # type: ignore[union-attr]
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoImagesError, match="no images found in"):
        gather([tmp_path / "empty"])
    assert gather(["-", tree])[0] == "-"  # stdin stays a stream, read when judged
    with pytest.raises(SourceError, match="no such folder"):
        gather(["-", tmp_path / "missing"])  # while the folder beside it is walked now
