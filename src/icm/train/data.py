"""Training data: conversations in TRL's ``messages`` + ``images`` form, in the forms it comes in.

``icm train --data`` (and ``--mix``) takes

- a directory written by ``icm data``: ``train.jsonl`` and, when there is one, ``validation.jsonl``;
- a JSONL or Parquet file of records: all of it is trained on (no validation split);
- a directory saved by ``datasets`` (``save_to_disk``): a ``Dataset``, or a ``DatasetDict`` whose
  ``train`` split is trained on and whose ``validation`` (else ``test``) split is evaluated on.

A record is ``{"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text",
"text": "..."}]}, {"role": "assistant", "content": "..."}], "images": ["images/a.jpg"]}``: content
is a string or a list of parts, one ``{"type": "image"}`` part per entry of ``images``. An image is
a path, relative to the file (or to the directory), or the image itself (a ``datasets`` Image
column, ``{"bytes": ...}``), then held in memory as a ``data:`` URL. ``meta`` (what ``icm data``
writes) and any other field are optional and not trained on; ``meta.policy`` is counted for the
model card.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from icm.errors import InputError
from icm.jsonl import read_jsonl
from icm.validation import describe_validation_error

#: The split files of a directory written by ``icm data``.
SPLIT_FILES = {"train": "train.jsonl", "validation": "validation.jsonl"}
#: A ``datasets`` DatasetDict's splits used for evaluation, in order of preference.
EVAL_SPLITS = ("validation", "test")
DATA_URL = "data:application/octet-stream;base64,"


class TrainingDataError(InputError):
    """Training data that cannot be read: a missing path, a record that is no conversation."""


@dataclass
class TrainingData:
    """The records of one training source, ready for the collator (absolute image paths)."""

    source: Path
    form: Literal["icm-dataset", "jsonl", "parquet", "datasets"]
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]] = field(default_factory=list)
    #: split -> the files it was read from (hashed into the model card)
    files: dict[str, list[Path]] = field(default_factory=dict)
    #: "policy vN" -> samples, for records whose meta names a policy
    policies: Counter[str] = field(default_factory=Counter)
    manifest: dict[str, Any] | None = None


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "image"]
    text: str | None = None

    @model_validator(mode="after")
    def _text_has_text(self) -> _Part:
        if self.type == "text" and self.text is None:
            raise ValueError("a text part without text")
        return self


class _Turn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[_Part]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")
    messages: list[_Turn] = Field(min_length=1)
    images: list[Any] | None = None
    meta: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _trainable(self) -> _Record:
        if not any(turn.role == "assistant" for turn in self.messages):
            raise ValueError("no assistant turn to learn from")
        shown = sum(
            part.type == "image" for turn in self.messages if isinstance(turn.content, list) for part in turn.content
        )
        if shown != len(self.images or []):
            raise ValueError(f"{shown} image part(s) in the messages but {len(self.images or [])} image(s)")
        return self


def load_training_data(path: Path) -> TrainingData:
    """The records of ``path``, in any of the forms of the module's docstring."""
    if path.is_file():
        if path.suffix == ".jsonl":
            data = TrainingData(path, "jsonl", [], files={"train": [path]})
            data.train = _records(_jsonl(path), path.parent, data.policies)
        elif path.suffix == ".parquet":
            data = TrainingData(path, "parquet", [], files={"train": [path]})
            data.train = _records(_parquet(path), path.parent, data.policies)
        else:
            raise TrainingDataError(f"{path}: training data is a .jsonl or .parquet file, or a directory")
        return data
    if path.is_dir():
        if (path / SPLIT_FILES["train"]).exists():
            return _icm_dataset(path)
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return _saved_dataset(path)
        raise TrainingDataError(
            f"{path}: neither a dataset directory written by `icm data` (train.jsonl) nor one saved by "
            "`datasets` (save_to_disk)"
        )
    raise TrainingDataError(f"no training data at {path}")


