"""The Bank and BankStore protocols: what the matcher and the commands need of where banks live.

The bank folder (:mod:`icm.banks.folder`) implements them for the CLI and the Python API; the
service's SQL store implements the same protocols, so matching and the commands are written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from icm.banks.model import BankConfig, BankEntry


@dataclass(frozen=True)
class Mark:
    """How far a reader has read a bank. Entries are only ever appended within a ``generation``;
    a removal starts a new one, and a reader of an older generation reads everything again."""

    generation: int
    position: int


class Bank(Protocol):
    """One bank: its configuration and its entries."""

    @property
    def config(self) -> BankConfig: ...

    def entries(self) -> list[BankEntry]: ...

    def read(self, since: Mark | None = None) -> tuple[list[BankEntry], Mark, bool]:
        """The entries added after ``since`` and the new mark; the bool is True when the list is
        the whole bank (no ``since``, or it was of an older generation): an index rebuilds."""
        ...

    def add(self, entries: Sequence[BankEntry]) -> list[BankEntry]:
        """Append entries (their hashes checked against the bank's signal); returns them."""
        ...

    def remove(self, content_id: str) -> int:
        """Remove every entry of a content id; returns how many there were."""
        ...


class BankStore(Protocol):
    """Where banks live."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> Bank:
        """The bank of that name; :class:`~icm.banks.model.BankNotFound` when there is none."""
        ...

    def create(self, config: BankConfig) -> Bank:
        """A new bank; :class:`~icm.banks.model.BankExists` when the name is taken."""
        ...
