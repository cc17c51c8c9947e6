"""Known-content banks in the service's store: the :class:`~icm.banks.store.BankStore` protocol
over the ``banks`` and ``bank_entries`` tables, so the matcher, the commands (``icm bank --db``)
and the HMA endpoints read SQL banks with the same code as a bank folder."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from icm.banks.model import BankConfig, BankEntry, BankExists, BankNotFound, check_name, checked_entries
from icm.banks.store import Mark
from icm.serve.store.database import Store
from icm.serve.store.models import BankEntryRow, BankRow

_CONFIG_FIELDS = ("kind", "rules", "signal", "distance", "quality_floor", "dihedral", "dsa_category",
                  "description", "created_at", "created_by")
_ENTRY_FIELDS = ("content_id", "hash", "labels", "added_by", "added_at", "quality", "dsa_category", "source")


def _config(row: BankRow) -> BankConfig:
    return BankConfig.model_validate({"name": row.name, **{f: getattr(row, f) for f in _CONFIG_FIELDS}})


def entry_of(row: BankEntryRow) -> BankEntry:
    """A stored entry as the banks' model holds it."""
    return BankEntry.model_validate({f: getattr(row, f) for f in _ENTRY_FIELDS})


def row_of(bank: str, entry: BankEntry) -> BankEntryRow:
    """An entry of ``bank`` as the store holds it."""
    return BankEntryRow(bank=bank, **{f: getattr(entry, f) for f in _ENTRY_FIELDS})


class SqlBank:
    """One bank of a :class:`SqlBanks`; every call is a short transaction of its own."""

    def __init__(self, store: Store, name: str, config: BankConfig) -> None:
        self.store = store
        self.name = name
        self._config = config

    @property
    def config(self) -> BankConfig:
        return self._config

    def _row(self, session: Session) -> BankRow:
        row = session.get(BankRow, self.name)
        if row is None:
            raise BankNotFound(f"no bank {self.name} in the store")
        return row

    def entries(self) -> list[BankEntry]:
        return self.read()[0]

    def read(self, since: Mark | None = None) -> tuple[list[BankEntry], Mark, bool]:
        with self.store._session() as session:
            row = self._row(session)
            self._config = _config(row)
            whole = since is None or since.generation != row.generation
            after = 0 if whole or since is None else since.position
            rows = list(session.scalars(
                select(BankEntryRow).where(BankEntryRow.bank == self.name, BankEntryRow.seq > after)
                .order_by(BankEntryRow.seq)))
            position = rows[-1].seq if rows else after
            return [entry_of(r) for r in rows], Mark(row.generation, position), whole

    def add(self, entries: Sequence[BankEntry]) -> list[BankEntry]:
        checked = checked_entries(self.config, entries)
        with self.store._session.begin() as session:
            self._row(session)
            session.add_all(row_of(self.name, e) for e in checked)
        return checked

    def remove(self, content_id: str) -> int:
        with self.store._session.begin() as session:
            row = self._row(session)
            done = session.execute(delete(BankEntryRow).where(
                BankEntryRow.bank == self.name, BankEntryRow.content_id == content_id))
            removed = int(getattr(done, "rowcount", 0) or 0)
            if removed:
                row.generation += 1
            return removed

    def count(self) -> tuple[int, int]:
        """(entries, distinct content ids), counted by the database."""
        with self.store._session() as session:
            entries, contents = session.execute(
                select(func.count(), func.count(func.distinct(BankEntryRow.content_id)))
                .where(BankEntryRow.bank == self.name)).one()
            return int(entries), int(contents)


class SqlBanks:
    """The banks of the service's store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def names(self) -> list[str]:
        with self.store._session() as session:
            return list(session.scalars(select(BankRow.name).order_by(BankRow.name)))

    def get(self, name: str) -> SqlBank:
        with self.store._session() as session:
            row = session.get(BankRow, check_name(name))
            if row is None:
                raise BankNotFound(f"no bank {name} in the store")
            return SqlBank(self.store, name, _config(row))

    def create(self, config: BankConfig) -> SqlBank:
        data = config.model_dump()
        try:
            with self.store._session.begin() as session:
                session.add(BankRow(name=config.name, generation=0,
                                    **{f: data[f] for f in _CONFIG_FIELDS}))
        except IntegrityError as exc:
            raise BankExists(f"bank {config.name} already exists in the store") from exc
        return SqlBank(self.store, config.name, config)
