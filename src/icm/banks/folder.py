"""Banks in a folder on disk (``--banks DIR``): one sub-folder per bank.

``DIR/NAME/bank.json`` holds the configuration and the generation; ``DIR/NAME/entries.jsonl``
one entry per line, appended as entries are added. A removal rewrites the entries and starts a
new generation (see :class:`~icm.banks.store.Mark`). Writers take a lock on ``DIR/NAME/.lock``,
so two commands adding to one bank never interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from icm.banks.model import BankConfig, BankEntry, BankError, BankExists, BankNotFound, check_name, checked_entries
from icm.banks.store import Mark
from icm.validation import describe_validation_error

_CONFIG = "bank.json"
_ENTRY_LIST = TypeAdapter(list[BankEntry])
_ENTRIES = "entries.jsonl"


class FolderBank:
    """One bank of a :class:`BankFolder`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._config: BankConfig | None = None

    @property
    def config(self) -> BankConfig:
        if self._config is None:
            self._config, _ = self._read_config()
        return self._config

    def _read_config(self) -> tuple[BankConfig, int]:
        file = self.path / _CONFIG
        try:
            data = json.loads(file.read_text())
            generation = int(data.pop("generation", 0))
            return BankConfig.model_validate(data), generation
        except FileNotFoundError as exc:
            raise BankNotFound(f"no bank {self.path.name} in {self.path.parent}") from exc
        except (ValueError, ValidationError) as exc:
            why = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            raise BankError(f"{file}: not a bank configuration: {why}") from exc

    def _write_config(self, config: BankConfig, generation: int) -> None:
        data = config.model_dump(mode="json") | {"generation": generation}
        _replace(self.path / _CONFIG, json.dumps(data, indent=2) + "\n")

    def entries(self) -> list[BankEntry]:
        return self.read()[0]

    def read(self, since: Mark | None = None) -> tuple[list[BankEntry], Mark, bool]:
        while True:  # a removal between reading the generation and the entries: read again
            _, generation = self._read_config()
            read = self._read_entries(generation, since)
            if self._read_config()[1] == generation:
                return read

    def _read_entries(self, generation: int, since: Mark | None) -> tuple[list[BankEntry], Mark, bool]:
        whole = since is None or since.generation != generation
        start = 0 if whole or since is None else since.position
        file = self.path / _ENTRIES
        entries: list[BankEntry] = []
        try:
            with file.open("rb") as stream:
                stream.seek(start)
                data = stream.read()
        except FileNotFoundError:
            data = b""
        # a line still being written (no newline yet) is read next time
        complete = data[: data.rfind(b"\n") + 1]
        lines = [line for line in complete.splitlines() if line.strip()]
        try:  # the whole file in one validation (pydantic's core), a million entries in seconds
            entries = _ENTRY_LIST.validate_json(b"[" + b",".join(lines) + b"]")
        except ValidationError:
            for number, line in enumerate(complete.splitlines(), 1):  # which line is wrong
                if line.strip():
                    try:
                        entries.append(BankEntry.model_validate_json(line))
                    except ValidationError as exc:
                        raise BankError(f"{file}: entry {number} after byte {start}: "
                                        f"{describe_validation_error(exc)}") from exc
            raise
        return entries, Mark(generation, start + len(complete)), whole

    def add(self, entries: Sequence[BankEntry]) -> list[BankEntry]:
        checked = checked_entries(self.config, entries)
        lines = "".join(entry.model_dump_json(exclude_none=True) + "\n" for entry in checked)
        with self._locked(), (self.path / _ENTRIES).open("a") as stream:
            stream.write(lines)
        return checked

    def remove(self, content_id: str) -> int:
        with self._locked():
            config, generation = self._read_config()
            entries = self.entries()
            kept = [e for e in entries if e.content_id != content_id]
            removed = len(entries) - len(kept)
            if removed:
                _replace(self.path / _ENTRIES,
                         "".join(e.model_dump_json(exclude_none=True) + "\n" for e in kept))
                self._write_config(config, generation + 1)
        return removed

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.path / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class BankFolder:
    """A folder of banks: the :class:`~icm.banks.store.BankStore` of the CLI and the Python API."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise BankError(f"--banks {self.path}: not a folder")

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if (p / _CONFIG).is_file())

    def get(self, name: str) -> FolderBank:
        bank = FolderBank(self.path / check_name(name))
        bank.config  # noqa: B018 - raises BankNotFound now, not at first use
        return bank

    def create(self, config: BankConfig) -> FolderBank:
        folder = self.path / config.name
        try:
            folder.mkdir(parents=True)
        except FileExistsError as exc:
            raise BankExists(f"bank {config.name} already exists in {self.path}") from exc
        bank = FolderBank(folder)
        bank._write_config(config, 0)
        (folder / _ENTRIES).touch()
        return bank


def _replace(path: Path, text: str) -> None:
    """Write a file whole, so a reader sees the old content or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