def _icm_dataset(path: Path) -> TrainingData:
    manifest_path = path / "dataset.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else None
    data = TrainingData(path, "icm-dataset", [], manifest=manifest)
    for split, name in SPLIT_FILES.items():
        file = path / name
        if file.exists():
            data.files[split] = [file]
            records = _records(_jsonl(file), path, data.policies if split == "train" else Counter())
            setattr(data, split, records)
    return data


def _saved_dataset(path: Path) -> TrainingData:
    from datasets import Dataset, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{path}: cannot load the saved dataset: {exc}") from exc
    if isinstance(loaded, Dataset):
        splits = {"train": loaded}
    else:
        if "train" not in loaded:
            raise TrainingDataError(f"{path}: the saved DatasetDict has no train split (it has {list(loaded)})")
        splits = {"train": loaded["train"]}
        evaluated = next((name for name in EVAL_SPLITS if name in loaded), None)
        if evaluated is not None:
            splits["validation"] = loaded[evaluated]
    data = TrainingData(path, "datasets", [])
    for split, dataset in splits.items():
        data.files[split] = sorted(Path(f["filename"]) for f in dataset.cache_files)
        # Arrow rows as stored: an Image column stays {"bytes", "path"} instead of being decoded.
        rows = dataset.with_format("arrow")[:].to_pylist()
        where = f"{path} ({split} split)"
        records = _records(((f"{where}, row {n}", row) for n, row in enumerate(rows, start=1)), path,
                           data.policies if split == "train" else Counter())
        setattr(data, split, records)
    return data


def _jsonl(path: Path) -> Iterable[tuple[str, Any]]:
    return ((f"{path}:{number}", row) for number, row in read_jsonl(path, error=TrainingDataError))


def _parquet(path: Path) -> Iterable[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{path}: cannot read the Parquet file: {exc}") from exc
    return ((f"{path}, row {n}", row) for n, row in enumerate(rows, start=1))


def _records(rows: Iterable[tuple[str, Any]], base: Path, policies: Counter[str]) -> list[dict[str, Any]]:
    records = []
    for where, row in rows:
        try:
            record = _Record.model_validate(row)
        except ValidationError as exc:
            problems = describe_validation_error(exc, "record")
            raise TrainingDataError(f"{where}: not a messages record: {problems}") from exc
        messages = [
            {
                "role": turn.role,
                "content": [{"type": "text", "text": turn.content}] if isinstance(turn.content, str)
                else [part.model_dump(exclude_none=True) for part in turn.content],
            }
            for turn in record.messages
        ]
        images = [_image(image, base, where) for image in record.images or []]
        records.append({"messages": messages, "images": images})
        meta = record.meta or {}
        if isinstance(meta.get("policy"), str):
            version = meta.get("policy_version")
            policies[f"{meta['policy']}{f' v{version}' if version is not None else ''}"] += 1
    return records


def _image(image: Any, base: Path, where: str) -> str:
    """An absolute path, or a ``data:`` URL for an image stored in the data."""
    if isinstance(image, dict) and image.get("bytes") is not None:
        return DATA_URL + base64.b64encode(image["bytes"]).decode("ascii")
    if isinstance(image, dict) and isinstance(image.get("path"), str):
        image = image["path"]
    if not isinstance(image, str) or not image:
        raise TrainingDataError(f"{where}: an image is a path or {{'bytes': ...}}, not {type(image).__name__}")
    if image.startswith("data:"):
        return image
    path = Path(image)
    path = (path if path.is_absolute() else base / path).resolve()
    if not path.is_file():
        raise TrainingDataError(f"{where}: image {image} not found (looked for {path})")
    return str(path)


def image_bytes(image: str) -> bytes | None:
    """The bytes of an image held as a ``data:`` URL, or None for a path."""
    if not image.startswith("data:"):
        return None
    return base64.b64decode(image.split(",", 1)[1])
