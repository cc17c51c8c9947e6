"""A per-stage, per-item result cache on disk, keyed by everything that shapes the result.

The key hashes the stage's inputs, its prompt template version, the model spec and parameters;
change any of them and the item is recomputed. A killed run resumes where it stopped because
finished items are found here. Each entry is one of the stage records of
:mod:`icm.datagen.records`, or a :class:`~icm.datagen.records.Rejection`, as JSON.

The root is a local folder or a filesystem URI (``s3://bucket/cache``, through pyarrow's
filesystems): on a Ray cluster every worker reads and writes the same cache, so ``--resume`` works
across machines.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from icm.datagen.records import Rejection
from icm.storage import Folder, is_uri

Record = TypeVar("Record", bound=BaseModel)


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class StageCache:
    def __init__(self, root: str | Path, stage: str) -> None:
        self.folder = Folder(f"{str(root).rstrip('/')}/{stage}" if is_uri(root) else Path(root) / stage)
        self.folder.make()

    def get(self, key: str, record: type[Record]) -> Record | Rejection | None:
        """The cached record (or rejection) for ``key``; None when there is none to trust."""
        try:
            value = json.loads(self.folder.read(f"{key}.json").decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None  # absent, or a half-written file from a killed run: recompute
        if not isinstance(value, dict):
            return None
        try:
            return Rejection.model_validate(value) if "rejected" in value else record.model_validate(value)
        except ValidationError:
            return None  # written by a version whose record had another shape: recompute

    def put(self, key: str, value: BaseModel) -> None:
        self.folder.write(f"{key}.json", value.model_dump_json().encode("utf-8"))
