"""Training data in the forms it comes in: an `icm data` directory, TRL-format JSONL, Parquet, `datasets`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from backends.tiny_vlm import build_processor
from helpers import sample_image

from icm.train.data import TrainingDataError, image_bytes, load_training_data
from icm.train.sft import ConversationCollator, TrainError, load_mix_source


def trl_records() -> list[dict[str, Any]]:
    """Records as TRL documents them: list-of-parts or plain string content, images beside the file, no meta."""
    return [
        {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it a cat?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "No"}]}],
         "images": ["photos/coffee.png"]},
        {"messages": [{"role": "system", "content": "Answer briefly."},
                      {"role": "user", "content": "Say hello."},
                      {"role": "assistant", "content": "Hello."}]},
        {"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "A cat?"}]},
                      {"role": "assistant", "content": "Yes"}],
         "images": ["photos/chelsea.png"], "meta": {"policy": "icm-r1", "policy_version": 1, "kind": "verdict"}},
    ]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    (tmp_path / "photos").mkdir()
    for name in ("coffee", "chelsea"):
        image = sample_image(name)
        image.thumbnail((48, 48))
        image.save(tmp_path / "photos" / f"{name}.png")
    return tmp_path


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def expected(base: Path) -> list[dict[str, Any]]:
    """What the collator gets: list-of-parts content without null fields, absolute image paths."""
    text = lambda t: {"type": "text", "text": t}  # noqa: E731
    return [
        {"messages": [{"role": "user", "content": [{"type": "image"}, text("Is it a cat?")]},
                      {"role": "assistant", "content": [text("No")]}],
         "images": [str((base / "photos" / "coffee.png").resolve())]},
        {"messages": [{"role": "system", "content": [text("Answer briefly.")]},
                      {"role": "user", "content": [text("Say hello.")]},
                      {"role": "assistant", "content": [text("Hello.")]}],
         "images": []},
        {"messages": [{"role": "user", "content": [{"type": "image"}, text("A cat?")]},
                      {"role": "assistant", "content": [text("Yes")]}],
         "images": [str((base / "photos" / "chelsea.png").resolve())]},
    ]


def test_a_trl_jsonl_file_with_paths_relative_to_it(photos: Path) -> None:
    data = load_training_data(write_jsonl(photos / "data.jsonl", trl_records()))
    assert data.form == "jsonl" and data.validation == [] and data.manifest is None
    assert data.train == expected(photos)
    assert data.files == {"train": [photos / "data.jsonl"]}
    assert dict(data.policies) == {"icm-r1 v1": 1}  # only the record that has a meta says so


def test_parquet_and_datasets_directories_read_the_same(photos: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    # Parquet and Arrow need one type per column: the string-content record becomes list-of-parts.
    records = trl_records()
    records[1]["messages"] = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]}
                              for m in records[1]["messages"]]
    records[2]["messages"][1]["content"] = [{"type": "text", "text": "Yes"}]
    for record in records:
        record.setdefault("images", [])
        record.pop("meta", None)
    pq.write_table(pa.Table.from_pylist(records), photos / "data.parquet")
    parquet = load_training_data(photos / "data.parquet")
    assert parquet.form == "parquet" and parquet.train == expected(photos)

    Dataset.from_list(records).save_to_disk(str(photos / "saved"))
    # A saved dataset's image paths are relative to its directory.
    (photos / "saved" / "photos").symlink_to(photos / "photos")
    saved = load_training_data(photos / "saved")
    assert saved.form == "datasets" and saved.validation == []
    assert saved.train == expected(photos / "saved")

    DatasetDict({"train": Dataset.from_list(records[:2]), "test": Dataset.from_list(records[2:])}).save_to_disk(
        str(photos / "dict"))
    (photos / "dict" / "photos").symlink_to(photos / "photos")
    split = load_training_data(photos / "dict")
    assert split.train == expected(photos / "dict")[:2] and split.validation == expected(photos / "dict")[2:]
    assert split.files["train"] and split.files["validation"]


def test_images_stored_in_a_saved_dataset_reach_the_collator(photos: Path) -> None:
    from datasets import Dataset, Image, Sequence

    png = (photos / "photos" / "coffee.png").read_bytes()
    dataset = Dataset.from_dict({
        "messages": [trl_records()[0]["messages"]],
        "images": [[str(photos / "photos" / "coffee.png")]],
    }).cast_column("images", Sequence(Image()))
    dataset = dataset.map(lambda row: row)  # embeds the image bytes into the Arrow data
    dataset.save_to_disk(str(photos / "embedded"))
    (photos / "photos" / "coffee.png").unlink()  # the saved dataset must not need the file any more
    data = load_training_data(photos / "embedded")
    [image] = data.train[0]["images"]
    assert image.startswith("data:") and image_bytes(image) == png
    batch = ConversationCollator(build_processor())(data.train)
    assert batch["pixel_values"].shape[0] == 1 and (batch["labels"] != -100).any()


def test_an_icm_data_directory_without_meta_is_plain_sft_data(photos: Path) -> None:
    write_jsonl(photos / "train.jsonl", trl_records())
    write_jsonl(photos / "validation.jsonl", trl_records()[:1])
    data = load_training_data(photos)
    assert data.form == "icm-dataset" and data.train == expected(photos)
    assert data.validation == expected(photos)[:1]
    assert data.files == {"train": [photos / "train.jsonl"], "validation": [photos / "validation.jsonl"]}


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"text": "no messages"}, "messages: Field required"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn to learn from"),
        ({"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]},
                       {"role": "assistant", "content": "a cat"}]}, "1 image part(s) in the messages but 0 image(s)"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}, {"role": "assistant", "content": "x"}]},
         "a text part without text"),
        ({"messages": [{"role": "user", "content": [{"type": "image"}]}, {"role": "assistant", "content": "x"}],
          "images": ["photos/missing.png"]}, "image photos/missing.png not found"),
    ],
)
def test_a_record_that_cannot_be_trained_on_is_named_with_its_line(
    photos: Path, record: dict[str, Any], problem: str
) -> None:
    path = write_jsonl(photos / "bad.jsonl", [trl_records()[1], record])
    with pytest.raises(TrainingDataError) as raised:
        load_training_data(path)
    assert f"{path}:2:" in str(raised.value) and problem in str(raised.value)


def test_paths_that_are_no_training_data(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="no training data at"):
        load_training_data(tmp_path / "missing.jsonl")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(TrainingDataError, match=r"a \.jsonl or \.parquet file"):
        load_training_data(tmp_path / "data.csv")
    with pytest.raises(TrainingDataError, match="neither a dataset directory written by `icm data`"):
        load_training_data(tmp_path)
    with pytest.raises(TrainError, match="mix source: .*bad.jsonl:1"):
        load_mix_source_from(write_jsonl(tmp_path / "bad.jsonl", [{"text": "no messages"}]))


def test_a_file_that_is_no_jsonl_is_named_with_its_line(photos: Path) -> None:
    """Read as every JSONL file of the project is (icm.jsonl): the error names the file, never a traceback."""
    (photos / "latin1.jsonl").write_bytes(json.dumps(trl_records()[1]).encode() + b"\n{\"text\": \"caf\xe9\"}\n")
    with pytest.raises(TrainingDataError, match="latin1.jsonl: not UTF-8 text"):
        load_training_data(photos / "latin1.jsonl")
    (photos / "broken.jsonl").write_text(json.dumps(trl_records()[1]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match="broken.jsonl:2: not valid JSON"):
        load_training_data(photos / "broken.jsonl")


def load_mix_source_from(path: Path) -> list[dict[str, Any]]:
    from icm.train.config import MixSource

    return load_mix_source(MixSource(path=path, ratio=1))


def test_the_model_card_hashes_the_file_trained_on(photos: Path) -> None:
    from icm.train.card import data_summary

    path = write_jsonl(photos / "data.jsonl", trl_records())
    summary = data_summary(load_training_data(path))
    assert summary["form"] == "jsonl" and summary["manifest"] is None
    assert summary["sha256"] == {"train": hashlib.sha256(path.read_bytes()).hexdigest(), "validation": None}
    assert summary["policies"] == {"icm-r1 v1": 1}
